#!/usr/bin/env python3
"""Benchmark (issue 6): the supervisors' figures on real PostgreSQL (127.0.0.1, as in the tests).

    .venv/bin/python scripts/bench/stats.py [--calls 1000000] [--orders 200000] [--days 30] [--runs 20]

Fills a fresh database with `--calls` inbound calls spread evenly over the last `--days` local
days (today included; 90 % answered by one of 100 agents, each answer leaving its ringing,
talking, wrap-up and ready stretches in the agent log for occupancy), `--orders` work orders
over the same days (with their escalation events and subsidy draws; orders older than two days are
closed or cancelled but for 0.5 % still escalated), then times, `--runs` times
each after one warm-up, what the pages ask for:
- the wallboard snapshot (today's KPIs and occupancy, the last hour, callers waiting, agents, orders),
  with the current hour marked dirty as the bridge's writes leave it (read from the calls);
- one day's report (call KPIs per hour from the rollup, per agent with occupancy, and the
  work-order report), i.e. /supervisor/reports for yesterday;
- the 30-day report, the same for the whole range;
- today's figures as a wallboard reloads them after calls end (issue 16): read from the database,
  and from the copy every screen shares (Redis, read again every 5 s), with the SQL statements
  one screen's reload sends.
Targets: wallboard under 50 ms, one day under 200 ms, 30 days under 2 s, a shared reload under 5 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from types import SimpleNamespace
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import redis as redis_lib  # noqa: E402
from sqlalchemy import event, text  # noqa: E402

from callcenter import migrate  # noqa: E402
from callcenter.areas import service as areas_service  # noqa: E402
from callcenter.config import Settings  # noqa: E402
from callcenter.crypto import Sealer  # noqa: E402
from callcenter.db import Database, create_postgres_database  # noqa: E402
from callcenter.elders import service as elders_service  # noqa: E402
from callcenter.elders.schemas import ElderIn, PhoneIn  # noqa: E402
from callcenter.stats import rollup  # noqa: E402
from callcenter.stats.models import CallRollupDirty  # noqa: E402
from callcenter.stats import service as stats_service  # noqa: E402
from callcenter.stats import api as stats_api  # noqa: E402
from callcenter.stats import wallboard  # noqa: E402
from callcenter.timeutil import day_start_utc, today_in, utcnow  # noqa: E402
from workorders import service as orders_service  # noqa: E402
from workorders import stats as order_stats  # noqa: E402

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/12"
AGENTS = 100

CALLS_SQL = """
INSERT INTO calls (linkedid, direction, context, state, outcome, caller_number, elder_candidates, queue, priority,
                   agent_extension, ring_attempts, transfers, started_at, queued_at, answered_at, abandoned_at,
                   agent_done_at, ended_at, wrapup_ended_at, wait_seconds, talk_seconds, channels, notes, updated_at)
SELECT 'bench-' || g, 'inbound', 'from-elders', 'ended', kind, '138' || lpad((g % 100000000)::text, 8, '0'), '[]', 'hotline',
       CASE WHEN g % 50 = 0 THEN 10 ELSE 0 END,
       CASE WHEN kind = 'answered' THEN (8001 + g % :agents)::text END, 0, 0,
       q - interval '20 seconds', q,
       CASE WHEN kind = 'answered' THEN q + w * interval '1 second' END,
       CASE WHEN kind IN ('abandoned', 'short_abandon') THEN q + w * interval '1 second' END,
       CASE WHEN kind = 'answered' THEN q + (w + t) * interval '1 second' END,
       q + (w + t + 1) * interval '1 second',
       CASE WHEN kind = 'answered' THEN q + (w + t + wr) * interval '1 second' END,
       w, CASE WHEN kind = 'answered' THEN t END, '[]', '', q
FROM (SELECT g, :start + (g::float8 * :span / :n) * interval '1 second' AS q,
             CASE WHEN r < 0.90 THEN 'answered' WHEN r < 0.95 THEN 'abandoned' WHEN r < 0.98 THEN 'short_abandon'
                  ELSE 'timeout' END AS kind,
             CASE WHEN r >= 0.95 AND r < 0.98 THEN (random() * 5)::int ELSE 2 + (random() * 40)::int END AS w,
             60 + (random() * 300)::int AS t, (random() * 40)::int AS wr
      FROM (SELECT g, random() AS r FROM generate_series(1, :n) AS g) AS drawn) AS calls
"""

# Four stretches per answered call: ringing (2 s), talking, wrap-up, then ready until the next.
AGENT_LOG_SQL = """
INSERT INTO agent_state_log (interface, extension, activity, pause_reason, started_at, ended_at)
SELECT 'Local/' || agent_extension || '@agents', agent_extension, s.activity, NULL, s.started_at, s.ended_at
FROM calls, LATERAL (VALUES
    ('ringing', answered_at - interval '2 seconds', answered_at),
    ('in_call', answered_at, agent_done_at),
    ('wrapup', agent_done_at, wrapup_ended_at),
    ('ready', wrapup_ended_at, wrapup_ended_at + interval '600 seconds')) AS s (activity, started_at, ended_at)
