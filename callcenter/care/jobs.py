"""RQ jobs of proactive care, run by `callcenter worker` on the queue `care`.

- `kick(connection)`: the worker's sweeper calls it every sweep; it queues `sweep` at most every
  SWEEP_EVERY. It touches Redis only: the worker forks a work-horse for every job, and a fork
  taken while one of its threads is inside the database driver (SQLite holds library-wide
  mutexes) can leave the horse hung for ever — a test caught a routing job stuck that way when
  the sweeper thread read the care policy. Whatever needs the database runs in the jobs.
- `sweep(at)`: contacts in, tasks met by them closed, care calls' outcomes settled, tasks dealt;
  and once a day, once the care-call hours have started (the policy's work_starts, the centre's
  zone; a per-day flag in Redis shared by every worker), it queues `make_day`.
- `make_day`: plans recomputed, the day's tasks made and shared among the agents on duty.
Both are safe to run twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta

from redis import Redis
from rq import Queue, Retry, get_current_job

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
    """Queue the sweep unless one was queued within SWEEP_EVERY; the names of the jobs queued."""
    if not connection.set(SWEEP_FLAG, 1, nx=True, px=int(SWEEP_EVERY.total_seconds() * 1000)):
        return []
    queue(connection).enqueue(sweep, kwargs={"at": now or utcnow()}, retry=RETRY)
    return ["sweep"]


def _local_day(now: datetime):
    return as_utc(now).astimezone(context.settings().tz).date()


def _day_started(session, now: datetime) -> bool:
    """Past the care-call hours' start today (the policy's work_starts, the centre's zone)."""
    starts = time.fromisoformat(service.care_settings(session=session).work_starts)
    return as_utc(now).astimezone(context.settings().tz).time() >= starts


def _queue_the_day_once(connection: Redis, day) -> bool:
    """Queue `make_day` unless a worker did so today already (the flag lasts two days)."""
    key = DAY_FLAG.format(day=day.isoformat())
    if not connection.set(key, 1, nx=True, ex=int(timedelta(days=2).total_seconds())):
        return False
    try:
        queue(connection).enqueue(make_day, retry=RETRY)
    except Exception:
        connection.delete(key)
        raise
    return True


def make_day() -> dict:
    tz = context.settings().tz
    with context.database().session_scope() as session:
        made = service.make_day(session=session, today=today_in(tz), tz=tz)
    log.info("care: today's plan made: %d care calls, %d visits, %d assigned", made.calls, made.visits, made.assigned)
    return {"calls": made.calls, "visits": made.visits, "assigned": made.assigned}


def sweep(at: datetime | None = None) -> dict:
    """`at`: when the sweeper queued it (the day starts by that clock)."""
    tz, now = context.settings().tz, at or utcnow()
    with context.database().session_scope() as session:
        contacts = service.ingest_contacts(session=session, since=utcnow() - timedelta(days=2))
        met = service.close_tasks_met_by_contacts(session=session)
        settled = service.apply_call_outcomes(session=session, tz=tz)
        shared = service.share_calls(session=session, today=today_in(tz))
        started = _day_started(session, now)
    day = started and _queue_the_day_once(get_current_job().connection, _local_day(now))
    return {"contacts": contacts, "met": met, "settled": settled, "shared": shared, "day_queued": day}
