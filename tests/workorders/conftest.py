"""Shared by the work-order tests: a small city with providers, RQ on real Redis, helpers to
create orders, run the worker and read what happened."""

from __future__ import annotations

from decimal import Decimal

import pytest
import redis
from rq import SimpleWorker
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlmodel import select

from callcenter.areas import service as areas_service
from callcenter.elders import service as elders_service
from callcenter.elders.schemas import ElderIn, PhoneIn
from callcenter.notify import jobs as notify_jobs
from workorders import jobs
from workorders import service as orders_service
from workorders.models import WorkOrder, WorkOrderEvent


@pytest.fixture
def rq_redis(settings, services):
    jobs.configure(settings)
    notify_jobs.configure(settings)
    return redis.Redis.from_url(settings.redis_url)


@pytest.fixture
def city(services):
    """A community under a street, an elder living there, and providers: 乐龄 (best rated, covers
    the street), 安康 (covers the community), 远方 (another street), 停业 (suspended)."""
    with services.db.session_scope() as session:
        district = areas_service.get_or_create(session=session, name="中山区", parent=None)
        street = areas_service.get_or_create(session=session, name="桃源街道", parent=district)
        other = areas_service.get_or_create(session=session, name="海军广场街道", parent=district)
        community = areas_service.get_or_create(session=session, name="桃源社区", parent=street)
        elder = elders_service.create(session=session, elder_in=ElderIn(name="张大爷", community_id=community.id,
                                                                         phones=[PhoneIn(number="13800138000")]),
                                      sealer=services.sealer, area_code="0411", opening_balance=Decimal("500"))
        providers = {}
        for name, rating, coverage, status, phone in (("乐龄", "4.9", [street.id], "active", "+8613900000001"),
                                                      ("安康", "4.5", [community.id], "active", "+8613900000002"),
                                                      ("远方", "5.0", [other.id], "active", "+8613900000003"),
                                                      ("停业", "5.0", [street.id], "suspended", "+8613900000004")):
            provider = orders_service.save_provider(session=session, area_code="0411", fields=dict(
                name=name, contact_name=f"{name}调度", phone=phone, service_types=["meal", "cleaning"], coverage=coverage,
                rating=Decimal(rating), status=status, daily_capacity=10))
            providers[name] = provider.id
        return {"elder": elder.id, "providers": providers}


def new_order(console, elder_id: int, service_type: str = "meal") -> int:
    response = console.post("/api/workorders", json={"elder_id": elder_id, "service_type": service_type})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def work(connection) -> None:
    SimpleWorker([jobs.queue(connection)], connection=connection).work(burst=True)


def order_row(services, order_id: int) -> WorkOrder:
    with services.db.session_scope() as session:
        return session.get(WorkOrder, order_id)


def history(services, order_id: int) -> list[tuple]:
    with services.db.session_scope() as session:
        rows = session.exec(select(WorkOrderEvent).where(WorkOrderEvent.order_id == order_id).order_by(WorkOrderEvent.id))
        return [(e.to_status, e.provider_id, e.note) for e in rows]


def run_deadlines_now(connection) -> int:
    """Time control: every scheduled acceptance deadline is due now (no sleeping for an hour)."""
    return scheduled_jobs_due_now(jobs.queue(connection))


def scheduled_jobs_due_now(queue) -> int:
    """The jobs scheduled on `queue` are queued now, as RQ's scheduler would queue them when due;
    returns how many."""
    registry = ScheduledJobRegistry(queue=queue)
    ids = registry.get_job_ids()
    for job_id in ids:
        registry.remove(job_id)
        queue.enqueue_job(Job.fetch(job_id, connection=queue.connection))
    return len(ids)


