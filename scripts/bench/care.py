#!/usr/bin/env python3
"""Benchmark (issue 18): the morning's care work for a city, and the agents' work lists, on real
PostgreSQL (127.0.0.1, trust auth, as in the tests; a fresh database created and dropped).

    .venv/bin/python scripts/bench/care.py [--elders 1000000] [--agents 200] [--history-days 30]
                                           [--calls 300000] [--seconds 30] [--think 2.0] [--keep]

Loads `--elders` elders with COPY, with the mixes of the demo city (callcenter/demo.py: age bands,
living situation, ability by age, economic status, risk flags) spread over its communities, and
what a running system has behind it:
- each elder's last contacts as the seeded care rules would have left them in steady state (the
  last care call or call from the elder 0 … interval days ago, the last visit 0 … its interval
  ago; 4 % a few days behind, 2 % never reached), a quarter of the others with a recent call;
- `--history-days` days of finished care tasks before that (done, escalated, cancelled), their
  attempts and contacts, so the tables and indexes have a running system's size;
- `--calls` calls over the last 30 days (60 % from known elders, 90 % answered), those before today
  already ingested as contacts, as the previous mornings left them; 1 % of elders with an exception
  (in hospital, declined, moved, adjusted); `--agents` agents signed into the queue.

Then times `service.make_day` (contacts ingested and tasks met closed, plans computed, the day's
call and visit tasks, calls shared among the agents on duty) in a process of its own, with its
wall time, its split, and the process's peak memory (targets: under 60 s, under 500 MB), and the
tasks it made; the care report's pieces on the result (the wallboard tile, the overdue list, this
month's report). Last, the work list as the agents fetch it: one `callcenter web` process
(uvicorn) as a subprocess and `--agents` signed-in agents fetching `GET /api/care/tasks/mine`:
each every `--think` seconds (± 50 %) for `--seconds`; all at the same instant, `--rounds` times
(everyone opens the list at nine) with at most 20 requests at the server at once (a proxy's queue
in front of it); back to back for `--seconds` (each agent's next request as soon as the last
answered), at most 20 at once: the process's capacity; and all at once, once, with nothing in front.
Each run has a web process of its own. p50/p99 and requests/s (target: p99 under 100 ms).
The load clients run in this process, on the same machine as the server and PostgreSQL.
`--explain` runs each statement of make_day under EXPLAIN ANALYZE first (in a savepoint, undone)
and prints the slowest ones with their plans (make_day's times then count each statement twice).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import event, insert, text  # noqa: E402
from sqlmodel import select  # noqa: E402

from callcenter import migrate  # noqa: E402
from callcenter.areas import service as areas_service  # noqa: E402
from callcenter.auth import service as auth_service  # noqa: E402
from callcenter.auth.models import User  # noqa: E402
from callcenter.care import reports, service  # noqa: E402
from callcenter.care.models import CareRule  # noqa: E402
from callcenter.config import Settings  # noqa: E402
from callcenter.db import Database, create_postgres_database  # noqa: E402
from callcenter.demo import CITY, COMMUNITY_WORDS, FEMALE_NAMES, MALE_NAMES, ROADS, SURNAMES  # noqa: E402
from callcenter.elders.pinyin import name_keys  # noqa: E402
from callcenter.timeutil import day_start_utc, today_in, utcnow  # noqa: E402

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/12"
SECRET = "bench-secret-key"
SOURCE_BASE = 1_500_000_000  # contact source ids made here (history contacts use task and call ids, far below)
HISTORY_GAP_DAYS = 40  # history ends this many days ago: older than every "last contact" made here


# ---- the city ------------------------------------------------------------------------------------

def make_areas(database: Database, per_street: int) -> list[int]:
    """The demo city's districts and streets with `per_street` communities each; their ids."""
    communities = []
    with database.session_scope() as session:
        for district_name, (code, streets) in CITY.items():
            district = areas_service.get_or_create(session=session, name=district_name, parent=None, code=code)
            for street_name in streets:
                street = areas_service.get_or_create(session=session, name=street_name, parent=district)
                for n in range(per_street):
                    word = COMMUNITY_WORDS[n % len(COMMUNITY_WORDS)] + ("" if n < len(COMMUNITY_WORDS) else str(n))
                    communities.append(areas_service.get_or_create(session=session, name=f"{word}社区", parent=street).id)
    return communities


