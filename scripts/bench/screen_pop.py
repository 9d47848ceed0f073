#!/usr/bin/env python3
"""Benchmark (issues 4 and 16): screen-pop latency, from the AMI `AgentCalled` event leaving the
simulator to the `call.offered` frame received by that agent's websocket client; and the database
load of supervisors' wallboards watching the same traffic.

    .venv/bin/python scripts/bench/screen_pop.py [--agents 200] [--rate 20] [--seconds 60] [--backend postgresql|sqlite]
                                                 [--web 1 2] [--supervisors 20] [--wallboard none events reload]

The simulator and the websocket clients run in this process (they share its clock); the bridge
(`callcenter ami`) and one or two web processes (`callcenter web`) run as real subprocesses on
real Redis and PostgreSQL (127.0.0.1, as in the tests). Target: p99 under 100 ms with 200
connected agents and 20 calls/s for a minute, with one web process and with two.

Wallboards (`--supervisors` screens, each with its websocket, asking what agent_ui/static/wallboard.js
asks): `events`, as the page works now (one snapshot, then today's figures 2 s after calls end and
every 30 s, from the copy all screens share); `reload`, the baseline, as it worked before issue 16
(the whole snapshot 250 ms after every event, and every second while callers wait); `none`, no
screen (what the bridge and the agents cost alone). The database's load is read from PostgreSQL's
own counters for the bench database (pg_stat_database: transactions and rows read per second);
per screen it is the difference to `none`, divided by the screens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import websockets  # noqa: E402
from sqlalchemy import insert  # noqa: E402
from sqlmodel import select  # noqa: E402

from callcenter import migrate  # noqa: E402
from callcenter.auth import service as auth_service  # noqa: E402
from callcenter.auth.models import User  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from callcenter.config import Settings  # noqa: E402
from callcenter.db import Database, create_postgres_database  # noqa: E402
from callcenter.simulator.traffic import Simulator, TrafficMix  # noqa: E402
from callcenter.timeutil import utcnow  # noqa: E402

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/12"
CALLCENTER = str(Path(sys.executable).with_name("callcenter"))
AMI_USER, AMI_SECRET = "bench", "bench-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TimedSimulator(Simulator):
    """Notes when each AgentCalled leaves (this process's monotonic clock)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.offered_at: dict[str, float] = {}

    def emit(self, event, channel=None, **fields):
        super().emit(event, channel, **fields)
        if event == "AgentCalled" and channel is not None:
            self.offered_at.setdefault(channel.linkedid, time.perf_counter())


def make_agents(settings: Settings, count: int, supervisors: int = 0) -> tuple[list[tuple[str, str]], list[str]]:
    """`count` agents 8001… and `supervisors` supervisors with one password hash (hashing 200 times
    would only slow the set-up); returns ((extension, session token) of each agent, the
    supervisors' session tokens)."""
    database = Database(settings)
    password_hash = auth_service.hash_password("bench-password-1")
    rows = [{"username": f"bench{8000 + n}", "display_name": f"坐席{n}", "role": "agent", "password_hash": password_hash,
             "sip_extension": str(8000 + n), "active": True, "created_at": utcnow()} for n in range(1, count + 1)]
    rows += [{"username": f"boss{n}", "display_name": f"班长{n}", "role": "supervisor", "password_hash": password_hash,
              "sip_extension": None, "active": True, "created_at": utcnow()} for n in range(1, supervisors + 1)]
    with database.session_scope() as session:
        session.execute(insert(User), rows)
    sessions = auth_service.UserSessions(settings.session_max_age_seconds)
    with database.session_scope() as session:
        users = session.exec(select(User).order_by(User.id)).all()
        tokens = [(u.sip_extension, sessions.issue(u, session)) for u in users if u.role == "agent"]
        bosses = [sessions.issue(u, session) for u in users if u.role == "supervisor"]
    database.engine.dispose()
    return tokens, bosses


def start(command: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_healthy(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"web process on {port} did not start")


async def agent_client(port: int, extension: str, token: str, sim: TimedSimulator, latencies: list, ready: asyncio.Event,
                       connected: list, expected: int, stop: asyncio.Event) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", additional_headers={"Cookie": f"cc_session={token}"},
                                  max_queue=None) as ws:
        await ws.recv()  # hello
        connected.append(extension)
        if len(connected) == expected:
            ready.set()
        while not stop.is_set():
            try:
                text = await asyncio.wait_for(ws.recv(), 0.5)
            except asyncio.TimeoutError:
                continue
            now = time.perf_counter()
            event = json.loads(text)
            if event.get("type") == "call.offered" and event.get("agent") == extension:
                sent = sim.offered_at.get(event["call_id"])
                if sent is not None:
                    latencies.append((now - sent) * 1000)


FIGURE_EVENTS = {"call.answered", "call.abandoned", "call.agent_done", "call.ended", "call.queued", "ivr.emergency"}


async def wallboard(port: int, token: str, policy: str, stop: asyncio.Event, requests: list) -> None:
    """One supervisor's screen asking what wallboard.js asks under `policy` (see the docstring);
    each request's path is appended to `requests`."""
    cookies = {"cc_session": token}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", cookies=cookies, timeout=30) as http, \
            websockets.connect(f"ws://127.0.0.1:{port}/ws", additional_headers={"Cookie": f"cc_session={token}"},
                               max_queue=None) as ws:
        async def get(path: str) -> dict:
            requests.append(path)
            response = await http.get(path)
            response.raise_for_status()
            return response.json()

        frames: asyncio.Queue = asyncio.Queue()  # read at once, as a browser does while a request is out

        async def read() -> None:
            async for text in ws:
                frames.put_nowait(json.loads(text))

        reader = asyncio.create_task(read())
        board = await get("/api/stats/wallboard")
        loop = asyncio.get_running_loop()
        due: float | None = None  # when the next request goes out
        idle_due = loop.time() + (30 if policy == "events" else 10)
        event_at = 0.0
        while not stop.is_set():
            try:
                event = await asyncio.wait_for(frames.get(), 0.05)
            except asyncio.TimeoutError:
                event = None
            kind = (event or {}).get("type", "")
            if policy == "reload" and (kind.startswith("call.") or kind == "agent.state"):
                due = loop.time() + 0.25  # each event puts the reload off (the old page's debounce)
            elif policy == "events" and kind in FIGURE_EVENTS:
                event_at = max(event_at, datetime.fromisoformat(event["at"]).timestamp())
                due = min(due if due is not None else math.inf, loop.time() + 2.0)  # 2 s after the first, however many follow
            now = loop.time()
            if (due is not None and now >= due) or now >= idle_due:
                due = None
                if policy == "reload":
                    board = await get("/api/stats/wallboard")
                    idle_due = loop.time() + (1 if board["waiting"] else 10)
                else:
                    figures = await get("/api/stats/wallboard/figures")
                    idle_due = loop.time() + (5 if figures["read_at"] < event_at else 30)
        reader.cancel()


