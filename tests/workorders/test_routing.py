"""Routing as RQ jobs on real Redis, run by a real RQ worker (SimpleWorker, burst): an order
created over HTTP is dispatched to the best eligible provider and notified by SMS; an acceptance
deadline that passes moves it on; nobody left → escalated; the same job twice assigns once;
an order created while Redis is down is routed by the sweeper once Redis is back."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
import redis
from fastapi.testclient import TestClient
from rq import SimpleWorker
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlmodel import select

from callcenter.areas import service as areas_service
from callcenter.elders import service as elders_service
from callcenter.elders.schemas import ElderIn, PhoneIn
from callcenter.main import create_app
from callcenter.timeutil import utcnow
from tests.conftest import login, make_user
from workorders import jobs
from workorders.models import Provider, SmsMessage, WorkOrder, WorkOrderEvent
from workorders.routing import Candidate, choose


@pytest.fixture
def rq_redis(settings, services):
    jobs.configure(settings)
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
                                      sealer=services.sealer, area_code="0411")
        providers = {}
        for name, rating, coverage, status, phone in (("乐龄", "4.9", [street.id], "active", "+8613900000001"),
                                                      ("安康", "4.5", [community.id], "active", "+8613900000002"),
                                                      ("远方", "5.0", [other.id], "active", "+8613900000003"),
                                                      ("停业", "5.0", [street.id], "suspended", "+8613900000004")):
            provider = Provider(name=name, phone=phone, service_types=["meal", "cleaning"], coverage=coverage,
                                rating=Decimal(rating), status=status, daily_capacity=10)
            session.add(provider)
            session.flush()
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
    queue = jobs.queue(connection)
    registry = ScheduledJobRegistry(queue=queue)
    ids = registry.get_job_ids()
    for job_id in ids:
        registry.remove(job_id)
        queue.enqueue_job(Job.fetch(job_id, connection=connection))
    return len(ids)


def test_an_order_goes_to_the_best_provider_with_an_sms_and_a_deadline(services, console, city, rq_redis):
    order_id = new_order(console, city["elder"])
    assert order_row(services, order_id).status == "new"  # committed before routing
    work(rq_redis)
    order = order_row(services, order_id)
    assert (order.status, order.provider_id) == ("dispatched", city["providers"]["乐龄"])
    with services.db.session_scope() as session:
        sms = session.exec(select(SmsMessage)).all()
    assert [(m.to, m.order_id) for m in sms] == [("+8613900000001", order_id)]
    assert order.number in sms[0].text and "60 分钟内" in sms[0].text
    scheduled = ScheduledJobRegistry(queue=jobs.queue(rq_redis))
    [job_id] = scheduled.get_job_ids()
    assert Job.fetch(job_id, connection=rq_redis).func_name == "workorders.jobs.acceptance_deadline"
    due = scheduled.get_scheduled_time(job_id)
    assert timedelta(minutes=59) < due - utcnow() <= timedelta(minutes=60)


def test_a_lapsed_deadline_moves_on_and_nobody_left_escalates(services, console, city, rq_redis):
    order_id = new_order(console, city["elder"])
    work(rq_redis)
    assert run_deadlines_now(rq_redis) == 1
    work(rq_redis)
    assert order_row(services, order_id).provider_id == city["providers"]["安康"]  # the next best, 乐龄 skipped
    assert run_deadlines_now(rq_redis) == 1
    work(rq_redis)
    assert order_row(services, order_id).status == "escalated"
    乐龄, 安康 = city["providers"]["乐龄"], city["providers"]["安康"]
    assert [(to, provider) for to, provider, _ in history(services, order_id)] == [
        ("new", None), ("dispatched", 乐龄), ("rejected", 乐龄), ("dispatched", 安康), ("rejected", 安康), ("escalated", None)]
    assert history(services, order_id)[2][2] == "超时未接单"


def test_a_deadline_after_acceptance_changes_nothing(services, console, city, rq_redis):
    order_id = new_order(console, city["elder"])
    work(rq_redis)
    with services.db.session_scope() as session:  # the provider accepts (its pages come next; the service is the same)
        from workorders import service as orders_service

        order = session.get(WorkOrder, order_id)
        orders_service.transition(session=session, order=order, to="accepted", actor="乐龄", provider_id=order.provider_id)
    run_deadlines_now(rq_redis)
    work(rq_redis)
    assert order_row(services, order_id).status == "accepted"


def test_the_same_job_twice_assigns_once(services, console, city, rq_redis):
    order_id = new_order(console, city["elder"])
    jobs.enqueue_route(rq_redis, order_id)  # a duplicate, as after a retry or a sweep
    work(rq_redis)
    dispatches = [row for row in history(services, order_id) if row[0] == "dispatched"]
    assert len(dispatches) == 1
    assert jobs.failed_jobs(rq_redis) == []  # the second run was a quiet no-op, not a failure to retry
    assert len(ScheduledJobRegistry(queue=jobs.queue(rq_redis)).get_job_ids()) == 1  # one deadline, for the one dispatch
    with services.db.session_scope() as session:
        assert len(session.exec(select(SmsMessage)).all()) == 1


def test_no_eligible_provider_escalates_at_once(services, console, city, rq_redis):
    order_id = new_order(console, city["elder"], service_type="bathing")  # nobody is contracted for baths
    work(rq_redis)
    assert order_row(services, order_id).status == "escalated"
    assert "没有可派单的服务商" in history(services, order_id)[-1][2]


def test_an_order_made_while_redis_is_down_is_routed_by_the_sweeper(settings, services, city, rq_redis, agent):
    offline = create_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))  # nothing listens there
    with TestClient(offline) as client:
        login(client, agent)
        response = client.post("/api/workorders", json={"elder_id": city["elder"], "service_type": "meal"})
    assert response.status_code == 201  # the order is saved all the same
    order_id = response.json()["id"]
    assert order_row(services, order_id).status == "new" and jobs.queue(rq_redis).count == 0
    with services.db.session_scope() as session:  # time control: it has waited longer than the sweeper's patience
        session.get(WorkOrder, order_id).updated_at = utcnow() - timedelta(minutes=5)
    jobs.queue(rq_redis).enqueue(jobs.sweep)  # what `callcenter worker` enqueues every minute
    work(rq_redis)
    assert order_row(services, order_id).status == "dispatched"


def test_choose_prefers_rating_then_spare_capacity_and_respects_every_rule():
    today = date(2026, 11, 22)
    base = dict(status="active", service_types=("meal",), coverage=frozenset({1}), daily_capacity=10, dispatched_today=0,
                rating=Decimal("4.5"))
    pool = [Candidate(id=1, **base), Candidate(id=2, **(base | {"dispatched_today": 5})), Candidate(id=3, **(base | {"rating": Decimal("4.8"),
            "dispatched_today": 10})), Candidate(id=4, **(base | {"contract_end": date(2026, 11, 1), "rating": Decimal("5")})),
            Candidate(id=5, **(base | {"coverage": frozenset({2}), "rating": Decimal("5")}))]
    pick = lambda **kw: choose(pool, service_type="meal", areas=frozenset({1}), today=today, **kw)  # noqa: E731
    assert pick().id == 1  # 3 is full, 4's contract ended, 5 covers elsewhere; 1 is less loaded than 2
    assert pick(excluded=frozenset({1})).id == 2
    assert pick(excluded=frozenset({1, 2})) is None
    assert choose(pool, service_type="bathing", areas=frozenset({1}), today=today) is None


def test_callcenter_worker_routes_queued_orders(settings, services, console, city, rq_redis):
    """The real command, with RQ's forking Worker: `callcenter worker --burst`."""
    import os
    import subprocess

    from tests.test_cli import CALLCENTER

    order_id = new_order(console, city["elder"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMI_")}
    env |= {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
            "SECRET_KEY": settings.secret_key.get_secret_value(), "DATA_DIR": str(settings.data_dir)}
    result = subprocess.run([CALLCENTER, "worker", "--burst"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    order = order_row(services, order_id)
    assert (order.status, order.provider_id) == ("dispatched", city["providers"]["乐龄"])


def test_a_job_that_keeps_failing_is_shown_to_supervisors(app, services, console, city, rq_redis):
    order_id = new_order(console, city["elder"], service_type="bathing")
    jobs.queue(rq_redis).enqueue(jobs.route_order, 987654)  # an order that does not exist: the job fails for good
    work(rq_redis)
    console_alerts = console.get("/api/workorders-alerts")
    assert console_alerts.status_code == 403  # supervisors' view
    with TestClient(app) as client:
        login(client, make_user(services, "supervisor"))
        body = client.get("/api/workorders-alerts").json()
    assert [o["id"] for o in body["escalated"]] == [order_id]
    [failed] = body["failed_jobs"]
    assert failed["function"] == "workorders.jobs.route_order" and failed["args"] == [987654]
    assert "工单" in failed["error"] or "NotFound" in failed["error"]