def _rules(database: Database) -> list[CareRule]:
    with database.session_scope() as session:
        rules = service.active_rules(session=session)
        session.expunge_all()
        return rules


def _matches(rule: CareRule, living: str, ability: str, economic: str, flags: list[str], age: int) -> bool:
    return ((not rule.living_situations or living in rule.living_situations)
            and (not rule.ability_levels or ability in rule.ability_levels)
            and (not rule.economic_statuses or economic in rule.economic_statuses)
            and (not rule.risk_flags or any(flag in rule.risk_flags for flag in flags))
            and (not rule.min_age or age >= rule.min_age))


class Elders:
    """The elders' rows (COPY text) and their last contacts, drawn as the demo city's."""

    def __init__(self, rng: random.Random, communities: list[int], rules: list[CareRule], today: date, tz):
        self.rng, self.communities, self.rules, self.today, self.tz = rng, communities, rules, today, tz
        names = {s + g for s in SURNAMES[:60] for g in MALE_NAMES + FEMALE_NAMES}
        self.names = [(name, *name_keys(name)) for name in sorted(names)]
        self.now = utcnow().isoformat()
        self.source = SOURCE_BASE
        self.covered = 0
        self.overrides: list[tuple[int, str, int | None]] = []

    def _age(self) -> int:
        band = self.rng.choices([(60, 69), (70, 79), (80, 89), (90, 100)], weights=[55, 30, 12, 3])[0]
        return self.rng.randint(*band)

    def _flags(self, age: int, ability: str) -> list[str]:
        rng, flags = self.rng, []
        for flag, share in (("fall_history", 0.2 if age >= 80 else 0.06), ("cognitive_impairment", 0.04),
                            ("hearing_impaired", 0.15 if age >= 80 else 0.02), ("recent_discharge", 0.01), ("mental_crisis", 0.003),
                            ("no_children", 0.05), ("frequent_emergency", 0.005)):
            if rng.random() < share:
                flags.append(flag)
        if ability == "severe" and rng.random() < 0.5:
            flags.append("bedridden")
        return flags

    def _at(self, days_ago: int) -> str:
        """A time of day (9:00–17:00 local) `days_ago` days before today, as stored (UTC)."""
        day = self.today - timedelta(days=days_ago)
        local = datetime(day.year, day.month, day.day, 9, 0, tzinfo=self.tz) + timedelta(seconds=self.rng.randrange(8 * 3600))
        return local.astimezone(timezone.utc).isoformat()

    def _contact(self, out, elder_id: int, kind: str, days_ago: int) -> None:
        self.source += 1
        out.write(f"{elder_id}\t{kind}\t{self.source}\t{self._at(days_ago)}\n")

    def _last(self, every: int) -> int | None:
        """Days since the last contact of a clock of `every` days: None, never (2 %)."""
        draw = self.rng.random()
        if draw < 0.02:
            return None
        if draw < 0.06:
            return every + self.rng.randint(1, 5)  # behind
        return self.rng.randint(0, every)

    def write(self, first_id: int, count: int, elders_out, contacts_out) -> None:
        rng = self.rng
        for elder_id in range(first_id, first_id + count):
            gender = "male" if rng.random() < 0.45 else "female"
            age = self._age()
            born = self.today - timedelta(days=age * 365 + rng.randrange(365))
            weights = [35, 25, 20, 20] if age >= 90 else [60, 20, 12, 8] if age >= 80 else [85, 9, 4, 2]
            ability = rng.choices(["intact", "mild", "moderate", "severe"], weights=weights)[0]
            living = rng.choices(["lives_alone", "empty_nest", "left_behind", "with_family", "institution"], weights=[28, 36, 3, 31, 2])[0]
            economic = rng.choices(["normal", "minimum_living", "near_minimum", "extreme_poverty", "family_planning_hardship"],
                                   weights=[935, 30, 20, 5, 10])[0]
            flags = self._flags(age, ability)
            name, pinyin, initials = rng.choice(self.names)
            address = f"{rng.choice(ROADS)}{rng.randint(1, 300)}号{rng.randint(1, 6)}单元{rng.randint(1, 7)}0{rng.randint(1, 4)}室"
            elders_out.write("\t".join([
                str(elder_id), name, pinyin, initials, gender, born.isoformat(), str(rng.choice(self.communities)), address,
                living, economic, ability, "", "", "", "0.00", json.dumps(flags), "", "t", self.now, self.now]) + "\n")
            rule = next((r for r in self.rules if _matches(r, living, ability, economic, flags, age)), None)
            if rule is None:
                if rng.random() < 0.25:
                    self._contact(contacts_out, elder_id, "inbound_call", rng.randint(0, 60))
                continue
            self.covered += 1
            if rng.random() < 0.01:
                reason = rng.choices(["in_hospital", "declined", "moved_away", "adjusted"], weights=[5, 2, 2, 1])[0]
                self.overrides.append((elder_id, reason, 30 if reason == "adjusted" else None))
            if rule.call_every_days and (days := self._last(rule.call_every_days)) is not None:
                kind = rng.choices(["care_call", "inbound_call", "work_order"], weights=[55, 35, 10])[0]
                self._contact(contacts_out, elder_id, kind, days)
            if rule.visit_every_days and (days := self._last(rule.visit_every_days)) is not None:
                self._contact(contacts_out, elder_id, "visit", days)


