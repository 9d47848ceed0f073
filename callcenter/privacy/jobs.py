"""RQ jobs of privacy, run by `callcenter worker` on the queue `privacy`.

- `kick(connection)`: the worker's sweeper calls it every minute; it queues `purge_expired` at
  most once every PURGE_EVERY (a flag in Redis with that lifetime, shared by every worker).
- `purge_expired`: removes the calls, recordings and audit entries older than their retention
  (RETENTION_CALL_DAYS, RETENTION_RECORDING_DAYS, RETENTION_AUDIT_DAYS), BATCH at a time, each
  batch committed; returns the counts. Running it twice removes nothing the second time.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from redis import Redis
from rq import Queue, Retry

from callcenter.config import get_settings
from callcenter import db
from callcenter.privacy import retention
from callcenter.timeutil import utcnow

log = logging.getLogger(__name__)
QUEUE_NAME = "privacy"
PURGE_FLAG = "privacy:purge-kicked"
PURGE_EVERY = timedelta(hours=24)
BATCH = 500
RETRY = Retry(max=3, interval=[60, 600, 3600])
context = db.JobContext(get_settings)
configure = context.configure
_settings = context.settings
_database = context.database


def queue(connection: Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=connection)


def kick(connection: Redis) -> bool:
    """Queue the purge unless one was queued within PURGE_EVERY; whether it was queued."""
    if not connection.set(PURGE_FLAG, 1, nx=True, ex=int(PURGE_EVERY.total_seconds())):
        return False
    try:
        queue(connection).enqueue(purge_expired, retry=RETRY)
    except Exception:
        connection.delete(PURGE_FLAG)
        raise
    return True


def purge_expired() -> dict[str, int]:
    """Remove what is past retention; the counts removed (also logged)."""
    settings, now = _settings(), utcnow()
    counts = {
        "calls": _in_batches(lambda session: retention.purge_calls(
            session=session, before=now - timedelta(days=settings.retention_call_days), limit=BATCH)),
        "audit": _in_batches(lambda session: retention.purge_audit(
            session=session, before=now - timedelta(days=settings.retention_audit_days), limit=BATCH)),
        "recordings": _batches_of(lambda: retention.purge_recordings(
            folder=settings.recordings_dir, before=now - timedelta(days=settings.retention_recording_days), limit=BATCH)),
    }
    log.info("retention purge: %s", ", ".join(f"{name} {count}" for name, count in counts.items()))
    return counts


def _in_batches(purge) -> int:
    """Run `purge(session)` in its own transaction until a batch comes back short."""
    return _batches_of(lambda: _one_batch(purge))


def _one_batch(purge) -> int:
    with _database().session_scope() as session:
        return purge(session)


def _batches_of(batch) -> int:
    total = 0
    while True:
        removed = batch()
        total += removed
        if removed < BATCH:
            return total
