"""RQ jobs of proactive care, run by `callcenter worker` on the queue `care`.

- `kick(connection)`: the worker's sweeper calls it every sweep; it queues `sweep` (contacts in,
  tasks met by them closed, care calls' outcomes settled) at most every SWEEP_EVERY, and
  `make_day` once a day at the care-call hours' start (a flag per day in Redis shared by every
  worker: the morning's plan is made once however many workers run).
- `make_day`: plans recomputed, the day's tasks made and shared among the agents on duty.
- `sweep`: what the day's work needs between mornings. Both are safe to run twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta

from redis import Redis
from rq import Queue, Retry

from callcenter import db
from callcenter.care import service
from callcenter.config import get_settings
from callcenter.timeutil import as_utc, today_in, utcnow

log = logging.getLogger(__name__)
QUEUE_NAME = "care"
DAY_FLAG = "care:day-made:{day}"
SWEEP_FLAG = "care:sweep-kicked"
SWEEP_EVERY = timedelta(seconds=30)
RETRY = Retry(max=3, interval=[60, 300, 900])
context = db.JobContext(get_settings)
configure = context.configure


def queue(connection: Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=connection)


def kick(connection: Redis, now: datetime | None = None) -> list[str]:
    """Queue what is due (see the module's docstring); the names of the jobs queued."""
    now = now or utcnow()
    queued = []
    if connection.set(SWEEP_FLAG, 1, nx=True, px=int(SWEEP_EVERY.total_seconds() * 1000)):
        queue(connection).enqueue(sweep, retry=RETRY)
        queued.append("sweep")
    if _day_started(now) and _flag_once(connection, DAY_FLAG.format(day=_local_day(now).isoformat())):
        try:
            queue(connection).enqueue(make_day, retry=RETRY)
        except Exception:
            connection.delete(DAY_FLAG.format(day=_local_day(now).isoformat()))
            raise
        queued.append("make_day")
    return queued


def _flag_once(connection: Redis, key: str) -> bool:
    return bool(connection.set(key, 1, nx=True, ex=int(timedelta(days=2).total_seconds())))


def _local_day(now: datetime):
    return as_utc(now).astimezone(context.settings().tz).date()


def _day_started(now: datetime) -> bool:
    """Past the care-call hours' start today (the policy's work_starts, the centre's zone)."""
    with context.database().session_scope() as session:
        starts = time.fromisoformat(service.care_settings(session=session).work_starts)
    return as_utc(now).astimezone(context.settings().tz).time() >= starts


def make_day() -> dict:
    tz = context.settings().tz
    with context.database().session_scope() as session:
        made = service.make_day(session=session, today=today_in(tz), tz=tz)
    log.info("care: today's plan made: %d care calls, %d visits, %d assigned", made.calls, made.visits, made.assigned)
    return {"calls": made.calls, "visits": made.visits, "assigned": made.assigned}


def sweep() -> dict:
    tz = context.settings().tz
    with context.database().session_scope() as session:
        contacts = service.ingest_contacts(session=session, since=utcnow() - timedelta(days=2))
        met = service.close_tasks_met_by_contacts(session=session)
        settled = service.apply_call_outcomes(session=session, tz=tz)
        shared = service.share_calls(session=session, today=today_in(tz))
    return {"contacts": contacts, "met": met, "settled": settled, "shared": shared}