WHERE calls.answered_at IS NOT NULL
"""

# The agents' days from the closed stretches. The bridge splits a stretch at local midnight; for
# the benchmark's volume it is enough to count each on the day it started.
AGENT_DAYS_SQL = """
INSERT INTO agent_activity_days (day, extension, activity, seconds)
SELECT (started_at AT TIME ZONE :tz)::date, extension, activity,
       SUM(FLOOR(EXTRACT(EPOCH FROM ended_at)) - FLOOR(EXTRACT(EPOCH FROM started_at)))
FROM agent_state_log WHERE ended_at IS NOT NULL GROUP BY 1, 2, 3
"""

ORDERS_SQL = """
INSERT INTO work_orders (number, elder_id, service_type, urgency, status, provider_id, address, community_id, description,
                         created_at, dispatched_at, accept_due, arrive_due, complete_due, updated_at, accepted_at,
                         arrived_at, completed_at, confirm_failures, service_notes, satisfaction, callback_comment,
                         complaint, closed_at, self_paid)
SELECT 'GDB' || g, :elder, (ARRAY['meal','bathing','cleaning','emergency','medical_escort','nursing'])[1 + g % 6], 'normal',
       CASE WHEN c < now() - interval '2 days' THEN  -- older orders are done with, but a few escalations
                 CASE WHEN r < 0.88 THEN 'closed' WHEN r < 0.995 THEN 'cancelled' ELSE 'escalated' END
            WHEN r < 0.80 THEN 'closed' WHEN r < 0.88 THEN 'completed' WHEN r < 0.93 THEN 'dispatched'
            WHEN r < 0.96 THEN 'cancelled' ELSE 'escalated' END,
       (ARRAY[:providers])[1 + g % :provider_count], '', :community, '',
       c, c + interval '1 minute', c + interval '30 minutes', c + interval '2 hours', c + interval '1 day', c,
       CASE WHEN r < 0.93 THEN c + interval '10 minutes' END, CASE WHEN r < 0.88 THEN c + interval '90 minutes' END,
       CASE WHEN r < 0.88 THEN c + (10 + random() * 30) * interval '1 hour' END, 0, '',
       CASE WHEN r < 0.80 THEN 1 + (random() * 4.4)::int END, '', r > 0.79 AND r < 0.80,
       CASE WHEN r < 0.80 THEN c + interval '2 days' END, g % 3 = 0
FROM (SELECT g, random() AS r, :start + (g::float8 * :span / :n) * interval '1 second' AS c
      FROM generate_series(1, :n) AS g) AS orders
