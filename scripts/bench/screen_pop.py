#!/usr/bin/env python3
"""Benchmark (issue 4): screen-pop latency, from the AMI `AgentCalled` event leaving the simulator
to the `call.offered` frame received by that agent's websocket client.

    .venv/bin/python scripts/bench/screen_pop.py [--agents 200] [--rate 20] [--seconds 60] [--backend postgresql|sqlite]

The simulator and the websocket clients run in this process (they share its clock); the bridge
(`callcenter ami`) and one or two web processes (`callcenter web`) run as real subprocesses on
real Redis and PostgreSQL (127.0.0.1, as in the tests). Target: p99 under 100 ms with 200
connected agents and 20 calls/s for a minute, with one web process and with two.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
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


def make_agents(settings: Settings, count: int) -> list[tuple[str, str]]:
    """`count` agents 8001… with one password hash (hashing 200 times would only slow the set-up);
    returns (extension, session token)."""
    database = Database(settings)
    password_hash = auth_service.hash_password("bench-password-1")
    rows = [{"username": f"bench{8000 + n}", "display_name": f"坐席{n}", "role": "agent", "password_hash": password_hash,
             "sip_extension": str(8000 + n), "active": True, "created_at": utcnow()} for n in range(1, count + 1)]
    with database.session_scope() as session:
        session.execute(insert(User), rows)
    codec = auth_service.SessionCodec(settings.secret, settings.session_max_age_seconds)
    with database.session_scope() as session:
        users = session.exec(select(User).order_by(User.id)).all()
        tokens = [(u.sip_extension, codec.issue(u)) for u in users]
    database.engine.dispose()
    return tokens


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


async def run(settings: Settings, env: dict, tokens, web_ports: list[int], rate: float, seconds: float) -> dict:
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
    try:
        await asyncio.wait_for(ready.wait(), 60)
        while not sim.sessions:  # the bridge has logged in
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        await sim.run(calls=int(rate * seconds))
        await asyncio.sleep(1.0)
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
    return {"calls": sim.stats["calls"], "offered": offered, "popped": len(latencies), "seconds": elapsed,
            "p50": pick(0.50), "p99": pick(0.99), "max": latencies[-1] if latencies else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20, help="calls per second")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--web", type=int, nargs="*", default=[1, 2], help="numbers of web processes to try")
    args = parser.parse_args()

    for processes in args.web:
        with tempfile.TemporaryDirectory() as tmp:
            if args.backend == "postgresql":
                url, drop = create_postgres_database(PG_ADMIN_URL, f"bench_pop_{uuid.uuid4().hex[:8]}")
            else:
                url, drop = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", lambda: None
            settings = Settings(_env_file=None, data_dir=Path(tmp), database_url=url, redis_url=REDIS_URL, secret_key="bench-secret-key")
            env = {k: v for k, v in os.environ.items() if not k.startswith("AMI_")}
            env |= {"DATABASE_URL": url, "REDIS_URL": REDIS_URL, "SECRET_KEY": "bench-secret-key", "DATA_DIR": tmp}
            webs = []
            try:
                migrate.upgrade(url)
                tokens = make_agents(settings, args.agents)
                ports = [free_port() for _ in range(processes)]
                webs = [start([CALLCENTER, "web", "--port", str(port)], env) for port in ports]
                for port in ports:
                    wait_healthy(port)
                r = asyncio.run(run(settings, env, tokens, ports, args.rate, args.seconds))
            finally:
                for web in webs:
                    web.terminate()
                    web.wait(10)
                drop()
        print(f"{processes} web process{'es' if processes > 1 else ''}, {args.agents} agents connected, {args.backend}: "
              f"{r['calls']:,} calls, {r['offered']:,} offered to agents over {r['seconds']:.1f} s ({r['offered'] / r['seconds']:.1f}/s), "
              f"{r['popped']:,} pops received; AgentCalled → websocket frame p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, "
              f"max {r['max']:.1f} ms")


if __name__ == "__main__":
    main()
