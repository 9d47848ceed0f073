#!/usr/bin/env python3
"""Benchmark (issue 5): work-order routing on real Redis and PostgreSQL (127.0.0.1, as in the tests).

    .venv/bin/python scripts/bench/routing.py [--orders 2000] [--rate 50] [--seconds 20]

(a) throughput: `--orders` committed orders (each kicking routing as the API does), then drained
    by 1 and by 2 worker processes, each with RQ's SimpleWorker (jobs in the worker process) and
    with the forking Worker (`callcenter worker --burst`, a work-horse per job): orders routed per
    second, and for reference RQ's own ceiling: empty jobs per second, one job per order.
(b) latency: orders created at `--rate` per second for `--seconds` while two `callcenter worker`
    processes run; time from the order's creation to its provider's SMS in the outbox, p50/p99.
Targets: at least 200 orders/s per worker process; p99 under 1 s at 50 orders/s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from sqlalchemy import func  # noqa: E402
from sqlmodel import select  # noqa: E402

from callcenter import migrate  # noqa: E402
from callcenter.areas import service as areas_service  # noqa: E402
from callcenter.auth import service as auth_service  # noqa: E402
from callcenter.config import Settings  # noqa: E402
from callcenter.db import Database, create_postgres_database  # noqa: E402
from callcenter.elders import service as elders_service  # noqa: E402
from callcenter.elders.schemas import ElderIn, PhoneIn  # noqa: E402
from callcenter.crypto import Sealer  # noqa: E402
from workorders import jobs  # noqa: E402
from workorders import service as orders_service  # noqa: E402
from workorders.models import SmsMessage, WorkOrder  # noqa: E402

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/11"
CALLCENTER = str(Path(sys.executable).with_name("callcenter"))
SIMPLE_WORKER = ("from redis import Redis; from rq import SimpleWorker; from workorders import jobs; "
                 "from callcenter.config import get_settings; jobs.configure(get_settings()); "
                 "c = Redis.from_url(get_settings().redis_url); SimpleWorker([jobs.queue(c)], connection=c).work(burst=True)")


def prepare(settings: Settings) -> tuple[Database, int, object]:
    """A street with 20 meal providers (large capacity) and one elder there; returns (db, elder, user)."""
    database = Database(settings)
    with database.session_scope() as session:
        district = areas_service.get_or_create(session=session, name="中山区", parent=None)
        street = areas_service.get_or_create(session=session, name="桃源街道", parent=district)
        community = areas_service.get_or_create(session=session, name="桃源社区", parent=street)
        elder = elders_service.create(session=session, elder_in=ElderIn(name="张大爷", community_id=community.id,
                                                                         phones=[PhoneIn(number="13800138000")]),
                                      sealer=Sealer(settings.secret), area_code="0411")
        for n in range(20):  # each with its dispatcher account: the SMS carries a signed login link
            orders_service.save_provider(session=session, area_code="0411", fields=dict(
                name=f"服务商{n:02d}", phone=f"+86139000000{n:02d}", service_types=["meal"], coverage=[street.id],
                daily_capacity=1_000_000, rating=Decimal("4.0") + Decimal(n % 10) / 10))
        user = auth_service.create_user(session=session, username="bench", role="agent", password="bench-password")
        session.expunge(user)
        return database, elder.id, user


def create_orders(database: Database, settings: Settings, elder_id: int, user, count: int, connection=None,
                  per_order: bool = False) -> None:
    for _ in range(count):
        with database.session_scope() as session:
            order = orders_service.create_order(session=session, user=user, service_type="meal", elder_id=elder_id, tz=settings.tz,
                                                self_paid=True)
            order_id = order.id
        if per_order:  # the baseline: one RQ job per order
            jobs.queue(connection).enqueue(jobs.route_order, order_id, retry=jobs.RETRY)
        elif connection is not None:  # committed, then kicked: as the API does
            jobs.enqueue_route(connection, order_id)


def routed(database: Database) -> int:
    with database.session_scope() as session:
        return len(session.exec(select(WorkOrder.id).where(WorkOrder.status == "dispatched")).all())


def throughput(settings, env, processes: int, kind: str, orders: int, per_order: bool = False) -> float:
    database, elder_id, user = prepare(settings)
    connection = redis.Redis.from_url(REDIS_URL)
    create_orders(database, settings, elder_id, user, orders, connection, per_order=per_order)
    command = [sys.executable, "-c", SIMPLE_WORKER] if kind == "SimpleWorker" else [CALLCENTER, "worker", "--burst"]
    started = time.perf_counter()
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(processes)]
    for worker in workers:
        worker.wait(600)
    elapsed = time.perf_counter() - started
    done = routed(database)
    with database.session_scope() as session:
        first, last = session.exec(select(func.min(WorkOrder.dispatched_at), func.max(WorkOrder.dispatched_at))).one()
    database.engine.dispose()
    assert done == orders, f"{done} of {orders} routed"
    return orders / elapsed, orders / max((last - first).total_seconds(), 1e-3)


def latency(settings, env, rate: float, seconds: float) -> tuple[float, float, int]:
    database, elder_id, user = prepare(settings)
    connection = redis.Redis.from_url(REDIS_URL)
    workers = [subprocess.Popen([CALLCENTER, "worker", "--sweep-seconds", "3600"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        time.sleep(2.0)
        total = int(rate * seconds)
        start = time.perf_counter()
        for n in range(total):
            create_orders(database, settings, elder_id, user, 1, connection)
            time.sleep(max(0.0, start + (n + 1) / rate - time.perf_counter()))
        deadline = time.monotonic() + 30
        while routed(database) < total and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(20)
    with database.session_scope() as session:
        created = dict(session.exec(select(WorkOrder.id, WorkOrder.created_at)).all())
        notified = session.exec(select(SmsMessage.order_id, SmsMessage.created_at).where(SmsMessage.provider_id.is_not(None))).all()
    delays = sorted((sent - created[order_id]).total_seconds() * 1000 for order_id, sent in notified)
    database.engine.dispose()
    return delays[len(delays) // 2], delays[min(len(delays) - 1, int(len(delays) * 0.99))], len(delays)


def fresh(tmp: str):
    url, drop = create_postgres_database(PG_ADMIN_URL, f"bench_routing_{uuid.uuid4().hex[:8]}")
    migrate.upgrade(url)
    redis.Redis.from_url(REDIS_URL).flushdb()
    settings = Settings(_env_file=None, data_dir=Path(tmp), database_url=url, redis_url=REDIS_URL, secret_key="bench-secret")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMI_")}
    env |= {"DATABASE_URL": url, "REDIS_URL": REDIS_URL, "SECRET_KEY": "bench-secret", "DATA_DIR": tmp}
    return settings, env, drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings, env, drop = fresh(tmp)
        try:
            rate, steady = throughput(settings, env, 1, "SimpleWorker", args.orders, per_order=True)
        finally:
            drop()
    print(f"(a) baseline, one RQ job per order, SimpleWorker, 1 process: {rate:,.0f} orders routed/s "
          f"(first to last dispatch: {steady:,.0f}/s)")
    for kind in ("SimpleWorker", "Worker (forking)"):
        for processes in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                settings, env, drop = fresh(tmp)
                try:
                    rate, steady = throughput(settings, env, processes, kind, args.orders)
                finally:
                    drop()
            print(f"(a) {kind}, {processes} process{'es' if processes > 1 else ''}: {rate:,.0f} orders routed/s "
                  f"({rate / processes:,.0f} per process, start-up included; first to last dispatch: {steady:,.0f}/s; "
                  f"{args.orders:,} orders)")
    with tempfile.TemporaryDirectory() as tmp:
        settings, env, drop = fresh(tmp)
        try:
            p50, p99, count = latency(settings, env, args.rate, args.seconds)
        finally:
            drop()
    print(f"(b) {args.rate:g} orders/s for {args.seconds:g} s, 2 `callcenter worker` processes: creation → provider SMS "
          f"p50 {p50:.0f} ms, p99 {p99:.0f} ms ({count:,} notified)")


if __name__ == "__main__":
    main()
