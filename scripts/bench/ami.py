#!/usr/bin/env python3
"""Benchmark: the recorded AMI traces (repeated, with fresh ids) through
  (a) the frame parser alone, against panoramisk 1.4's parser on the same bytes (baseline), and
  (b) the whole bridge over TCP: parser + tracker + database + Redis publish.

    .venv/bin/pip install -e '.[bench]'        # panoramisk, for the baseline
    .venv/bin/python scripts/bench/ami.py [--repeat 200] [--backend postgresql|sqlite]

Targets (issue 3): parser at least 2x panoramisk; bridge at least 5,000 events/s with
event-to-publish p99 under 20 ms. PostgreSQL and Redis as in the tests (127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis  # noqa: E402

from callcenter import migrate  # noqa: E402
from callcenter.ami.protocol import FrameParser  # noqa: E402
from callcenter.calls.bridge import Bridge  # noqa: E402
from callcenter.config import Settings  # noqa: E402
from callcenter.db import Database, create_postgres_database  # noqa: E402
from callcenter.simulator.server import AMIServer  # noqa: E402
from callcenter.stats import rollup  # noqa: E402

TRACES = ROOT / "tests" / "fixtures" / "ami-traces"
NAMES = ("answered", "abandoned", "ivr", "resync")
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/13"


def trace_bodies() -> list[bytes]:
    """Each trace without its banner and without the recording client's action responses."""
    bodies = []
    for name in NAMES:
        raw = (TRACES / f"ami-trace-{name}.txt").read_bytes()
        body = raw[raw.index(b"\r\n") + 2:]
        kept = [part for part in body.split(b"\r\n\r\n") if part.startswith(b"Event: ") and b"\r\nActionID: " not in part]
        bodies.append(b"".join(part + b"\r\n\r\n" for part in kept))
    return bodies


def stream(repeat: int) -> tuple[bytes, int]:
    """The traces `repeat` times, each copy with its own Uniqueid/Linkedid prefix."""
    bodies = trace_bodies()
    copies = []
    for k in range(repeat):
        prefix = f"{k + 100000:06d}".encode()
        copies += [body.replace(b"179536", prefix) for body in bodies]
    data = b"".join(copies)
    return data, data.count(b"\r\n\r\n")


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def bench_ours(pieces: list[bytes], index: bool = False) -> tuple[int, float]:
    """Our parser; with `index`, each message's key index (built lazily) is built too, the
    closest match to panoramisk, whose messages are dicts."""
    parser = FrameParser()
    parser._expect_banner = False
    start = time.perf_counter()
    count = 0
    for piece in pieces:
        messages = parser.feed(piece)
        count += len(messages)
        if index:
            for message in messages:
                _ = message.first  # the parse the benchmark times
    return count, time.perf_counter() - start


def bench_panoramisk(pieces: list[bytes]) -> tuple[int, float] | None:
    try:
        from panoramisk.ami_protocol import AMIProtocol
    except ImportError:
        return None
    import logging

    protocol = AMIProtocol.__new__(AMIProtocol)
    protocol.version, protocol.queue, protocol.encoding = "11.0.0", collections.deque(), "utf8"
    protocol.factory = type("F", (), {"save_stream": None})()
    protocol.log = logging.getLogger("panoramisk-bench")
    seen = [0]
    protocol.handle_message = lambda message: seen.__setitem__(0, seen[0] + 1)
    start = time.perf_counter()
    for piece in pieces:
        protocol.data_received(piece)
    return seen[0], time.perf_counter() - start


class Firehose(AMIServer):
    """Sends the stream once the bridge has logged in: as fast as TCP takes it, or paced at
    `rate` events/s (in 10 ms slices)."""

    def __init__(self, data: bytes, rate: float | None = None):
        super().__init__(username="bench", secret="bench")
        self.messages = [m + b"\r\n\r\n" for m in data.split(b"\r\n\r\n") if m]
        self.rate = rate
        self.sent_at: float | None = None

    async def on_login(self, session):
        async def pour():
            await asyncio.sleep(0.2)  # after the bridge's snapshot
            self.sent_at = time.perf_counter()
            step = 1000 if self.rate is None else max(1, round(self.rate / 100))
            for i in range(0, len(self.messages), step):
                session.send(b"".join(self.messages[i:i + step]))
                await session.writer.drain()
                if self.rate is not None:
                    due = self.sent_at + (i + step) / self.rate
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
        session.tasks.append(asyncio.create_task(pour()))

    async def handle_action(self, session, name, message):
        lists = {"queuestatus": "QueueStatusComplete", "coreshowchannels": "CoreShowChannelsComplete", "bridgelist": "BridgeListComplete"}
        if name in lists:
            self.send_list(session, message.action_id, "follows", [], lists[name])
        else:
            await super().handle_action(session, name, message)