def copy_rows(database: Database, statement: str, buffer: io.StringIO) -> None:
    raw = database.engine.raw_connection()
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            copy.write(buffer.getvalue())
        raw.commit()
    finally:
        raw.close()


ELDER_COLUMNS = ("id, name, name_pinyin, name_initials, gender, birth_date, community_id, address, living_situation, economic_status, "
                 "ability_level, chronic_conditions, allergies, steward_name, subsidy_balance, risk_flags, notes, active, created_at, "
                 "updated_at")

HISTORY_TASKS_SQL = """
INSERT INTO care_tasks (elder_id, kind, source, status, due_on, risk_level, overdue_days, community_id, assigned_to, attempts,
                        note, created_at, closed_at)
SELECT e.id, CASE WHEN h.r < 0.8 THEN 'call' ELSE 'visit' END, 'plan',
       CASE WHEN h.s < 0.90 THEN 'done' WHEN h.s < 0.95 THEN 'escalated' ELSE 'cancelled' END,
       h.d, (ARRAY['1', '2', '3'])[1 + (h.g % 3)], 0, e.community_id,
       CASE WHEN h.r < 0.8 THEN (ARRAY[:agents])[1 + (h.g % :agent_count)] END,
       CASE WHEN h.s >= 0.90 AND h.s < 0.95 THEN 3 ELSE 0 END, '',
       h.d + time '08:00' - interval '8 hours', h.d + time '08:00' - interval '8 hours' + (1 + h.r * 30) * interval '1 hour'
FROM (SELECT g, 1 + (random() * (:elders - 1))::int AS eid, random() AS r, random() AS s,
             :first_day + (random() * (:days - 1))::int AS d
      FROM generate_series(1, :rows) AS g) AS h
JOIN elders AS e ON e.id = h.eid
"""

HISTORY_ATTEMPTS_SQL = """
INSERT INTO care_attempts (task_id, user_id, linkedid, outcome, talk_seconds, at)
SELECT t.id, t.assigned_to, 'hist-' || t.id || '-' || k,
       CASE WHEN t.status = 'escalated' THEN (ARRAY['no_answer', 'busy', 'no_answer'])[k]
            WHEN t.status = 'done' THEN 'answered' ELSE 'no_answer' END,
       CASE WHEN t.status = 'done' THEN 120 END, t.created_at + k * interval '2 hours'
FROM care_tasks AS t, generate_series(1, CASE WHEN t.status = 'escalated' THEN 3 ELSE 1 END) AS k
WHERE t.kind = 'call'
"""

HISTORY_CONTACTS_SQL = """
INSERT INTO care_contacts (elder_id, kind, source_id, at)
SELECT elder_id, CASE WHEN kind = 'visit' THEN 'visit' ELSE 'care_call' END, id, closed_at FROM care_tasks WHERE status = 'done'
"""

