"""RQ jobs for work orders, run by `callcenter worker` (and by `callcenter run`).

- `route_waiting`: dispatch every waiting order to its best provider (or escalate), in batches,
  then schedule each acceptance deadline with `enqueue_in`; `route_order` does the same for one.
  The order is committed before this job is enqueued (DESIGN.md rule 5), and the job commits
  before it schedules the next one.
- `acceptance_deadline`: the provider did not accept in time → next provider.
- `sweep`: orders left in `new` / `rejected` (their job was lost, e.g. Redis was down when they
  were created) are routed again.
Every job opens its own database session; running one twice changes nothing the second time.
Failed jobs are retried with backoff, then stay in RQ's failed registry (see `failed_jobs`).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from redis import Redis
from rq import Queue, Retry, get_current_job
from rq.registry import FailedJobRegistry

from callcenter.config import Settings, get_settings
from callcenter import db
from callcenter.notify import jobs as notify_jobs
from callcenter.timeutil import utcnow
from workorders import service as orders_service
from workorders import staff as staff_service

log = logging.getLogger(__name__)
QUEUE_NAME = "workorders"
ROUTE_KICK = "workorders:route-kick"  # set while a route_waiting job is queued and not yet started
KICK_SECONDS = 60  # a flag left by a crash between set and enqueue blocks kicks this long at most
BATCH = 100
RETRY = Retry(max=3, interval=[5, 30, 120])
SWEEP_AFTER = timedelta(minutes=2)
context = db.JobContext(get_settings)
_settings = context.settings
_database = context.database


def configure(settings: Settings) -> None:
    """The settings jobs use in this process (the worker sets them before it forks)."""
    context.configure(settings)
    _database()


def queue(connection: Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=connection)


def enqueue_route(connection: Redis, order_id: int) -> None:
    """Called once the order is committed: make sure a `route_waiting` job will run after this
    moment. One queued job serves any number of new orders, so a burst of orders costs one job
    per batch, not one per order (RQ's own bookkeeping is ~10 ms a job). The flag is cleared
    when the job starts, so an order committed after its query kicks the next job. When Redis
    is down the order stays `new` and the sweeper routes it later: nothing is lost."""
    if connection.set(ROUTE_KICK, order_id, nx=True, ex=KICK_SECONDS):
        try:
            queue(connection).enqueue(route_waiting, retry=RETRY)
        except Exception:
            connection.delete(ROUTE_KICK)
            raise


def route_waiting() -> int:
    """Route every order waiting in `new` / `rejected`, in batches of BATCH (each committed,
    then its acceptance deadlines scheduled in one Redis round trip). An order that fails is
    left out (its batch rolled back and run again without it) and gets its own `route_order`
    job, which retries it and, when it keeps failing, ends in the failed registry for the
    supervisors. Returns how many were dispatched."""
    connection = get_current_job().connection
    connection.delete(ROUTE_KICK)
    settings, dispatched, failed = _settings(), 0, set()
    while True:
        try:
            with _database().session_scope() as session:
                deadlines, seen = orders_service.route_waiting(session=session, tz=settings.tz, login_link=login_link(settings),
                                                               limit=BATCH, exclude=failed)
        except orders_service.RoutingFailed as exc:
            log.warning("routing %s; retrying that order on its own", exc)
            failed.add(exc.order_id)
            queue(connection).enqueue(route_order, exc.order_id, retry=RETRY)
            continue
        schedule_deadlines(connection, deadlines)
        dispatched += len(deadlines)
        if seen < BATCH:
            return dispatched
        enqueue_route(connection, 0)  # more are waiting: another worker may take a share


def schedule_deadlines(connection: Redis, deadlines: list[tuple[int, int, int]]) -> None:
    """After dispatches are committed: the acceptance deadline of each (order id, dispatch event
    id, minutes), in one round trip, and the sending of their notifications (notify's kick)."""
    if not deadlines:
        return
    with connection.pipeline() as pipe:
        for order_id, event_id, minutes in deadlines:
            queue(connection).enqueue_in(timedelta(minutes=minutes), acceptance_deadline, order_id, event_id, retry=RETRY, pipeline=pipe)
        pipe.execute()
    notify_jobs.kick(connection)


def login_link(settings: Settings):
    """How SMS links sign a provider's dispatcher in (workorders/staff.py): one-time, short-lived."""
    return lambda session, staff: staff_service.login_link(session=session, public_url=settings.public_url,
                                                           minutes=settings.provider_link_minutes, staff=staff)


def route_order(order_id: int) -> str:
    """Route one order (after a lapsed deadline, or one that failed in a batch)."""
    settings = _settings()
    with _database().session_scope() as session:
        deadlines = orders_service.dispatch_next(session=session, order_id=order_id, tz=settings.tz, login_link=login_link(settings))
        status = orders_service.get_or_raise(session=session, order_id=order_id).status
    schedule_deadlines(get_current_job().connection, deadlines)  # committed: now the deadline of this very dispatch
    log.info("order %s: %s", order_id, status)
    return status


def schedule_deadline(connection: Redis, order_id: int, dispatch_event_id: int, accept_minutes: int) -> None:
    """One dispatch's acceptance deadline (a supervisor's assignment, after its commit)."""
    schedule_deadlines(connection, [(order_id, dispatch_event_id, accept_minutes)])


def acceptance_deadline(order_id: int, dispatch_event_id: int) -> str:
    with _database().session_scope() as session:
        lapsed = orders_service.lapse_dispatch(session=session, order_id=order_id, dispatch_event_id=dispatch_event_id)
    return route_order(order_id) if lapsed else "accepted or moved on"


def sweep() -> list[int]:
    """Route again every order waiting since before SWEEP_AFTER, and run the deadline of every
    dispatch overdue by SWEEP_AFTER (its deadline job was lost); returns the orders' ids."""
    with _database().session_scope() as session:
        ids = orders_service.orders_waiting_for_routing(session=session, older_than=utcnow() - SWEEP_AFTER)
        overdue = orders_service.dispatches_overdue(session=session, now=utcnow(), grace=SWEEP_AFTER)
    target = queue(get_current_job().connection)
    for order_id in ids:
        target.enqueue(route_order, order_id, retry=RETRY)
    for order_id, event_id in overdue:
        target.enqueue(acceptance_deadline, order_id, event_id, retry=RETRY)
    return ids + [order_id for order_id, _ in overdue]


def failed_jobs(connection: Redis) -> list[dict]:
    """Jobs that used up their retries: the supervisors' alert shows them."""
    registry = FailedJobRegistry(queue=queue(connection))
    out = []
    for job_id in registry.get_job_ids():
        job = queue(connection).fetch_job(job_id)
        if job is not None:
            result = job.latest_result()
            error = (result.exc_string or "") if result is not None else ""
            out.append({"id": job_id, "function": job.func_name, "args": list(job.args), "error": error.strip()[-500:]})
    return out