"""

EVENTS_SQL = """
INSERT INTO work_order_events (order_id, at, actor, from_status, to_status, note)
SELECT id, created_at + interval '1 day', 'sla', 'dispatched', 'escalated', '' FROM work_orders WHERE status = 'escalated'
"""

LEDGER_SQL = """
INSERT INTO subsidy_ledger (elder_id, order_id, service_type, amount, balance_after, note, at)
SELECT elder_id, id, service_type, -15.00, 100.00, '', completed_at FROM work_orders WHERE completed_at IS NOT NULL AND NOT self_paid
"""


def fill(database: Database, settings: Settings, *, calls: int, orders: int, days: int) -> None:
    tz = settings.tz
    start = day_start_utc(today_in(tz) - timedelta(days=days - 1), tz)
    span = days * 86400
    with database.session_scope() as session:
        district = areas_service.get_or_create(session=session, name="中山区", parent=None)
        street = areas_service.get_or_create(session=session, name="桃源街道", parent=district)
        community = areas_service.get_or_create(session=session, name="桃源社区", parent=street)
        elder = elders_service.create(session=session, elder_in=ElderIn(name="张大爷", community_id=community.id,
                                                                         phones=[PhoneIn(number="13800138000")]),
                                      sealer=Sealer(settings.secret), area_code="0411")
        providers = [orders_service.save_provider(session=session, area_code="0411", fields=dict(
            name=f"服务商{n:02d}", phone=f"+86139000000{n:02d}", service_types=["meal"], coverage=[street.id])).id
            for n in range(20)]
        elder_id, community_id = elder.id, community.id
    steps = [
        ("calls", CALLS_SQL, {"start": start, "span": span, "n": calls, "agents": AGENTS}),
        ("agent log", AGENT_LOG_SQL, {}),
        ("agent days (rollup)", AGENT_DAYS_SQL, {"tz": settings.timezone}),
        ("work orders", ORDERS_SQL.replace(":providers", ",".join(map(str, providers))),
         {"start": start, "span": span, "n": orders, "elder": elder_id, "community": community_id,
          "provider_count": len(providers)}),
        ("escalations", EVENTS_SQL, {}),
        ("subsidy draws", LEDGER_SQL, {}),
    ]
    for name, sql, params in steps:
        began = time.perf_counter()
        with database.engine.begin() as connection:
            rows = connection.execute(text(sql), params).rowcount
        print(f"  {name}: {rows:,} rows in {time.perf_counter() - began:.1f} s")
    began = time.perf_counter()  # the calls went in with plain SQL: sum their hours as the bridge would have
    with database.session_scope() as session:
        hours = rollup.rebuild_calls(session, start, start + timedelta(seconds=span))
    print(f"  call rollup: {hours:,} hours summed in {time.perf_counter() - began:.1f} s")
    with database.session_scope() as session:  # as in service: the bridge's last writes leave this hour marked
        session.add(CallRollupDirty(bucket=rollup.bucket_of(utcnow())))
    print("  the current hour is marked dirty: the wallboard reads it from the calls")
    # Agents on the wallboard now: their current state rows.
    with database.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO agent_states (interface, name, extension, state, status, paused, queues, since, updated_at) "
            "SELECT 'Local/' || (8001 + g) || '@agents', '坐席' || (8001 + g), (8001 + g)::text, 'ready', 'not_in_use', false, "
            "'[\"hotline\"]', now(), now() FROM generate_series(0, :agents - 1) AS g"), {"agents": AGENTS})
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))  # as autovacuum leaves a table in steady use


def count_statements(database: Database, function) -> int:
    """How many SQL statements `function` sends (a warm call)."""
    function()
    sent = []
    listener = lambda *args: sent.append(1)  # noqa: E731
    event.listen(database.engine, "before_cursor_execute", listener)
    try:
        function()
    finally:
        event.remove(database.engine, "before_cursor_execute", listener)
    return len(sent)


def timed(label: str, runs: int, target: float, function) -> None:
    function()  # warm-up: plans cached, pages in memory
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        function()
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    verdict = "meets" if p99 < target else "MISSES"
    print(f"{label:<34} p50 {statistics.median(times):8.1f} ms   p99 {p99:8.1f} ms   "
          f"(target < {target:.0f} ms: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    url, drop = create_postgres_database(PG_ADMIN_URL, f"bench_stats_{uuid.uuid4().hex[:8]}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            migrate.upgrade(url)
            settings = Settings(_env_file=None, data_dir=Path(tmp), database_url=url, secret_key="bench-secret")
            database = Database(settings)
            print(f"filling PostgreSQL: {args.calls:,} calls and {args.orders:,} work orders over {args.days} days")
            fill(database, settings, calls=args.calls, orders=args.orders, days=args.days)
            tz, threshold = settings.tz, settings.service_level_seconds
            today = today_in(tz)
            yesterday, first = today - timedelta(days=1), today - timedelta(days=args.days - 1)

            def reports(date_from, date_to):
                def run():
                    with database.session_scope() as session:
                        stats_service.report(session=session, tz=tz, date_from=date_from, date_to=date_to, threshold=threshold)
                        order_stats.report(session=session, tz=tz, date_from=date_from, date_to=date_to)
                return run

            def board():
                with database.session_scope() as session:
                    wallboard.snapshot(session=session, settings=settings)

            # What one screen's reload of today's figures costs now: the copy all screens share
            # (stats/api.py), read from the database at most every FIGURES_SECONDS.
            redis = redis_lib.Redis.from_url(REDIS_URL)
            shared = SimpleNamespace(settings=settings.model_copy(update={"events_prefix": f"benchstats{os.getpid()}"}),
                                     redis=redis)

            def figures_shared():
                with database.session_scope() as session:
                    stats_api.shared_figures(session, shared)

            def figures_read():
                with database.session_scope() as session:
                    wallboard.figures(session=session, settings=settings)

            with database.session_scope() as session:
                day = stats_service.report(session=session, tz=tz, date_from=yesterday, date_to=yesterday, threshold=threshold)
                print(f"yesterday: {day['total']['offered']:,} calls offered, {len(day['by_agent'])} agents, "
                      f"service level {day['total']['service_level']}, occupancy of {day['by_agent'][0]['agent']} "
                      f"{day['by_agent'][0]['occupancy']}")
            timed("wallboard snapshot (today)", args.runs, 50, board)
            timed("wallboard figures, read", args.runs, 50, figures_read)
            queries = count_statements(database, figures_shared)
            timed("wallboard figures, shared copy", args.runs, 5, figures_shared)
            print(f"  a screen's figures from the shared copy: {queries} SQL statements (the copy is read again every "
                  f"{stats_api.FIGURES_SECONDS:g} s, whatever the number of screens)")
            redis.delete(f"{shared.settings.events_prefix}:wallboard:figures")
            timed("one day's report (calls + orders)", args.runs, 200, reports(yesterday, yesterday))
            timed(f"{args.days}-day report (calls + orders)", max(3, args.runs // 4), 2000, reports(first, today))
            database.engine.dispose()
    finally:
        drop()


if __name__ == "__main__":
    main()