CALLS_SQL = """
INSERT INTO calls (linkedid, direction, context, state, outcome, caller_number, elder_id, elder_candidates, queue, priority,
                   agent_extension, ring_attempts, transfers, started_at, queued_at, answered_at, ended_at, wait_seconds,
                   talk_seconds, channels, leg_agents, reconciled, notes, updated_at)
SELECT 'bench-' || g, 'inbound', 'from-elders', 'ended', CASE WHEN r < 0.9 THEN 'answered' ELSE 'abandoned' END,
       '138' || lpad(g::text, 8, '0'), CASE WHEN r2 < 0.6 THEN 1 + (r2 / 0.6 * (:elders - 1))::int END, '[]', 'hotline', 0,
       CASE WHEN r < 0.9 THEN '8001' END, 0, 0, q, q, CASE WHEN r < 0.9 THEN q + interval '10 seconds' END,
       q + interval '200 seconds', 10, CASE WHEN r < 0.9 THEN 190 END, '[]', '[]', false, '', q
FROM (SELECT g, random() AS r, random() AS r2, :start + (g::float8 * :span / :n) * interval '1 second' AS q
      FROM generate_series(1, :n) AS g) AS calls
"""

# What the previous mornings' runs ingested: the answered calls of known elders before today.
CALLS_INGESTED_SQL = """
INSERT INTO care_contacts (elder_id, kind, source_id, at)
SELECT elder_id, 'inbound_call', id, answered_at FROM calls WHERE elder_id IS NOT NULL AND answered_at IS NOT NULL AND started_at < :today
"""


def fill(database: Database, settings: Settings, args) -> dict:
    tz, today = settings.tz, today_in(settings.tz)
    rng = random.Random(args.seed)
    timings = {}

    def step(name: str, function):
        began = time.perf_counter()
        rows = function()
        timings[name] = time.perf_counter() - began
        print(f"  {name}: {rows:,} rows in {timings[name]:.1f} s", flush=True)

    communities = make_areas(database, args.communities_per_street)
    print(f"  {len(communities)} communities in {len(CITY)} districts")
    agent_ids = make_agents(database, args.agents)
    maker = Elders(rng, communities, _rules(database), today, tz)

    def elders_and_contacts() -> int:
        batch = 100_000
        for first in range(1, args.elders + 1, batch):
            elders_out, contacts_out = io.StringIO(), io.StringIO()
            maker.write(first, min(batch, args.elders + 1 - first), elders_out, contacts_out)
            copy_rows(database, f"COPY elders ({ELDER_COLUMNS}) FROM STDIN", elders_out)
            copy_rows(database, "COPY care_contacts (elder_id, kind, source_id, at) FROM STDIN", contacts_out)
        with database.engine.begin() as connection:
            connection.execute(text("SELECT setval(pg_get_serial_sequence('elders', 'id'), :n)"), {"n": args.elders})
        return args.elders

    step("elders (COPY) and their last contacts", elders_and_contacts)
    print(f"  {maker.covered:,} elders under a care rule ({maker.covered / args.elders:.0%}), "
          f"{maker.source - SOURCE_BASE:,} last contacts")

    def overrides() -> int:
        with database.engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO care_overrides (elder_id, reason, call_every_days, note, created_at) "
                "VALUES (:elder, :reason, :every, '', now())"),
                [{"elder": e, "reason": r, "every": every} for e, r, every in maker.overrides])
        return len(maker.overrides)

    step("exceptions (in hospital, declined, moved, adjusted)", overrides)
    history_end = today - timedelta(days=HISTORY_GAP_DAYS)
    rows = int(args.history_days * args.elders * 0.15)
    if rows:
        params = {"elders": args.elders, "rows": rows, "days": args.history_days,
                  "first_day": history_end - timedelta(days=args.history_days), "agent_count": len(agent_ids)}
        sql = HISTORY_TASKS_SQL.replace(":agents", ",".join(map(str, agent_ids)))
        step(f"history: {args.history_days} days of finished care tasks", lambda: _run(database, sql, params))
        step("history: their attempts", lambda: _run(database, HISTORY_ATTEMPTS_SQL, {}))
        step("history: their contacts", lambda: _run(database, HISTORY_CONTACTS_SQL, {}))
    if args.calls:
        start = day_start_utc(today - timedelta(days=29), tz)
        span = (utcnow() - start).total_seconds()
        step("calls over the last 30 days", lambda: _run(database, CALLS_SQL, {"start": start, "span": span, "n": args.calls,
                                                                                "elders": args.elders}))
        step("  those before today, ingested as contacts", lambda: _run(database, CALLS_INGESTED_SQL,
                                                                         {"today": day_start_utc(today, tz)}))
    began = time.perf_counter()
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))  # as autovacuum leaves tables in steady use
    print(f"  VACUUM ANALYZE in {time.perf_counter() - began:.1f} s", flush=True)
    return timings


