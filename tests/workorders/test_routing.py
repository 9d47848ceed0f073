"""Routing as RQ jobs on real Redis, run by a real RQ worker (SimpleWorker, burst): an order
created over HTTP is dispatched to the best eligible provider and notified by SMS; an acceptance
deadline that passes moves it on; nobody left → escalated; the same job twice assigns once;
an order created while Redis is down is routed by the sweeper once Redis is back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from decimal import Decimal

import redis

from fastapi.testclient import TestClient
from rq.job import Job
from rq.registry import ScheduledJobRegistry, StartedJobRegistry
from sqlalchemy import text
from sqlmodel import select

from callcenter.db import make_engine
from callcenter.main import create_app
from callcenter.timeutil import utcnow
from tests.conftest import login, make_user
from tests.telephony import wait_for
from tests.test_cli import CALLCENTER
from tests.workorders.conftest import history, new_order, order_row, run_deadlines_now, work
from workorders import jobs
from workorders import service as orders_service
from workorders.models import SmsMessage, WorkOrder
from workorders.routing import Candidate, choose

RETRY_MAX = jobs.RETRY.max


def test_an_order_goes_to_the_best_provider_with_an_sms_and_a_deadline(services, console, city, rq_redis):
    order_id = new_order(console, city["elder"])
    assert order_row(services, order_id).status == "new"  # committed before routing
    work(rq_redis)
    order = order_row(services, order_id)
    assert (order.status, order.provider_id) == ("dispatched", city["providers"]["乐龄"])
    with services.db.session_scope() as session:
        sms = session.exec(select(SmsMessage).order_by(SmsMessage.id)).all()
    assert [(m.to, m.order_id) for m in sms] == [("+8613900000001", order_id), ("+8613800138000", order_id)]
    assert order.number in sms[0].text and "60 分钟内" in sms[0].text
    assert "http://127.0.0.1:8000/m/link/" in sms[0].text  # the dispatcher signs in from the SMS
    assert len(order.confirm_code) == 6 and f"确认码 {order.confirm_code}" in sms[1].text  # the elder's, asked at completion
    assert order.confirm_code not in sms[0].text
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
        order = session.get(WorkOrder, order_id)
        orders_service.transition(session=session, order=order, to="accepted", actor="乐龄", provider_id=order.provider_id)
    run_deadlines_now(rq_redis)
    work(rq_redis)
    assert order_row(services, order_id).status == "accepted"


def test_the_same_job_twice_assigns_once(services, console, city, rq_redis):
    order_id = new_order(console, city["elder"])
    jobs.queue(rq_redis).enqueue(jobs.route_order, order_id)  # duplicates, as after a retry or a sweep
    jobs.queue(rq_redis).enqueue(jobs.route_waiting)
    jobs.queue(rq_redis).enqueue(jobs.route_order, order_id)
    assert jobs.queue(rq_redis).count == 4
    work(rq_redis)
    dispatches = [row for row in history(services, order_id) if row[0] == "dispatched"]
    assert len(dispatches) == 1
    assert jobs.failed_jobs(rq_redis) == []  # the later runs were quiet no-ops, not failures to retry
    assert len(ScheduledJobRegistry(queue=jobs.queue(rq_redis)).get_job_ids()) == 1  # one deadline, for the one dispatch
    with services.db.session_scope() as session:
        assert len(session.exec(select(SmsMessage).where(SmsMessage.provider_id.is_not(None))).all()) == 1


def test_a_burst_of_orders_is_routed_by_one_job_in_batches(services, console, city, rq_redis, monkeypatch):
    monkeypatch.setattr(jobs, "BATCH", 3)
    ids = [new_order(console, city["elder"], service_type="meal") for _ in range(7)]
    assert jobs.queue(rq_redis).count == 1  # one routing job for the burst, not seven
    work(rq_redis)
    assert [order_row(services, i).status for i in ids] == ["dispatched"] * 7
    assert len(ScheduledJobRegistry(queue=jobs.queue(rq_redis)).get_job_ids()) == 7  # a deadline each
    # capacity is counted as the batch goes: 乐龄 (10 a day) then 安康 once 乐龄 is full
    assert new_order(console, city["elder"], service_type="meal") and jobs.queue(rq_redis).count == 1  # the next kick
    for _ in range(5):
        new_order(console, city["elder"], service_type="meal")
    work(rq_redis)
    with services.db.session_scope() as session:
        providers = [row.provider_id for row in session.exec(select(WorkOrder).order_by(WorkOrder.id))]
    assert providers == [city["providers"]["乐龄"]] * 10 + [city["providers"]["安康"]] * 3


def test_one_failing_order_does_not_hold_up_the_batch(services, console, city, rq_redis, monkeypatch):
    """A fault injected into the routing of one order (SimpleWorker runs jobs in this process)."""
    good = new_order(console, city["elder"])
    bad = new_order(console, city["elder"])
    original = orders_service.Router.route

    def route(self, order):
        if order.id == bad:
            raise RuntimeError("boom")
        return original(self, order)

    monkeypatch.setattr(orders_service.Router, "route", route)
    work(rq_redis)
    monkeypatch.undo()
    assert order_row(services, good).status == "dispatched"
    assert order_row(services, bad).status == "new"
    scheduled = ScheduledJobRegistry(queue=jobs.queue(rq_redis))
    [retry] = [Job.fetch(j, connection=rq_redis) for j in scheduled.get_job_ids()
               if Job.fetch(j, connection=rq_redis).func_name == "workorders.jobs.route_order"]
    assert list(retry.args) == [bad] and retry.retries_left == RETRY_MAX - 1  # on its own, failed once, backing off
    scheduled.remove(retry.id)  # time control: its backoff is over
    jobs.queue(rq_redis).enqueue_job(retry)
    work(rq_redis)
    assert order_row(services, bad).status == "dispatched"


def test_no_eligible_provider_escalates_at_once(services, console, city, rq_redis):
    order_id = new_order(console, city["elder"], service_type="bathing")  # nobody is contracted for baths
    work(rq_redis)
    assert order_row(services, order_id).status == "escalated"
    assert "没有可派单的服务商" in history(services, order_id)[-1][2]


def test_an_order_made_while_redis_is_stopped_is_routed_once_it_is_back(settings, services, city, agent, rq_redis, tmp_path):
    """A Redis server of this test's own, really stopped while the order is created."""
    with private_redis(tmp_path) as (url, stop, start):
        app = create_app(settings.model_copy(update={"redis_url": url}))
        with TestClient(app) as client:
            login(client, agent)
            stop()
            response = client.post("/api/workorders", json={"elder_id": city["elder"], "service_type": "meal"})
            assert response.status_code == 201  # the order is saved all the same
            assert client.get("/healthz").json()["redis"]["ok"] is False
        order_id = response.json()["id"]
        assert order_row(services, order_id).status == "new"
        start()
        connection = redis.Redis.from_url(url)
        assert jobs.queue(connection).count == 0  # its routing job was never enqueued
        with services.db.session_scope() as session:  # time control: it has waited longer than the sweeper's patience
            session.get(WorkOrder, order_id).updated_at = utcnow() - timedelta(minutes=5)
        jobs.queue(connection).enqueue(jobs.sweep)  # what `callcenter worker` enqueues every minute
        work(connection)
        assert order_row(services, order_id).status == "dispatched"


