"""The `callcenter` command, run as a user runs it: a subprocess of the installed entry point."""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from callcenter.areas.models import Area
from callcenter.auth.models import User
from callcenter.elders.models import Elder, ElderPhone
from workorders import staff as staff_service
from workorders.models import Provider

CALLCENTER = shutil.which("callcenter", path=str(Path(sys.executable).parent))


def run_cli(*args, env: dict, cwd=None, input: str | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([CALLCENTER, *args], env=env, cwd=cwd, input=input, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli_env(settings, services):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    return env | {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
                  "SECRET_KEY": settings.secret_key.get_secret_value(), "EVENTS_PREFIX": settings.events_prefix}


def test_user_create_with_password_and_with_prompt(cli_env, services):
    done = run_cli("user", "create", "zhangli", "--role", "agent", "--password", "long-password", "--extension", "8001", env=cli_env)
    assert done.returncode == 0, done.stderr
    prompted = run_cli("user", "create", "banzhang", "--role", "supervisor", env=cli_env, input="long-password\nlong-password\n")
    assert prompted.returncode == 0, prompted.stderr
    assert "long-password" not in prompted.stdout
    with services.db.session_scope() as session:
        users = {u.username: u for u in session.exec(select(User))}
    assert users["zhangli"].role == "agent" and users["zhangli"].sip_extension == "8001"
    assert users["banzhang"].role == "supervisor"


def test_user_create_refuses_bad_role_and_duplicates(cli_env, services):
    bad = run_cli("user", "create", "x", "--role", "boss", "--password", "long-password", env=cli_env)
    assert bad.returncode == 1 and "角色无效" in bad.stderr
    run_cli("user", "create", "dup", "--role", "agent", "--password", "long-password", env=cli_env)
    again = run_cli("user", "create", "dup", "--role", "agent", "--password", "long-password", env=cli_env)
    assert again.returncode == 1 and "用户名已存在" in again.stderr


def test_demo_data_writes_a_plausible_city_once(cli_env, services):
    done = run_cli("demo-data", "--elders", "300", "--seed", "7", env=cli_env)
    assert done.returncode == 0, done.stderr
    assert "wrote 300 elders" in done.stdout and "banzhang / " in done.stdout
    with services.db.session_scope() as session:
        elders = list(session.exec(select(Elder)))
        phones = list(session.exec(select(ElderPhone)))
    assert len(elders) == 300
    ages = [2026 - e.birth_date.year for e in elders]
    assert min(ages) >= 59 and max(ages) <= 101
    living = {e.living_situation for e in elders}
    assert {"lives_alone", "empty_nest", "with_family"} <= living
    assert sum(e.ability_level == "intact" for e in elders) > len(elders) / 2
    assert any(p.relation in ("son", "daughter") for p in phones)
    shared = {}
    for p in phones:
        shared.setdefault(p.number, set()).add(p.elder_id)
    assert any(len(ids) > 1 for ids in shared.values()), "couples share a home number"
    # Demo providers cover the city's streets, and the printed provider login signs in to /m/.
    phone, password = re.search(r"provider login \(/m/\): (\d+) / (\S+)", done.stdout).groups()
    with services.db.session_scope() as session:
        providers = list(session.exec(select(Provider)))
        covered = {area for p in providers for area in p.coverage}
        streets = set(session.exec(select(Area.id).where(Area.level == "street")))
        assert len(providers) == 5 and streets <= covered
        assert staff_service.authenticate(session=session, phone=phone, password=password, area_code="0411") is not None
        # One area official of each level, over demo areas of that level, and a volunteer visitor of a community.
        officials = {u.role: session.get(Area, u.area_id).level for u in session.exec(select(User).where(User.area_id.is_not(None)))}
        assert officials == {"district_official": "district", "street_official": "street", "community_staff": "community",
                             "visitor": "community"}
    assert "quminzheng / " in done.stdout and "13904119001 / " in done.stdout
    skipped = run_cli("demo-data", "--elders", "300", "--if-empty", env=cli_env)
    assert "nothing written" in skipped.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_servers() -> list[int]:
    """pids of the redis-server processes running now (embedded ones included)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"redis-server" in cmdline.read_bytes().split(b"\0")[0]:
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def test_run_in_an_empty_folder_keeps_everything_under_data_and_calls_arrive(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "AMI_HOST")}
    env |= {"AMI_PORT": str(free_port()), "IVR_PORT": str(free_port()), "SIMULATOR_CALLS_PER_MINUTE": "600",
            "EVENTS_PREFIX": f"run{os.getpid()}"}
    port = free_port()
    process = subprocess.Popen([CALLCENTER, "run", "--port", str(port)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                body = response.json()
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert (body["status"], body["database"], body["redis"]) == ("ok", {"ok": True}, {"ok": True})
        assert httpx.get(f"http://127.0.0.1:{port}/api/elders/lookup?phone=13812345678").status_code == 401
        files = {p.name for p in (tmp_path / "data").iterdir()}
        assert {"hotline.sqlite3", "secret_key"} <= files
        assert (tmp_path / "data" / "secret_key").stat().st_mode & 0o077 == 0
        # the built-in simulator's calls reach the database through the bridge
        database = sqlite3.connect(tmp_path / "data" / "hotline.sqlite3")
        deadline = time.monotonic() + 30
        query = "SELECT count(*) FROM calls WHERE queue = 'hotline'"
        while time.monotonic() < deadline and not database.execute(query).fetchone()[0]:
            time.sleep(0.3)
        assert database.execute("SELECT count(*) FROM calls WHERE queue = 'hotline'").fetchone()[0] > 0
        database.close()
        # … which /healthz reports running and recording
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()["bridge"] == \
               {"running": True, "ami": True, "recording": True, "held": 0}
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in output
    # it stopped everything it started: no embedded redis-server left serving data/
    assert [pid for pid in redis_servers() if Path(f"/proc/{pid}/cwd").resolve() == (tmp_path / "data").resolve()] == []
    assert (tmp_path / "data" / "secret_key").read_text() not in output
    assert "GET /api/elders/lookup 401" in output  # requests are logged …
    assert "13812345678" not in output  # … without the numbers in their query strings


def test_simulate_serves_ami_with_the_configured_login(cli_env):
    import asyncio

    from callcenter.ami.client import AMIClient

    port = free_port()
    env = cli_env | {"AMI_USER": "hotline", "AMI_SECRET": "sim-secret"}
    process = subprocess.Popen([CALLCENTER, "simulate", "--port", str(port), "--agents", "2", "--calls", "500", "--speed", "10",
                                "--calls-per-minute", "120"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    async def scenario():
        events = []

        async def on_event(message):
            events.append(message.event)

        client = AMIClient("127.0.0.1", port, "hotline", "sim-secret", on_event=on_event, backoff_initial=0.1)
        task = asyncio.create_task(client.run())
        await asyncio.wait_for(client.connected.wait(), 20)
        status = await client.queue_status()
        deadline = time.monotonic() + 20
        # calls may have begun before we logged in: wait for a whole one (its Newchannel, then its queue join)
        while not ("Newchannel" in events and "QueueCallerJoin" in events[events.index("Newchannel"):]) \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        client.stop()
        await asyncio.wait_for(task, 10)
        return [e["Location"] for e in status.events if e.event == "QueueMember"], events

    try:
        members, events = asyncio.run(scenario())
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert members == ["PJSIP/8001", "PJSIP/8002"]
    assert "Newchannel" in events and "QueueCallerJoin" in events
    assert "sim-secret" not in output


def test_stats_check_finds_calls_written_behind_the_rollup_and_repairs_them(cli_env, services, supervisor_client):
    """An import that writes calls with plain SQL bypasses the rollup: `stats check` says so and
    exits 1; `--repair` sums those hours again, and the KPI API then counts the call."""
    from datetime import datetime, timezone

    from callcenter.calls.models import CallRecord

    queued = datetime(2026, 11, 20, 1, 0, tzinfo=timezone.utc)  # 09:00 in Shanghai
    with services.db.engine.begin() as connection:
        connection.execute(CallRecord.__table__.insert().values(
            linkedid="imported", direction="inbound", context="from-elders", state="ended", outcome="abandoned", queue="hotline",
            elder_candidates=[], channels=[], priority=0, ring_attempts=0, transfers=0, notes="", started_at=queued,
            queued_at=queued, abandoned_at=queued, wait_seconds=30, updated_at=queued))
    day = {"from": "2026-11-20", "to": "2026-11-20"}
    assert supervisor_client.get("/api/stats/kpis", params=day).json()["total"]["offered"] == 0  # the rollup has not seen it
    check = run_cli("stats", "check", "--from", "2026-11-20", env=cli_env)
    assert check.returncode == 1 and "queue=hotline" in check.stdout and "1 rollup rows differ" in check.stderr
    repair = run_cli("stats", "check", "--from", "2026-11-20", "--repair", env=cli_env)
    assert repair.returncode == 0 and "repaired 1 hours" in repair.stdout
    assert run_cli("stats", "check", "--from", "2026-11-20", env=cli_env).returncode == 0
    total = supervisor_client.get("/api/stats/kpis", params=day).json()["total"]
    assert (total["offered"], total["abandoned"], total["longest_wait_seconds"]) == (1, 1, 30)