def _run(database: Database, sql: str, params: dict) -> int:
    with database.engine.begin() as connection:
        return connection.execute(text(sql), params).rowcount


def make_agents(database: Database, count: int) -> list[int]:
    """`count` agents 8001… signed into the queue (ready), with one password hash."""
    password_hash = auth_service.hash_password("bench-password-1")
    now = utcnow()
    rows = [{"username": f"bench{8000 + n}", "display_name": f"坐席{n}", "role": "agent", "password_hash": password_hash,
             "sip_extension": str(8000 + n), "active": True, "created_at": now} for n in range(1, count + 1)]
    with database.session_scope() as session:
        session.execute(insert(User), rows)
    with database.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO agent_states (interface, name, extension, state, status, paused, queues, paused_in, since, updated_at) "
            "SELECT 'Local/' || u.sip_extension || '@agents', u.display_name, u.sip_extension, 'ready', 'not_in_use', false, "
            "'[\"hotline\"]', '{}', now(), now() FROM users AS u WHERE u.role = 'agent'"))
    with database.session_scope() as session:
        return list(session.exec(select(User.id).where(User.role == "agent").order_by(User.id)))


# ---- the morning's work, in a process of its own -------------------------------------------------

STEPS = {"ingest_contacts": "ingest", "close_tasks_met_by_contacts": "ingest", "compute_plans": "compute_plans",
         "_open_tasks_for_due": "task creation", "share_calls": "sharing"}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike getrusage's maxrss it does not carry the
    parent's peak over the fork and exec that started this process)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_day_child(url: str, explain: bool) -> None:
    """Run `service.make_day` once, timing each of its steps (the service's own functions, wrapped),
    and print the figures as JSON: the parent reads them."""
    settings = Settings(_env_file=None, database_url=url, secret_key=SECRET, data_dir=Path(tempfile.gettempdir()))
    database = Database(settings)
    split = dict.fromkeys(STEPS.values(), 0.0)
    for name, label in STEPS.items():
        original = getattr(service, name)

        def timed(*args, _original=original, _label=label, **kwargs):
            began = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                split[_label] += time.perf_counter() - began
        setattr(service, name, timed)
    plans = []
    if explain:
        @event.listens_for(database.engine, "before_cursor_execute")
        def explain_first(conn, cursor, statement, parameters, context, executemany):
            """The statement's plan as it runs now (ANALYZE executes it: inside a savepoint undone)."""
            if executemany or not statement.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE")):
                return
            cursor.execute("SAVEPOINT bench_explain")
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            lines = [row[0] for row in cursor.fetchall()]
            cursor.execute("ROLLBACK TO SAVEPOINT bench_explain")
            ms = next((float(line.split()[2]) for line in lines if line.startswith("Execution Time")), 0.0)
            plans.append((ms, " ".join(statement.split())[:400], lines))
    tz = settings.tz
    baseline = peak_rss_mb()  # the app's code loaded, before the work
    began = time.perf_counter()
    with database.session_scope() as session:
        made = service.make_day(session=session, today=today_in(tz), tz=tz)
        split["commit"] = -time.perf_counter()
    split["commit"] += time.perf_counter()
    wall = time.perf_counter() - began
    slowest = [{"ms": ms, "statement": statement, "plan": lines} for ms, statement, lines in sorted(plans, key=lambda p: -p[0])[:5]]
    print(json.dumps({"wall": wall, "split": split, "calls": made.calls, "visits": made.visits, "assigned": made.assigned,
                      "peak_rss_mb": peak_rss_mb(), "baseline_rss_mb": baseline,
                      "slowest": slowest}))


def print_plans(slowest: list[dict]) -> None:
    """The slowest statements of make_day with their plans (EXPLAIN ANALYZE as they ran)."""
    for item in slowest:
        print(f"\n--- {item['ms'] / 1000:.1f} s: {item['statement']}")
        for line in item["plan"]:
            print("   ", line)