def database_counters(url: str) -> tuple[int, int]:
    """(transactions, rows read) of the bench database so far, from PostgreSQL's statistics."""
    name = url.rsplit("/", 1)[1]
    engine = create_engine(PG_ADMIN_URL)
    try:
        with engine.connect() as connection:
            row = connection.execute(text("SELECT xact_commit + xact_rollback, tup_returned + tup_fetched FROM pg_stat_database "
                                          "WHERE datname = :name"), {"name": name}).one()
            return int(row[0]), int(row[1])
    finally:
        engine.dispose()


async def run(settings: Settings, env: dict, tokens, web_ports: list[int], rate: float, seconds: float,
              bosses: list[str] = (), policy: str = "none") -> dict:
    agents = [(ext, f"Agent {ext}") for ext, _ in tokens]
    mix = TrafficMix(calls_per_minute=rate * 60, ivr_share=0, patience_seconds=(120, 120), ring_seconds=(0.1, 0.3),
                     talk_seconds=(3, 8), survey_share=0, unknown_share=1)
    sim = TimedSimulator(username=AMI_USER, secret=AMI_SECRET, port=0, agents=agents, mix=mix, seed=4)
    ami_port = await sim.start()
    bridge = start([CALLCENTER, "ami"], env | {"AMI_HOST": "127.0.0.1", "AMI_PORT": str(ami_port), "AMI_USER": AMI_USER,
                                                "AMI_SECRET": AMI_SECRET, "WRAPUP_SECONDS": "0"})
    latencies: list[float] = []
    stop, ready, connected = asyncio.Event(), asyncio.Event(), []
    clients = [asyncio.create_task(agent_client(web_ports[i % len(web_ports)], ext, token, sim, latencies, ready, connected,
                                                len(tokens), stop))
               for i, (ext, token) in enumerate(tokens)]
    requests: list[str] = []
    screens = [] if policy == "none" else [
        asyncio.create_task(wallboard(web_ports[i % len(web_ports)], token, policy, stop, requests)) for i, token in enumerate(bosses)]
    clients += screens
    try:
        await asyncio.wait_for(ready.wait(), 60)
        while not sim.sessions:  # the bridge has logged in
            await asyncio.sleep(0.1)
        await asyncio.sleep(3.0)  # the screens have opened
        before, opened, started = await asyncio.to_thread(database_counters, settings.database_url), len(requests), time.monotonic()
        await sim.run(calls=int(rate * seconds))
        await asyncio.sleep(1.0)
        measured = time.monotonic() - started
        await asyncio.sleep(1.0)  # PostgreSQL's statistics lag the last transactions by up to a second
        after = await asyncio.to_thread(database_counters, settings.database_url)
    finally:
        stop.set()
        await asyncio.gather(*clients, return_exceptions=True)
        bridge.terminate()
        await asyncio.to_thread(bridge.wait, 10)
        await asyncio.sleep(0.2)  # the simulator notices the bridge left
        await sim.close()
    latencies.sort()
    offered = len(sim.offered_at)
    times = sorted(sim.offered_at.values())
    elapsed = times[-1] - times[0] if len(times) > 1 else float("nan")
    pick = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q))] if latencies else float("nan")  # noqa: E731
    for screen in screens:
        if screen.done() and screen.exception() is not None:
            raise screen.exception()
    return {"calls": sim.stats["calls"], "offered": offered, "popped": len(latencies), "seconds": elapsed,
            "p50": pick(0.50), "p99": pick(0.99), "max": latencies[-1] if latencies else float("nan"),
            "measured": measured, "transactions": after[0] - before[0], "rows": after[1] - before[1],
            "wallboard_requests": len(requests) - opened}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20, help="calls per second")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--web", type=int, nargs="*", default=[1, 2], help="numbers of web processes to try")
    parser.add_argument("--supervisors", type=int, default=20, help="wallboard screens watching")
    parser.add_argument("--wallboard", nargs="*", choices=["none", "events", "reload"], default=["none", "events", "reload"],
                        help="how the screens ask (see above); each is a run of its own")
    args = parser.parse_args()

    for processes in args.web:
        alone = None
        for policy in args.wallboard:
            r = one_run(args, processes, policy)
            print(f"{processes} web process{'es' if processes > 1 else ''}, {args.agents} agents connected, {args.backend}, "
                  f"wallboards: {policy if policy == 'none' else f'{args.supervisors} ({policy})'}: "
                  f"{r['calls']:,} calls, {r['offered']:,} offered to agents over {r['seconds']:.1f} s "
                  f"({r['offered'] / r['seconds']:.1f}/s), {r['popped']:,} pops received; AgentCalled → websocket frame "
                  f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, max {r['max']:.1f} ms")
            if args.backend != "postgresql":
                continue
            per_second = {key: r[key] / r["measured"] for key in ("transactions", "rows", "wallboard_requests")}
            line = (f"    database: {per_second['transactions']:.1f} transactions/s, {per_second['rows']:,.0f} rows read/s; "
                    f"wallboard requests {per_second['wallboard_requests']:.2f}/s")
            if policy == "none":
                alone = per_second
            elif alone is not None and args.supervisors:
                screens = args.supervisors
                line += (f"; per screen: {per_second['wallboard_requests'] / screens:.2f} requests/s, "
                         f"{(per_second['transactions'] - alone['transactions']) / screens:.2f} transactions/s, "
                         f"{(per_second['rows'] - alone['rows']) / screens:,.0f} rows read/s above the run without screens")
            print(line, flush=True)


def one_run(args, processes: int, policy: str) -> dict:
    """A fresh database, the web processes and the bridge, one run of traffic."""
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend == "postgresql":
            url, drop = create_postgres_database(PG_ADMIN_URL, f"bench_pop_{uuid.uuid4().hex[:8]}")
        else:
            url, drop = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", lambda: None
        settings = Settings(_env_file=None, data_dir=Path(tmp), database_url=url, redis_url=REDIS_URL, secret_key="bench-secret-key")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AMI_")}
        env |= {"DATABASE_URL": url, "REDIS_URL": REDIS_URL, "SECRET_KEY": "bench-secret-key", "DATA_DIR": tmp,
                "EVENTS_PREFIX": f"benchpop{os.getpid()}"}
        webs = []
        try:
            migrate.upgrade(url)
            tokens, bosses = make_agents(settings, args.agents, args.supervisors)
            ports = [free_port() for _ in range(processes)]
            webs = [start([CALLCENTER, "web", "--port", str(port)], env) for port in ports]
            for port in ports:
                wait_healthy(port)
            return asyncio.run(run(settings, env, tokens, ports, args.rate, args.seconds, bosses, policy))
        finally:
            for web in webs:
                web.terminate()
                web.wait(10)
            drop()


if __name__ == "__main__":
    main()