async def bench_bridge(data: bytes, events: int, database_url: str, workdir: Path, rate: float | None = None) -> dict:
    settings = Settings(_env_file=None, data_dir=workdir, database_url=database_url, redis_url=REDIS_URL, secret_key="bench")
    migrate.upgrade(database_url)
    server = Firehose(data, rate)
    port = await server.start()
    bridge = Bridge(database=Database(settings), rollups=rollup.Keeper(tz=settings.tz), redis=aioredis.from_url(REDIS_URL),
                    area_code="0411", host="127.0.0.1",
                    port=port, username="bench", secret="bench")
    bridge.publisher.latencies = []
    task = asyncio.create_task(bridge.run())
    while bridge.stats.events < events:
        await asyncio.sleep(0.01)
    await bridge.wait_idle(timeout=120)
    elapsed = time.perf_counter() - server.sent_at
    bridge.stop()
    await asyncio.wait_for(task, 30)
    await server.close()
    latencies = sorted(x * 1000 for x in bridge.publisher.latencies)
    return {"events": bridge.stats.events, "seconds": elapsed, "changes": bridge.stats.changes, "batches": bridge.stats.batches,
            "published": len(latencies), "p50": latencies[len(latencies) // 2], "p99": latencies[int(len(latencies) * 0.99)],
            "mean": statistics.fmean(latencies), "errors": bridge.stats.errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200, help="copies of the four traces")
    parser.add_argument("--read-size", type=int, default=4096, help="bytes per socket read in the parser benchmark")
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--rates", type=float, nargs="*", default=[1000, 5000], help="paced runs, events/s")
    parser.add_argument("--seconds", type=float, default=10, help="length of each paced run")
    args = parser.parse_args()

    data, count = stream(args.repeat)
    pieces = chunks(data, args.read_size)
    print(f"stream: {count:,} events, {len(data) / 1e6:.1f} MB, {args.read_size}-byte reads")

    ours = min((bench_ours(pieces) for _ in range(3)), key=lambda r: r[1])
    print(f"(a) parser, ours:        {ours[0] / ours[1]:>12,.0f} events/s  ({ours[0]:,} messages)")
    indexed = min((bench_ours(pieces, index=True) for _ in range(3)), key=lambda r: r[1])
    print(f"(a) parser, ours + dict: {indexed[0] / indexed[1]:>12,.0f} events/s  (every message's key index built too)")
    theirs = bench_panoramisk(pieces)
    if theirs is None:
        print("(a) parser, panoramisk:  not installed (pip install -e '.[bench]')")
    else:
        theirs = min([theirs] + [bench_panoramisk(pieces) for _ in range(2)], key=lambda r: r[1])
        rate = theirs[0] / theirs[1]
        print(f"(a) parser, panoramisk:  {rate:>12,.0f} events/s  ({theirs[0]:,} messages)  → ours is "
              f"{(ours[0] / ours[1]) / rate:.2f}x, {(indexed[0] / indexed[1]) / rate:.2f}x with the index")

    runs = [("flood", None, data, count)]
    for rate in args.rates:
        sized, sized_count = stream(max(1, round(args.repeat * rate * args.seconds / count)))  # about args.seconds long
        runs.append((f"paced at {rate:,.0f}/s", rate, sized, sized_count))
    for label, rate, payload, events in runs:
        with tempfile.TemporaryDirectory() as tmp:
            if args.backend == "postgresql":
                url, drop = create_postgres_database(PG_ADMIN_URL, f"bench_ami_{uuid.uuid4().hex[:8]}")
            else:
                url, drop = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", lambda: None
            try:
                r = asyncio.run(bench_bridge(payload, events, url, Path(tmp), rate))
            finally:
                drop()
        print(f"(b) bridge on {args.backend} + Redis, {label}: {r['events'] / r['seconds']:,.0f} events/s "
              f"({r['events']:,} events in {r['seconds']:.2f} s; {r['changes']:,} changes in {r['batches']:,} transactions); "
              f"event-to-publish p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms over {r['published']:,} published; errors {r['errors']}")


if __name__ == "__main__":
    main()