def run_make_day(url: str, explain_it: bool) -> dict:
    result = subprocess.run([sys.executable, __file__, "--make-day-child", url] + (["--explain"] if explain_it else []),
                            capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"make_day failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---- the care report's pieces on the result ------------------------------------------------------

def time_reports(database: Database, settings: Settings) -> None:
    tz = settings.tz
    today = today_in(tz)
    first, last = reports.month_range(month=None, today=today)
    past = today - timedelta(days=HISTORY_GAP_DAYS + 15)  # a month with the history's tasks in it
    past_first, past_last = reports.month_range(month=f"{past:%Y-%m}", today=today)
    pieces = {
        "wallboard care tile": lambda s: reports.today_tile(session=s, tz=tz, now=utcnow()),
        "overdue list (first 50, with the count)": lambda s: reports.overdue(session=s, tz=tz, today=today, limit=50),
        "this month's report (city)": lambda s: reports.report(session=s, tz=tz, date_from=first, date_to=last, today=today),
        f"{past:%Y-%m}'s report (city, the history's month)":
            lambda s: reports.report(session=s, tz=tz, date_from=past_first, date_to=past_last, today=today),
    }
    for label, function in pieces.items():
        times = []
        for _ in range(3):
            with database.session_scope() as session:
                began = time.perf_counter()
                function(session)
                times.append((time.perf_counter() - began) * 1000)
        print(f"  {label:<48} {min(times):8.1f} ms (best of 3), {statistics.median(times):8.1f} ms median")


# ---- the work list over HTTP ---------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def agent_tokens(database: Database, settings: Settings) -> list[str]:
    sessions = auth_service.UserSessions(settings.session_max_age_seconds)
    with database.session_scope() as session:
        users = session.exec(select(User).where(User.role == "agent").order_by(User.id)).all()
        return [sessions.issue(user, session) for user in users]


def start_web(env: dict, port: int) -> subprocess.Popen:
    web = subprocess.Popen([sys.executable, "-c", "from callcenter.cli import app; app()", "web", "--port", str(port)], env=env,
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(Path(tempfile.gettempdir()) / "bench-care-web.log", "w"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return web
        except httpx.HTTPError:
            pass
        if web.poll() is not None:
            raise SystemExit("the web process stopped: see bench-care-web.log in the temp directory")
        time.sleep(0.3)
    raise SystemExit("the web process did not start")


async def fetch_lists(port: int, tokens: list[str], *, seconds: float = 0, think: float = 0, rounds: int = 0,
                      in_flight: int = 0) -> dict:
    """The agents fetch their work lists: each every `think` s (± 50 %) for `seconds`; or back to
    back (`think` 0) for `seconds`; or with `rounds`, all at the same instant, `rounds` times.
    `in_flight`: at most that many requests at the server at once, the others queued here (as a
    proxy in front of the web process would queue them); a request's time includes its wait.
    A request the server dropped (a closed keep-alive connection, a refused connection) counts
    as an error, as does any answer but 200."""
    gate = asyncio.Semaphore(in_flight or len(tokens))
    latencies: list[float] = []
    sizes: list[int] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=len(tokens), max_keepalive_connections=len(tokens))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits) as http:
        async def fetch(token: str) -> None:
            nonlocal last
            began = time.perf_counter()
            try:
                async with gate:
                    response = await http.get("/api/care/tasks/mine", cookies={"cc_session": token})
            except httpx.TransportError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            last = time.perf_counter()
            latencies.append((last - began) * 1000)
            if response.status_code != 200:
                errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
            else:
                sizes.append(response.content.count(b'"kind"'))

        async def agent(token: str, n: int, stop_at: float) -> None:
            rng = random.Random(n)
            if think:
                await asyncio.sleep(rng.random() * think)  # agents do not start in step
            while time.perf_counter() < stop_at:
                await fetch(token)
                if think:
                    await asyncio.sleep(think * (0.5 + rng.random()))

        began = last = time.perf_counter()
        if rounds:
            for _ in range(rounds):
                await asyncio.gather(*(fetch(token) for token in tokens))
        else:
            stop_at = began + seconds
            await asyncio.gather(*(agent(token, n, stop_at) for n, token in enumerate(tokens)))
        elapsed = last - began  # to the last answer (a paced agent's last pause is not load)
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q))] if latencies else float("nan")  # noqa: E731
    return {"requests": len(latencies), "rate": len(latencies) / elapsed, "p50": pick(0.5), "p99": pick(0.99),
            "max": latencies[-1] if latencies else float("nan"), "errors": errors,
            "tasks": statistics.mean(sizes) if sizes else 0}


