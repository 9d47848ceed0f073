"""RQ jobs for work orders, run by `callcenter worker` (and by `callcenter run`).

- `route_order`: dispatch to the best provider (or escalate), then schedule the acceptance
  deadline with `enqueue_in`. The order is committed before this job is enqueued (DESIGN.md rule 5),
  and the job commits before it schedules the next one.
- `acceptance_deadline`: the provider did not accept in time → next provider.
- `sweep`: orders left in `new` / `rejected` (their job was lost, e.g. Redis was down when they
  were created) are routed again.
Every job opens its own database session; running one twice changes nothing the second time.
Failed jobs are retried with backoff, then stay in RQ's failed registry (see `failed_jobs`).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from redis import Redis
from rq import Queue, Retry, get_current_job
from rq.registry import FailedJobRegistry

from callcenter.config import Settings, get_settings
from callcenter.db import Database
from callcenter.timeutil import utcnow
from workorders import service as orders_service
from workorders.models import ServiceType

log = logging.getLogger(__name__)
QUEUE_NAME = "workorders"
RETRY = Retry(max=3, interval=[5, 30, 120])
SWEEP_AFTER = timedelta(minutes=2)
_state: dict = {}


def configure(settings: Settings) -> None:
    """The settings jobs use in this process (the worker sets them before it forks)."""
    _state.clear()
    _state["settings"] = settings
    _database()


def _settings() -> Settings:
    return _state.setdefault("settings", get_settings())


def _database() -> Database:
    """The worker's engine, made once in the parent; a forked work-horse drops the inherited pool
    (never share a database connection across a fork) and opens its own connections."""
    if "db" not in _state:
        _state["db"] = Database(_settings())
        _state["pid"] = os.getpid()
    elif _state.get("pid") != os.getpid():
        _state["db"].engine.dispose(close=False)
        _state["pid"] = os.getpid()
    return _state["db"]


def queue(connection: Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=connection)


def enqueue_route(connection: Redis, order_id: int) -> None:
    """Called once the order is committed. When Redis is down the order stays `new` and the
    sweeper routes it later: nothing is lost."""
    queue(connection).enqueue(route_order, order_id, retry=RETRY)


def route_order(order_id: int) -> str:
    settings = _settings()
    with _database().session_scope() as session:
        event = orders_service.dispatch_next(session=session, order_id=order_id, tz=settings.tz)
        order = orders_service.get_or_raise(session=session, order_id=order_id)
        status = order.status
        accept_minutes = session.get(ServiceType, order.service_type).accept_minutes if event else None
        event_id = event.id if event else None
    if event_id is not None:  # committed: now schedule the deadline of this very dispatch
        job = get_current_job()
        queue(job.connection).enqueue_in(timedelta(minutes=accept_minutes), acceptance_deadline, order_id, event_id, retry=RETRY)
    log.info("order %s: %s", order_id, status)
    return status


def acceptance_deadline(order_id: int, dispatch_event_id: int) -> str:
    with _database().session_scope() as session:
        lapsed = orders_service.lapse_dispatch(session=session, order_id=order_id, dispatch_event_id=dispatch_event_id)
    return route_order(order_id) if lapsed else "accepted or moved on"


def sweep() -> list[int]:
    """Route again every order waiting since before SWEEP_AFTER; returns their ids."""
    with _database().session_scope() as session:
        ids = orders_service.orders_waiting_for_routing(session=session, older_than=utcnow() - SWEEP_AFTER)
    job = get_current_job()
    for order_id in ids:
        queue(job.connection).enqueue(route_order, order_id, retry=RETRY)
    return ids


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

