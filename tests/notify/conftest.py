"""Shared by the notification tests: the notify jobs configured for one gateway (and back to
the outbox after the test), a real RQ worker draining the `notify` queue, messages' rows."""

from __future__ import annotations

import pytest
from rq import SimpleWorker
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlmodel import select

from callcenter.notify import jobs as notify_jobs
from callcenter.notify.models import OutboxMessage
from tests.workorders.conftest import city, rq_redis  # noqa: F401  (fixtures)
from workorders import jobs as order_jobs

@pytest.fixture
def configure_notify(settings):
    """`configure_notify(**settings)`: the notify jobs of this process use these settings."""
    def configure(**changes):
        configured = settings.model_copy(update=changes)
        notify_jobs.configure(configured)
        return configured

    yield configure
    notify_jobs.configure(settings)


def route_and_send(connection) -> None:
    """The work-order worker routes (and kicks the sender), then the notify worker sends."""
    SimpleWorker([order_jobs.queue(connection)], connection=connection).work(burst=True)
    send(connection)


def send(connection) -> None:
    SimpleWorker([notify_jobs.queue(connection)], connection=connection).work(burst=True)


def retries_due_now(connection) -> int:
    """Time control: the scheduled retries are due now (no sleeping through the back-off)."""
    queue = notify_jobs.queue(connection)
    registry = ScheduledJobRegistry(queue=queue)
    ids = registry.get_job_ids()
    for job_id in ids:
        registry.remove(job_id)
        queue.enqueue_job(Job.fetch(job_id, connection=connection))
    return len(ids)


def messages(services) -> list[OutboxMessage]:
    with services.db.session_scope() as session:
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)))
