"""RQ jobs that send the outbox, run by `callcenter worker` on the queue `notify`.

- `kick(connection)`, called after a commit that wrote messages: one queued `send_due` job
  serves any number of them (a flag, as workorders' route kick).
- `send_due`: a `send_message` job for every message waiting whose time has come.
- `send_message(id)`: claim (compare-and-set: two workers never both send it), send through the
  channel's gateway with no database connection held, record the outcome. A transient error is
  retried after NOTIFY_RETRY_SECONDS (RQ's `enqueue_in`), up to NOTIFY_MAX_ATTEMPTS attempts;
  then, or at once for a permanent error, the message is `failed` with its error.
- `poll_receipts`: delivery reports from the gateways that fetch them (Tencent's
  PullSmsSendStatus, an SMPP receiver bind).
- `sweep` (every minute, from the worker's sweeper): messages whose worker died mid-send are
  released, lost jobs re-enqueued, receipts polled.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from redis import Redis
from rq import Queue, get_current_job

from callcenter.config import Settings, get_settings
from callcenter import db
from callcenter.db import Database
from callcenter.notify import gateways as gateways_registry
from callcenter.notify import service
from callcenter.notify.models import MessageStatus
from callcenter.notify.gateways.base import Gateway, GatewayError, PermanentError
from callcenter.timeutil import utcnow

log = logging.getLogger(__name__)
QUEUE_NAME = "notify"
SEND_KICK = "notify:send-kick"  # set while a send_due job is queued and not yet started
KICK_SECONDS = 60
SEND_LEASE = timedelta(minutes=10)  # a message `sending` longer than this lost its worker
_state: dict = {}


def configure(settings: Settings) -> None:
    """The settings and gateways of this process (the worker calls it before it forks); a
    gateway the settings cannot make raises GatewayConfigError here, at start-up."""
    built = gateways_registry.build(settings)
    _state.clear()
    _state.update(settings=settings, gateways=built)
    _database()


def _settings() -> Settings:
    if "settings" not in _state:
        configure(get_settings())
    return _state["settings"]


def _gateways() -> dict[str, Gateway]:
    _settings()
    return _state["gateways"]


def _database() -> Database:
    return db.for_this_process(_state, _settings)


def queue(connection: Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=connection)


def kick(connection: Redis) -> None:
    """After a commit that wrote messages: make sure a `send_due` job runs after this moment."""
    if connection.set(SEND_KICK, 1, nx=True, ex=KICK_SECONDS):
        try:
            queue(connection).enqueue(send_due)
        except Exception:
            connection.delete(SEND_KICK)
            raise


def send_due() -> int:
    """Enqueue a `send_message` job for each message waiting whose time has come."""
    connection = get_current_job().connection
    connection.delete(SEND_KICK)
    with _database().session_scope() as session:
        ids = service.due_messages(session=session, now=utcnow())
    target = queue(connection)
    with connection.pipeline() as pipe:
        for message_id in ids:
            target.enqueue(send_message, message_id, pipeline=pipe)
        pipe.execute()
    return len(ids)


def send_message(message_id: int) -> str:
    """Send one message (see the module's docstring); returns what became of it."""
    settings = _settings()
    with _database().session_scope() as session:
        claimed = service.claim(session=session, message_id=message_id, now=utcnow())
    if claimed is None:
        return "not waiting to be sent"
    outgoing, channel, attempt = claimed
    gateway = _gateways()[channel]
    try:
        sent = gateway.send(outgoing)
    except Exception as exc:
        return _failed(message_id, attempt, gateway.name, exc, settings)
    with _database().session_scope() as session:
        service.record_sent(session=session, message_id=message_id, attempt=attempt, gateway=gateway.name, sent=sent, now=utcnow())
        service.record_receipts(session=session, gateway=gateway.name, receipts=sent.receipts, now=utcnow())
    return MessageStatus.DELIVERED if sent.delivered else MessageStatus.SENT


def _failed(message_id: int, attempt: int, gateway: str, exc: Exception, settings: Settings) -> str:
    """Record a failed attempt; schedule the next one when there is one."""
    if not isinstance(exc, GatewayError):  # a bug or an SDK surprise: logged in full, retried like a transient error
        log.exception("message %s: unexpected error from gateway %s", message_id, gateway)
    error = str(exc) if isinstance(exc, GatewayError) else f"{type(exc).__name__}: {exc}"
    retry_in = service.next_step(attempt=attempt, permanent=isinstance(exc, PermanentError), max_attempts=settings.notify_max_attempts,
                                 retry_seconds=settings.notify_retry_seconds)
    with _database().session_scope() as session:
        recorded = service.record_failure(session=session, message_id=message_id, attempt=attempt, gateway=gateway, error=error,
                                          retry_in=retry_in, now=utcnow())
    if recorded and retry_in is not None:
        queue(get_current_job().connection).enqueue_in(timedelta(seconds=retry_in), send_message, message_id)
    log.warning("message %s attempt %s: %s (%s)", message_id, attempt, error, "retrying" if retry_in is not None else "failed")
    return MessageStatus.RETRYING if retry_in is not None else MessageStatus.FAILED


def poll_receipts() -> int:
    """Fetch delivery reports from each gateway and mark the messages they name; how many changed."""
    changed = 0
    for gateway in {id(g): g for g in _gateways().values()}.values():
        try:
            receipts = gateway.receipts()
        except GatewayError as exc:
            log.warning("receipts from %s: %s", gateway.name, exc)
            continue
        if receipts:
            with _database().session_scope() as session:
                changed += service.record_receipts(session=session, gateway=gateway.name, receipts=receipts, now=utcnow())
    return changed


def sweep() -> int:
    """Release messages whose worker died mid-send, send what is due (lost jobs), poll receipts."""
    settings = _settings()
    with _database().session_scope() as session:
        released = service.release_stale(session=session, now=utcnow(), lease=SEND_LEASE, max_attempts=settings.notify_max_attempts)
    connection = get_current_job().connection
    queue(connection).enqueue(send_due)
    queue(connection).enqueue(poll_receipts)
    return released