def work_lists(database: Database, settings: Settings, url: str, args) -> None:
    """Each run with a web process of its own (a run the server could not keep up with leaves
    requests behind it that would weigh on the next)."""
    tokens = agent_tokens(database, settings)
    runs = [(f"each every {args.think:g} s (± 50 %) for {args.seconds:g} s", dict(seconds=args.seconds, think=args.think)),
            (f"all at once, {args.rounds} times, at most 20 at the server (a proxy's queue in front)",
             dict(rounds=args.rounds, in_flight=20)),
            (f"back to back for {args.seconds:g} s, at most 20 at the server (the process's capacity)",
             dict(seconds=args.seconds, in_flight=20)),
            ("all at once, once, as they come (no queue in front)", dict(rounds=1))]
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AMI_")}
        env |= {"DATABASE_URL": url, "REDIS_URL": REDIS_URL, "SECRET_KEY": SECRET, "DATA_DIR": tmp,
                "EVENTS_PREFIX": f"benchcare{os.getpid()}"}
        for label, how in runs:
            port = free_port()
            web = start_web(env, port)
            try:
                asyncio.run(fetch_lists(port, tokens[:10], seconds=3))  # warm-up: connections, plans cached
                r = asyncio.run(fetch_lists(port, tokens, **how))
            finally:
                web.terminate()
                try:
                    web.wait(30)
                except subprocess.TimeoutExpired:
                    web.kill()
                    web.wait()
            verdict = "meets" if r["p99"] < 100 and not r["errors"] else "MISSES"
            errors = ", ".join(f"{count} × {kind}" for kind, count in r["errors"].items()) or "none"
            print(f"  {len(tokens)} agents, {label}: {r['requests']:,} answers, {r['rate']:.0f}/s, p50 {r['p50']:.1f} ms, "
                  f"p99 {r['p99']:.1f} ms (target < 100 ms: {verdict}), max {r['max']:.0f} ms, {r['tasks']:.0f} tasks a list; "
                  f"errors: {errors}", flush=True)


# ---- main ----------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elders", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--communities-per-street", type=int, default=20)
    parser.add_argument("--history-days", type=int, default=30)
    parser.add_argument("--calls", type=int, default=300_000, help="calls over the last 30 days")
    parser.add_argument("--seconds", type=float, default=30, help="of each work-list run")
    parser.add_argument("--think", type=float, default=10.0, help="seconds between an agent's fetches of its list")
    parser.add_argument("--rounds", type=int, default=5, help="times all agents fetch at the same instant")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE make_day's slowest statements")
    parser.add_argument("--keep", action="store_true", help="keep the database (its URL is printed)")
    parser.add_argument("--make-day-child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_day_child:
        make_day_child(args.make_day_child, args.explain)
        return

    url, drop = create_postgres_database(PG_ADMIN_URL, f"bench_care_{uuid.uuid4().hex[:8]}")
    try:
        migrate.upgrade(url)
        settings = Settings(_env_file=None, database_url=url, secret_key=SECRET, data_dir=Path(tempfile.gettempdir()))
        database = Database(settings)
        print(f"filling PostgreSQL: {args.elders:,} elders, {args.agents} agents on duty, {args.history_days} days of care history, "
              f"{args.calls:,} calls", flush=True)
        began = time.perf_counter()
        fill(database, settings, args)
        print(f"  loaded in {time.perf_counter() - began:.0f} s")

        r = run_make_day(url, args.explain)
        split = r["split"]
        target = "meets" if r["wall"] < 60 and r["peak_rss_mb"] < 500 else "MISSES"
        print(f"make_day: {r['wall']:.1f} s wall, peak memory {r['peak_rss_mb']:.0f} MB (the process's, {r['baseline_rss_mb']:.0f} MB "
              f"of it before the work) (targets < 60 s, < 500 MB: {target}); "
              f"{r['calls']:,} care calls and {r['visits']:,} visits made, {r['assigned']:,} calls shared among {args.agents} agents")
        print("  split: " + ", ".join(f"{label} {seconds:.1f} s" for label, seconds in split.items()))
        if args.explain:
            print_plans(r["slowest"])
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE care_tasks, care_plans"))  # the day's rows, as autovacuum would soon see them
        print("care report pieces on the result:")
        time_reports(database, settings)
        print("work lists over HTTP (one `callcenter web` process):", flush=True)
        work_lists(database, settings, url, args)
        database.engine.dispose()
        if args.keep:
            print(f"kept: {url}")
    finally:
        if not args.keep:
            drop()


if __name__ == "__main__":
    main()
