#!/usr/bin/env python3
"""Benchmark (issue 7): the FastAGI server under many calls at once, on real PostgreSQL and Redis.

    .venv/bin/python scripts/bench/ivr.py [--elders 2000] [--calls 2000] [--concurrency 1 50 200]

A fresh database with `--elders` elders (one mobile each); callers are their numbers (80 %) and
unknown numbers. Each call is a whole /ivr session over TCP as Asterisk runs it (environment,
ANSWER, CHANNEL(linkedid), the caller lookup, the menu prompts, a key, the variables), with prompt
playback taking no time, so the figures are the server's own cost. One caller in ten presses 9
(the emergency draft order and the supervisors' alert are written as well).
Prints, per concurrency: sessions/s, and p50/p99 of connect → IVR_ROUTE set (what delays the
caller reaching the queue) and of the whole session. The server is `callcenter ivr` in its own
process, as deployed; the callers run in this one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from callcenter import migrate  # noqa: E402
from callcenter.config import Settings  # noqa: E402
from callcenter.crypto import Sealer  # noqa: E402
from callcenter.db import Database, create_postgres_database  # noqa: E402
from callcenter.elders import service as elders_service  # noqa: E402
from callcenter.elders.schemas import ElderIn, PhoneIn  # noqa: E402
from callcenter.simulator.agi import keys_from, run_session  # noqa: E402
from ivr.scripts import DB_TIMEOUT  # noqa: E402

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/13"


def setup(elders: int) -> tuple[Settings, Database, list[str], callable]:
    url, drop = create_postgres_database(PG_ADMIN_URL, f"bench_ivr_{uuid.uuid4().hex[:8]}")
    migrate.upgrade(url)
    settings = Settings(_env_file=None, database_url=url, redis_url=REDIS_URL, secret_key="bench-secret", data_dir=Path("/tmp"))
    database = Database(settings)
    sealer = Sealer(settings.secret)
    numbers = [f"139{i:08d}" for i in range(elders)]
    with database.session_scope() as session:
        for i, number in enumerate(numbers):
            elders_service.create(session=session, sealer=sealer, area_code="0411",
                                  elder_in=ElderIn(name=f"测试{i}", gender="male" if i % 2 else "female",
                                                   phones=[PhoneIn(number=number)]))
    return settings, database, numbers, drop


async def one_call(port: int, number: str, rng: random.Random) -> tuple[float, float]:
    key = "9" if rng.random() < 0.1 else rng.choice(["1", "2", "3", "0", None])
    routed = []
    start = time.perf_counter()
    env = {"agi_network": "yes", "agi_network_script": "ivr", "agi_request": f"agi://127.0.0.1:{port}/ivr",
           "agi_channel": "PJSIP/trunk-0001", "agi_uniqueid": f"{time.time():.6f}", "agi_callerid": number,
           "agi_context": "from-elders-ivr", "agi_extension": "12349"}
    await run_session("127.0.0.1", port, env, keys=keys_from([key]), channel={"CHANNEL(linkedid)": uuid.uuid4().hex},
                      on_set=lambda name, value: routed.append(time.perf_counter()) if name == "IVR_ROUTE" else None)
    end = time.perf_counter()
    return (routed[0] if routed else end) - start, end - start


async def run_level(port: int, numbers: list[str], calls: int, concurrency: int, seed: int) -> dict:
    rng = random.Random(seed)
    callers = [rng.choice(numbers) if rng.random() < 0.8 else f"137{rng.randrange(10**8):08d}" for _ in range(calls)]
    gate = asyncio.Semaphore(concurrency)
    results = []

    async def limited(number):
        async with gate:
            results.append(await one_call(port, number, rng))

    start = time.perf_counter()
    await asyncio.gather(*(limited(n) for n in callers))
    elapsed = time.perf_counter() - start
    routed = sorted(r for r, _ in results)
    whole = sorted(w for _, w in results)
    pct = lambda values, p: values[min(len(values) - 1, int(len(values) * p))] * 1000  # noqa: E731
    return {"rate": calls / elapsed, "routed_p50": pct(routed, 0.5), "routed_p99": pct(routed, 0.99),
            "whole_p50": pct(whole, 0.5), "whole_p99": pct(whole, 0.99), "mean": statistics.mean(whole) * 1000}


def start_server(settings: Settings, port: int) -> subprocess.Popen:
    """`callcenter ivr` in its own process, as deployed (the callers' side runs in this one)."""
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": REDIS_URL, "SECRET_KEY": "bench-secret",
           "IVR_PORT": str(port), "DATA_DIR": "/tmp"}
    server = subprocess.Popen([sys.executable, "-c", "from callcenter.cli import app; app()", "ivr"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=open("/tmp/bench-ivr-server.log", "w"))
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("callcenter ivr did not start (see /tmp/bench-ivr-server.log)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elders", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50, 200])
    args = parser.parse_args()
    print(f"setting up {args.elders} elders on PostgreSQL …", flush=True)
    settings, database, numbers, drop = setup(args.elders)
    port = free_port()
    server = start_server(settings, port)
    try:
        async def bench():
            await run_level(port, numbers, 100, 10, seed=0)  # warm-up
            print(f"{'concurrent':>10} {'sessions/s':>11} {'route p50':>10} {'route p99':>10} {'whole p50':>10} {'whole p99':>10}")
            for level in args.concurrency:
                figures = await run_level(port, numbers, args.calls, level, seed=level)
                print(f"{level:>10} {figures['rate']:>11.0f} {figures['routed_p50']:>8.1f}ms {figures['routed_p99']:>8.1f}ms "
                      f"{figures['whole_p50']:>8.1f}ms {figures['whole_p99']:>8.1f}ms", flush=True)

        asyncio.run(bench())
    finally:
        server.terminate()
        server.wait(10)
        database.engine.dispose()
        drop()
    fallbacks = open("/tmp/bench-ivr-server.log").read().count("without the database")
    print(f"calls that went on without the database (lookup slower than {DB_TIMEOUT:g} s): {fallbacks}")


if __name__ == "__main__":
    main()