@contextmanager
def private_redis(tmp_path):
    """A redis-server on a free port that the test can stop and start again."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    process = {}

    def start():
        process["p"] = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=port).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("private redis-server did not start")

    def stop():
        process["p"].terminate()
        process["p"].wait(timeout=10)

    start()
    try:
        yield f"redis://127.0.0.1:{port}/0", stop, start
    finally:
        if process["p"].poll() is None:
            stop()


def test_a_worker_killed_mid_job_is_retried_and_the_order_assigned_once(settings, services, console, city, rq_redis):
    """`callcenter worker` (forking Worker) is SIGKILLed, work-horse and all, while its routing job
    waits on a lock this test holds on the order; the job is retried and assigns exactly once."""
    order_id = new_order(console, city["elder"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMI_")}
    env |= {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
            "SECRET_KEY": settings.secret_key.get_secret_value(), "DATA_DIR": str(settings.data_dir),
            "EVENTS_PREFIX": settings.events_prefix}
    started = StartedJobRegistry(queue=jobs.queue(rq_redis))
    with writes_blocked(settings):
        worker = subprocess.Popen([CALLCENTER, "worker"], env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            job_id = wait_for(lambda: next((j for j in started.get_job_ids()
                                            if Job.fetch(j, connection=rq_redis).func_name.startswith("workorders.jobs.route_")), None),
                              timeout=30, message="the worker never started the routing job")
            time.sleep(1.0)  # inside the job, waiting on the lock
            assert children_of(worker.pid), "the job runs in a work-horse"
        finally:  # the worker and its work-horse (which RQ puts in a process group of its own)
            for pid in [worker.pid, *children_of(worker.pid)]:
                os.kill(pid, signal.SIGKILL)
            worker.wait(timeout=10)
    assert Job.fetch(job_id, connection=rq_redis).get_status() == "started"  # died mid-job
    assert order_row(services, order_id).status == "new"  # its transaction never committed
    started.cleanup(timestamp=time.time() + 3600)  # time control: the dead worker's lease has run out
    assert Job.fetch(job_id, connection=rq_redis).retries_left == RETRY_MAX - 1  # retried, not failed
    run_deadlines_now(rq_redis)  # the retry's backoff is due now
    work(rq_redis)
    order = order_row(services, order_id)
    assert (order.status, order.provider_id) == ("dispatched", city["providers"]["乐龄"])
    assert [to for to, _, _ in history(services, order_id)] == ["new", "dispatched"]
    with services.db.session_scope() as session:
        assert len(session.exec(select(SmsMessage).where(SmsMessage.provider_id.is_not(None))).all()) == 1


@contextmanager
def writes_blocked(settings):
    """Block the routing job's writes until exit: SQLite's write lock, or on PostgreSQL a lock on
    the SMS outbox (the job then waits after moving the order, in the middle of its transaction)."""
    engine = make_engine(settings.database_url)
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.begin()
            connection.execute(text("LOCK TABLE sms_outbox IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            connection.rollback()
    engine.dispose()


def children_of(pid: int) -> list[int]:
    """Child processes of `pid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


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
    order_id = new_order(console, city["elder"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMI_")}
    env |= {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
            "SECRET_KEY": settings.secret_key.get_secret_value(), "DATA_DIR": str(settings.data_dir),
            "EVENTS_PREFIX": settings.events_prefix}
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
