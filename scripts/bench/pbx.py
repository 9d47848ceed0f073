#!/usr/bin/env python3
"""Benchmark: the bridge on a real Asterisk 22 beside the simulator, under the same load.

    .venv/bin/python scripts/bench/pbx.py [--callers 50] [--agents 10] [--seconds 120]
                                          [--backend postgresql|sqlite] [--database-url URL]
                                          [--redis-url URL] [--sim-rate CALLS_PER_MINUTE] [--keep]

Two phases, each a whole deployment (`callcenter ami`, `callcenter ivr`, one `callcenter web`) on
PostgreSQL (127.0.0.1:5432, a fresh database per phase, dropped at the end) or SQLite, and Redis
(127.0.0.1:6379, a database of its own, claimed as the test suite claims them):

1. real Asterisk (`../shared/asterisk`, configured by `callcenter asterisk-config` as the real-PBX
   tests do): `--agents` agents sign in over HTTP, open `/ws` and go ready through the API
   (`POST /api/agent/state`); they are queue members `Local/<ext>@bench-agent` (AGENT_INTERFACE and
   AGENT_PHONE), which answer at once and hang up after 6-12 s. `--callers` elders are kept in
   the system at all times (AMI Originate into 12349 with the IVR; a new one when one hangs up):
   80 % press 0, 10 % press 1, 10 % press 9; 70 % hang up when the agent does, the others
   stay for the satisfaction survey (no key).
2. simulator (`callcenter simulate`, its callers through the same FastAGI IVR) at the arrival
   rate the real run had (or `--sim-rate`), agents from the database, talk 6-12 s.

Printed side by side, over the measured window of each phase:
- bridge CPU (utime+stime of `callcenter ami` from /proc, % of one core) and the AMI events it
  received per second (counted on the bench's own AMI connection, same manager user and filter);
- event → publish: the AMI `Timestamp` of AgentCalled / AgentConnect (Asterisk stamps events,
  `timestampevents = yes`) to the bench receiving the bridge's `call.offered` / `call.answered`
  on Redis pub/sub `<EVENTS_PREFIX>:calls` (the simulator stamps its events the same way; an event
  without a stamp is timed from the bench's own receipt of it, and the report says so);
- answer → pop: AgentCalled (the ring, when the console pops) → `GET /api/calls/{id}/pop` fetched
  by that agent's client after `call.offered` arrived on its websocket; and AgentConnect → the
  `call.answered` frame on the agent's websocket.
All latencies include the bench's own event loop (an upper bound); everything runs on loopback.
Also printed: calls in the system, Asterisk's / the simulator's, the web's and the IVR's CPU, agents
rung while their channel of another call was still up (Local members' device state not followed),
and calls offered to an agent between its AgentComplete and the bridge's wrap-up pause.

Targets: event → publish p99 under 20 ms (the bridge performance issue); answer → pop within 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import redis  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
import websockets  # noqa: E402
from sqlmodel import select  # noqa: E402

from callcenter import migrate  # noqa: E402
from callcenter.ami.protocol import FrameParser, Message, encode_action  # noqa: E402
from callcenter.auth import service as auth_service  # noqa: E402
from callcenter.auth.models import User  # noqa: E402
from callcenter.realtime.events import event_channels  # noqa: E402
from callcenter.config import Settings  # noqa: E402
from callcenter.db import Database, create_postgres_database  # noqa: E402
from tests import redis_claims  # noqa: E402
from tests.pbx.harness import (Asterisk, Process, elder_call, free_tcp_port, missing_runtime_libraries,  # noqa: E402
                               pbx_environment, pick_ports, wait_for_port)

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_SERVER = "redis://127.0.0.1:6379"
SECRET_KEY = "bench-pbx-secret-key-not-for-production"
PASSWORD = "bench-password-1"
AGENT_CONTEXT = """
; Benchmark agents (scripts/bench/pbx.py): Local-channel queue members that answer at once,
; make a sound and hang up after 6-12 s.
[bench-agent]
exten => _X.,1,Answer()
 same => n,Playtones(440)
 same => n,Wait(${RAND(6,12)})
 same => n,Hangup()
"""
LOCAL_AGENT = "Local/{extension}@bench-agent"
KEYS, KEY_WEIGHTS = ("0", "1", "9"), (8, 1, 1)
HANG_UP_WITH_AGENT = 0.7  # share of callers who hang up when the agent does (the rest hear the survey)
MAX_CALL_SECONDS = 300  # a caller still up this long is hung up (queue wait 180 s + the callback menu)
DRAIN_SECONDS = 3.0  # after the window: no new callers, latencies of what is in flight still collected
_EXTENSION = re.compile(r"^(?:Local|PJSIP|SIP|IAX2)/(\d+)")
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def extension_of(interface: str | None) -> str | None:
    match = _EXTENSION.match(interface or "")
    return match.group(1) if match else None


def _agent_channel(name: str | None) -> str | None:
    """`Local/8001@bench-agent-0000002a;1`, `PJSIP/8001-0000000a` → `8001` (callers' channels
    also match; the recorder keeps only agents' extensions)."""
    match = re.match(r"^(?:Local|PJSIP)/(\d+)[@-]", name or "")
    return match.group(1) if match else None


def cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of a process (all its threads), in seconds."""
    if pid is None:
        return None
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # fields 14 and 15 of stat(5)


# --- Redis: a database of our own ----------------------------------------------------------------

class RedisDatabase:
    """A Redis database of the bench's own, claimed as the test suite claims one
    (tests/redis_claims.py: a test suite starting meanwhile takes another), and only if empty.
    Emptied and released at the end (it was empty when claimed)."""

    def __init__(self, url: str | None):
        self.url, self._release = url, None
        if url:
            if redis.Redis.from_url(url).dbsize():
                raise SystemExit(f"--redis-url {url}: the database is not empty; give an empty one")
            return
        try:
            self.url, self._release = redis_claims.claim(REDIS_SERVER, databases=range(13, 0, -1), require_empty=True, hours=3)
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from exc

    def release(self) -> None:
        redis.Redis.from_url(self.url).flushdb()  # ours, empty when taken
        if self._release:
            self._release()


# --- the deployment's database --------------------------------------------------------------------

def fresh_database(args, folder: Path, tag: str):
    """(url, drop) for one phase."""
    if args.database_url:
        return args.database_url, lambda: None
    if args.backend == "sqlite":
        return f"sqlite:///{folder / f'{tag}.sqlite3'}", lambda: None
    return create_postgres_database(PG_ADMIN_URL, f"bench_pbx_{tag}_{uuid.uuid4().hex[:8]}")


def prepare_database(url: str, folder: Path, count: int) -> list[tuple[str, str]]:
    """Migrated, with agents bench8001… (extensions 8001…; an existing one gets the bench
    password); returns (extension, username)."""
    migrate.upgrade(url)
    settings = Settings(_env_file=None, data_dir=folder, database_url=url, secret_key=SECRET_KEY)
    database = Database(settings)
    agents = []
    with database.session_scope() as session:
        for n in range(1, count + 1):
            extension, username = str(8000 + n), f"bench{8000 + n}"
            user = session.exec(select(User).where(User.username == username)).first()
            if user is None:
                auth_service.create_user(session=session, username=username, role="agent", password=PASSWORD,
                                         display_name=f"坐席{n}", sip_extension=extension)
            else:
                user.password_hash, user.active = auth_service.hash_password(PASSWORD), True
                session.add(user)
            agents.append((extension, username))
    database.engine.dispose()
    return agents


def menu_file(folder: Path) -> Path:
    """The shipped menu, open around the clock (as the real-PBX tests run it)."""
    from ivr import menu

    text = Path(menu.DEFAULT_FILE).read_text(encoding="utf-8").replace("always_open = false", "always_open = true")
    path = folder / "menu.toml"
    path.write_text(text, encoding="utf-8")
    return path


def wait_healthy(port: int, process: Process) -> None:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.output()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"web on {port} did not start:\n{process.output()[-2000:]}")


def wait_for_log(process: Process, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in process.output():
            return
        if not process.alive():
            break
        time.sleep(0.2)
    raise RuntimeError(f"{process.name}: no '{text}' in its log:\n{process.output()[-2000:]}")


# --- what the bench sees -------------------------------------------------------------------------

class Recorder:
    """Every observation with its wall-clock time (time.time(), the clock Asterisk stamps with)."""

    def __init__(self, extensions: set[str]):
        self.extensions = extensions
        self.window = (float("inf"), float("inf"))
        self.sources: dict[str, list] = {"offered": [], "answered": []}  # AMI: (key, event time)
        self.published: dict[str, list] = {"offered": [], "answered": []}  # Redis: (key, receipt)
        self.frames: dict[str, list] = {"offered": [], "answered": []}  # agents' websockets: (key, receipt)
        self.pops: list = []  # (key, fetched)
        self.pop_errors = 0
        self.ami_event_times: list[float] = []
        self.stamped = 0
        self.unstamped: dict[str, int] = defaultdict(int)  # event name → count, events without a Timestamp
        self.live: set[str] = set()  # Linkedids of calls up now
        self.agent_channels: dict[str, dict[str, str]] = defaultdict(dict)  # agent → its live channels: Uniqueid → Linkedid
        self.busy_rings = 0  # AgentCalled while the agent's channel of another call is up (device state not followed)
        self.awaiting_wrapup: set[str] = set()  # agents between AgentComplete and the bridge's wrap-up pause
        self.before_wrapup = 0  # AgentCalled for an agent in that gap: offered a call before its wrap-up
        self.call_ended: dict[str, asyncio.Future] = {}
        self.on_agent_complete = None
        self.redis_messages = 0
        self.concurrency: list[int] = []
        self.counts: dict[str, int] = defaultdict(int)

    def in_window(self, at: float) -> bool:
        return self.window[0] <= at <= self.window[1]

    def ami_event(self, message: Message, received: float) -> None:
        event = message.event
        self.ami_event_times.append(received)
        stamp = message.get("Timestamp")
        if stamp:
            self.stamped += 1
            at = float(stamp)
        else:
            self.unstamped[event] += 1
            at = received
        uniqueid, linkedid = message.get("Uniqueid"), message.get("Linkedid")
        if event == "Newchannel":
            if uniqueid and uniqueid == linkedid:
                self.live.add(linkedid)
                if self.in_window(at):
                    self.counts["calls"] += 1
            agent = _agent_channel(message.get("Channel"))
            if agent in self.extensions:
                self.agent_channels[agent][uniqueid] = linkedid
        elif event == "Hangup":
            if uniqueid and uniqueid == linkedid:
                self.live.discard(linkedid)
            agent = _agent_channel(message.get("Channel"))
            if agent in self.agent_channels:
                self.agent_channels[agent].pop(uniqueid, None)
            future = self.call_ended.pop(uniqueid or "", None)
            if future is not None and not future.done():
                future.set_result(received)
        elif event in ("AgentCalled", "AgentConnect"):
            kind = "offered" if event == "AgentCalled" else "answered"
            agent = extension_of(message.get("Interface"))
            self.sources[kind].append(((kind, linkedid, agent), at))
            if self.in_window(at):
                self.counts[kind] += 1
            if event == "AgentCalled":
                if any(other != linkedid for other in self.agent_channels.get(agent, {}).values()):
                    self.busy_rings += 1
                if agent in self.awaiting_wrapup:
                    self.awaiting_wrapup.discard(agent)
                    self.before_wrapup += 1
        elif event == "AgentComplete":
            self.awaiting_wrapup.add(extension_of(message.get("Interface")))
            if self.on_agent_complete is not None:
                self.on_agent_complete(linkedid)
        elif event == "QueueMemberPause" and message.get("Paused") == "1":
            self.awaiting_wrapup.discard(extension_of(message.get("Interface")))
        elif event == "QueueCallerAbandon" and self.in_window(at):
            self.counts["abandoned"] += 1


class AmiStream:
    """The bench's own AMI connection (same manager user, so the same event filter as the
    bridge): events on, and the actions that play the callers."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder
        self.pending: dict[str, asyncio.Future] = {}
        self.serial = 0
        self.task: asyncio.Task | None = None

    async def open(self, port: int, username: str, secret: str) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.parser = FrameParser()
        self.task = asyncio.create_task(self._read())
        response = await self.action("Login", Username=username, Secret=secret, Events="on")
        if response.response != "Success":
            raise RuntimeError(f"AMI login refused: {response.as_dict()}")

    async def action(self, name: str, *pairs: tuple[str, str], timeout: float = 10, **fields: str) -> Message:
        self.serial += 1
        action_id = f"bench{self.serial}"
        future = asyncio.get_running_loop().create_future()
        self.pending[action_id] = future
        self.writer.write(encode_action(name, [("ActionID", action_id), *fields.items(), *pairs]))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.pending.pop(action_id, None)

    async def _read(self) -> None:
        while data := await self.reader.read(65536):
            received = time.time()
            for message in self.parser.feed(data):
                if not isinstance(message, Message):
                    continue
                if message.response is not None:
                    future = self.pending.get(message.action_id or "")
                    if future is not None and not future.done():
                        future.set_result(message)
                elif message.event and not (message.action_id or "").startswith("bench"):  # not our own lists
                    self.recorder.ami_event(message, received)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.writer.close()


async def follow_redis(url: str, channel: str, recorder: Recorder, subscribed: asyncio.Event) -> None:
    client = aioredis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    subscribed.set()
    try:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            received = time.time()
            recorder.redis_messages += 1
            event = json.loads(message["data"])
            kind = {"call.offered": "offered", "call.answered": "answered"}.get(event.get("type"))
            if kind:
                recorder.published[kind].append(((kind, event.get("call_id"), event.get("agent")), received))
    finally:
        await pubsub.aclose()
        await client.aclose()


class AgentClient:
    """One agent's console as far as the bench needs it: signed in over HTTP, `/ws` open, the
    screen pop fetched on each `call.offered`."""

    def __init__(self, port: int, extension: str, username: str, recorder: Recorder):
        self.port, self.extension, self.username, self.recorder = port, extension, username, recorder
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15)
        self.tasks: set[asyncio.Task] = set()
        self.reader: asyncio.Task | None = None
        self.ws = None

    async def open(self) -> None:
        response = await self.http.post("/api/auth/login", json={"username": self.username, "password": PASSWORD})
        response.raise_for_status()
        self.http.headers["X-CSRF-Token"] = self.http.cookies.get("cc_csrf") or ""
        token = self.http.cookies.get("cc_session")
        self.ws = await websockets.connect(f"ws://127.0.0.1:{self.port}/ws", additional_headers={"Cookie": f"cc_session={token}"},
                                           max_queue=None)
        hello = json.loads(await self.ws.recv())
        assert hello.get("type") == "hello", hello
        self.reader = asyncio.create_task(self._read())

    async def ready(self, deadline: float) -> None:
        """POST ready until the bridge has run it (it may still be connecting)."""
        while True:
            response = await self.http.post("/api/agent/state", json={"state": "ready"})
            if response.status_code == 200:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"agent {self.extension} could not go ready: {response.status_code} {response.text}")
            await asyncio.sleep(0.5)

    async def _read(self) -> None:
        async for text in self.ws:
            received = time.time()
            event = json.loads(text)
            kind = {"call.offered": "offered", "call.answered": "answered"}.get(event.get("type"))
            if kind is None or event.get("agent") != self.extension:
                continue
            key = (kind, event.get("call_id"), self.extension)
            self.recorder.frames[kind].append((key, received))
            if kind == "offered" and event.get("id") is not None:
                task = asyncio.create_task(self._pop(key, event["id"]))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def _pop(self, key, call_id: int) -> None:
        try:
            response = await self.http.get(f"/api/calls/{call_id}/pop")
        except httpx.HTTPError:
            self.recorder.pop_errors += 1
            return
        if response.status_code == 200:
            self.recorder.pops.append((key, time.time()))
        else:
            self.recorder.pop_errors += 1

    async def close(self) -> None:
        for task in [self.reader, *self.tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*[t for t in [self.reader, *self.tasks] if t is not None], return_exceptions=True)
        if self.ws is not None:
            await self.ws.close()
        await self.http.aclose()


# --- the callers on the real PBX -------------------------------------------------------------------

class Callers:
    """Keeps `count` elders in the system: AMI Originate of `Local/elder@from-elders-ivr` into
    from-elders-ivr,12349 (tests/pbx/harness.py's test caller: answers, waits CALLER_DELAY, sends
    CALLER_KEYS); a new caller when one hangs up, until the deadline."""

    def __init__(self, ami: AmiStream, recorder: Recorder, count: int, seed: int):
        self.ami, self.recorder, self.count = ami, recorder, count
        self.rng = random.Random(seed)
        self.run_id = uuid.uuid4().hex[:6]
        self.active: set[asyncio.Task] = set()
        self.mine: set[str] = set()
        self.started = 0
        self.errors: dict[str, int] = defaultdict(int)
        self.hangups: set[asyncio.Task] = set()
        recorder.on_agent_complete = self._agent_done

    async def run(self, deadline: float) -> None:
        while time.time() < deadline:
            while len(self.active) < self.count and time.time() < deadline:
                self.started += 1
                task = asyncio.create_task(self._caller(self.started))
                self.active.add(task)
                task.add_done_callback(self.active.discard)
                await asyncio.sleep(0.05)  # the first `count` arrive over a few seconds, not at once
            if self.active:
                await asyncio.wait(set(self.active), timeout=max(0.01, deadline - time.time()),
                                   return_when=asyncio.FIRST_COMPLETED)

    async def _caller(self, n: int) -> None:
        call_id = f"bench-{self.run_id}-{n}"
        ended = asyncio.get_running_loop().create_future()
        self.recorder.call_ended[call_id] = ended
        self.mine.add(call_id)
        keys = self.rng.choices(KEYS, KEY_WEIGHTS)[0]
        number = f"13{self.rng.randrange(10 ** 9):09d}"
        try:
            variables, fields = elder_call(call_id=call_id, number=number, keys=keys, delay=round(self.rng.uniform(1, 3), 1))
            response = await self.ami.action("Originate", *variables, **fields)
            if response.response != "Success":
                self.errors["originate"] += 1
                return
            await asyncio.wait_for(ended, MAX_CALL_SECONDS)
        except asyncio.TimeoutError:
            self.errors["caller_timeout"] += 1
            await self._hang_up(call_id)
        finally:
            self.recorder.call_ended.pop(call_id, None)
            self.mine.discard(call_id)

    def _agent_done(self, linkedid: str) -> None:
        if linkedid in self.mine and self.rng.random() < HANG_UP_WITH_AGENT:
            task = asyncio.create_task(self._hang_up(linkedid, after=self.rng.uniform(0.2, 1.0)))
            self.hangups.add(task)
            task.add_done_callback(self.hangups.discard)

    async def _hang_up(self, call_id: str, after: float = 0) -> None:
        await asyncio.sleep(after)
        try:  # the elder's half, by its Uniqueid (AMI Hangup takes a name or a Uniqueid)
            response = await self.ami.action("Hangup", Channel=f"{call_id}.elder")
        except (asyncio.TimeoutError, OSError):
            self.errors["hangup"] += 1
            return
        if response.response != "Success" and call_id in self.mine:
            self.errors["hangup"] += 1

    async def stop(self) -> None:
        """Everyone still on the line hangs up."""
        for pattern in ("/^Local\\/elder@from-elders-ivr-/", "/@bench-agent-/"):
            try:
                await self.ami.action("Hangup", Channel=pattern, timeout=5)
            except (asyncio.TimeoutError, OSError):
                pass
        if self.active:
            await asyncio.wait(set(self.active), timeout=5)
        for task in [*self.active, *self.hangups]:
            task.cancel()
        await asyncio.gather(*self.active, *self.hangups, return_exceptions=True)


# --- one measured phase ----------------------------------------------------------------------------

async def measure(*, ami_port: int, ami_user: str, ami_secret: str, web_port: int, redis_url: str, prefix: str,
                  agents: list[tuple[str, str]], pids: dict[str, int], seconds: float, callers: int | None = None,
                  check_members=None, mid_window=None, seed: int = 7) -> dict:
    """Connect the bench (AMI, Redis, agents' consoles), make the agents ready, then measure for
    `seconds` (with `callers` kept in the system when given: the real PBX)."""
    recorder = Recorder({extension for extension, _ in agents})
    ami = AmiStream(recorder)
    await ami.open(ami_port, ami_user, ami_secret)
    subscribed = asyncio.Event()
    follower = asyncio.create_task(follow_redis(redis_url, event_channels(prefix).calls, recorder, subscribed))
    await asyncio.wait_for(subscribed.wait(), 10)
    clients = [AgentClient(web_port, extension, username, recorder) for extension, username in agents]
    driver = Callers(ami, recorder, callers, seed) if callers else None
    sampler = None
    result: dict = {}
    try:
        await asyncio.gather(*(client.open() for client in clients))
        deadline = time.monotonic() + 60
        await asyncio.gather(*(client.ready(deadline) for client in clients))
        if check_members is not None:
            result["members"] = await asyncio.to_thread(check_members)
        t0 = time.time()
        recorder.window = (t0, t0 + seconds)
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}

        async def sample() -> None:
            while True:
                await asyncio.sleep(1.0)
                recorder.concurrency.append(len(recorder.live))

        sampler = asyncio.create_task(sample())
        log(f"measuring for {seconds:g} s")
        mid = asyncio.create_task(_later(seconds / 2, mid_window)) if mid_window else None
        if driver is not None:
            await driver.run(t0 + seconds)
        await asyncio.sleep(max(0.0, t0 + seconds - time.time()))
        t1 = time.time()
        cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        recorder.window = (t0, t1)
        if mid is not None:
            result["mid_window"] = await mid
        log(f"window over; collecting what is in flight for {DRAIN_SECONDS:g} s")
        if driver is not None:
            driver.count = 0  # no new callers
        await asyncio.sleep(DRAIN_SECONDS)
    finally:
        if sampler is not None:
            sampler.cancel()
        if driver is not None:
            await driver.stop()
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await ami.close()

    elapsed = t1 - t0
    cpu = {name: (cpu1[name] - cpu0[name]) / elapsed * 100 if cpu0[name] is not None and cpu1[name] is not None else None
           for name in pids}
    window_events = sum(1 for at in recorder.ami_event_times if t0 <= at <= t1)
    result.update({
        "seconds": elapsed, "cpu": cpu, "ami_events": window_events, "events_per_s": window_events / elapsed,
        "stamped": recorder.stamped, "unstamped": dict(recorder.unstamped),
        "calls": recorder.counts["calls"], "offered": recorder.counts["offered"], "answered": recorder.counts["answered"],
        "abandoned": recorder.counts["abandoned"], "busy_rings": recorder.busy_rings, "before_wrapup": recorder.before_wrapup,
        "concurrency": recorder.concurrency, "pop_errors": recorder.pop_errors,
        "publish_offered": pair(recorder.sources["offered"], recorder.published["offered"], t0, t1),
        "publish_answered": pair(recorder.sources["answered"], recorder.published["answered"], t0, t1),
        "pop": pair(recorder.sources["offered"], recorder.pops, t0, t1),
        "frame_offered": pair(recorder.sources["offered"], recorder.frames["offered"], t0, t1),
        "frame_answered": pair(recorder.sources["answered"], recorder.frames["answered"], t0, t1),
        "callers_started": driver.started if driver else None, "caller_errors": dict(driver.errors) if driver else {},
    })
    return result


async def _later(delay: float, function):
    await asyncio.sleep(delay)
    return await asyncio.to_thread(function)


def pair(sources: list, sinks: list, t0: float, t1: float, tolerance: float = 0.05) -> dict:
    """Latencies (ms) of AMI events within [t0, t1] to what they caused: each sink (a publish, a
    frame, a pop) goes with the latest not yet matched event of its key before it (an event the
    bridge rightly ignored, e.g. a repeated AgentCalled, stays unmatched)."""
    by_key: dict = defaultdict(list)
    for key, at in sorted(sources, key=lambda item: item[1]):
        by_key[key].append([at, False])
    latencies = []
    for key, received in sorted(sinks, key=lambda item: item[1]):
        candidates = [entry for entry in by_key.get(key, []) if not entry[1] and entry[0] <= received + tolerance]
        if not candidates:
            continue
        entry = candidates[-1]
        entry[1] = True
        if t0 <= entry[0] <= t1:
            latencies.append((received - entry[0]) * 1000)
    in_window = sum(1 for entries in by_key.values() for at, _ in entries if t0 <= at <= t1)
    latencies.sort()
    return {"n": len(latencies), "of": in_window, "p50": percentile(latencies, 0.50), "p99": percentile(latencies, 0.99),
            "max": latencies[-1] if latencies else float("nan")}


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


# --- the two phases ----------------------------------------------------------------------------------

def real_phase(args, folder: Path, redis_url: str) -> dict:
    folder.mkdir(parents=True)
    url, drop = fresh_database(args, folder, "real")
    with ExitStack() as stack:
        stack.callback(drop)
        agents = prepare_database(url, folder, args.agents)
        ports = pick_ports()
        prefix = f"benchpbx{uuid.uuid4().hex[:8]}"
        env = pbx_environment(database_url=url, redis_url=redis_url, secret_key=SECRET_KEY, data_dir=folder / "data",
                              events_prefix=prefix, ports=ports,
                              extra={"IVR_MENU_FILE": str(menu_file(folder)), "WRAPUP_SECONDS": "1",
                                     "AGENT_INTERFACE": LOCAL_AGENT, "AGENT_PHONE": LOCAL_AGENT})
        asterisk = Asterisk(folder, env)
        log("real PBX: asterisk-config, prompts, Asterisk")
        asterisk.configure()
        with open(asterisk.conf / "extensions_custom.conf", "a", encoding="utf-8") as handle:
            handle.write(AGENT_CONTEXT)
        asterisk.synthesize_prompts()
        stack.callback(asterisk.stop)
        asterisk.start()
        ivr = Process("ivr", ["ivr"], env, folder)
        stack.callback(ivr.stop)
        wait_for_port(ports["agi"])
        bridge = Process("bridge", ["ami"], env, folder)
        stack.callback(bridge.stop)
        web_port = free_tcp_port()
        web = Process("web", ["web", "--port", str(web_port)], env, folder)
        stack.callback(web.stop)
        wait_healthy(web_port, web)
        wait_for_log(bridge, "AMI connected")

        def members() -> dict:
            """Until every agent is a member of the hotline queue (Asterisk's own view)."""
            deadline = time.monotonic() + 15
            while True:
                lines = [line.strip() for line in asterisk.cli("queue show hotline").splitlines() if "bench-agent" in line]
                if len(lines) >= len(agents) or time.monotonic() > deadline:
                    return {"count": len(lines), "sample": lines[:1]}
                time.sleep(0.3)

        def mid_window() -> dict:
            text = asterisk.cli("queue show hotline")
            lines = [line for line in text.splitlines() if "bench-agent" in line]
            head = next((line.strip() for line in text.splitlines() if line.startswith("hotline")), "")
            return {"head": head, "in_use": sum("(In use)" in line for line in lines),
                    "not_in_use": sum("(Not in use)" in line for line in lines),
                    "ringing": sum("(Ringing)" in line for line in lines), "paused": sum("paused" in line for line in lines),
                    "unavailable": sum("(Unavailable)" in line or "(Invalid)" in line for line in lines)}

        log(f"real PBX: {len(agents)} Local agents, {args.callers} callers kept in the system")
        try:
            result = asyncio.run(measure(ami_port=ports["ami"], ami_user=env["AMI_USER"], ami_secret=env["AMI_SECRET"],
                                         web_port=web_port, redis_url=redis_url, prefix=prefix, agents=agents,
                                         pids={"bridge": bridge.process.pid, "asterisk": asterisk.process.pid,
                                               "web": web.process.pid, "ivr": ivr.process.pid},
                                         seconds=args.seconds, callers=args.callers, check_members=members,
                                         mid_window=mid_window, seed=args.seed))
        except BaseException:
            for process in (bridge, ivr, web):
                log(f"--- {process.name} log (tail)\n{process.output()[-1500:]}")
            raise
        result["taken"] = [line.strip() for line in asterisk.cli("queue show hotline").splitlines() if "bench-agent" in line]
        result["bridge_errors"] = bridge.output().count(" ERROR ")
        result["bridge_alive"] = bridge.alive()
        return result


def sim_phase(args, folder: Path, redis_url: str, rate: float) -> dict:
    folder.mkdir(parents=True)
    url, drop = fresh_database(args, folder, "sim")
    with ExitStack() as stack:
        stack.callback(drop)
        agents = prepare_database(url, folder, args.agents)
        ports = pick_ports()
        prefix = f"benchsim{uuid.uuid4().hex[:8]}"
        env = pbx_environment(database_url=url, redis_url=redis_url, secret_key=SECRET_KEY, data_dir=folder / "data",
                              events_prefix=prefix, ports=ports,
                              extra={"IVR_MENU_FILE": str(menu_file(folder)), "WRAPUP_SECONDS": "1"})
        for key in ("AGENT_INTERFACE", "AGENT_PHONE"):  # the simulator's members are PJSIP/<ext>, the default
            env.pop(key, None)
        ivr = Process("ivr", ["ivr"], env, folder)
        stack.callback(ivr.stop)
        wait_for_port(ports["agi"])
        web_port = free_tcp_port()
        web = Process("web", ["web", "--port", str(web_port)], env, folder)
        stack.callback(web.stop)
        wait_healthy(web_port, web)
        calls = int(rate * (args.seconds + 60) / 60) + args.callers
        simulator = Process("simulator", ["simulate", "--port", str(ports["ami"]), "--calls-per-minute", f"{rate:.2f}",
                                          "--ivr-share", "1", "--emergency-share", "0.1", "--unknown-share", "1",
                                          "--talk-min", "6", "--talk-max", "12", "--calls", str(calls),
                                          "--seed", str(args.seed), "--agi", f"127.0.0.1:{ports['agi']}"], env, folder)
        stack.callback(simulator.stop)
        wait_for_port(ports["ami"])
        bridge = Process("bridge", ["ami"], env, folder)
        stack.callback(bridge.stop)
        wait_for_log(bridge, "AMI connected")
        log(f"simulator: {len(agents)} agents, {rate:.1f} calls/min")
        try:
            result = asyncio.run(measure(ami_port=ports["ami"], ami_user=env["AMI_USER"], ami_secret=env["AMI_SECRET"],
                                         web_port=web_port, redis_url=redis_url, prefix=prefix, agents=agents,
                                         pids={"bridge": bridge.process.pid, "asterisk": simulator.process.pid,
                                               "web": web.process.pid, "ivr": ivr.process.pid},
                                         seconds=args.seconds, seed=args.seed))
        except BaseException:
            for process in (bridge, ivr, web, simulator):
                log(f"--- {process.name} log (tail)\n{process.output()[-1500:]}")
            raise
        result["rate"] = rate
        result["bridge_errors"] = bridge.output().count(" ERROR ")
        result["bridge_alive"] = bridge.alive()
        return result


# --- the report --------------------------------------------------------------------------------------

def latency(stats: dict) -> str:
    if not stats["n"]:
        return f"none (of {stats['of']})"
    return f"{stats['p50']:.1f} / {stats['p99']:.1f} / {stats['max']:.1f} ms  n={stats['n']}/{stats['of']}"


def report(args, real: dict, sim: dict) -> None:
    def cpu(result, name):
        value = result["cpu"].get(name)
        return "n/a" if value is None else f"{value:.1f} %"

    def concurrency(result):
        values = result["concurrency"]
        return f"{sum(values) / len(values):.1f} / {max(values)}" if values else "n/a"

    rows = [
        ("load", f"{args.callers} callers kept up ({real['callers_started']} started)", f"{sim['rate']:.1f} calls/min (Poisson)"),
        ("calls in the system, mean / max", concurrency(real), concurrency(sim)),
        ("calls arrived / offered / answered / abandoned",
         f"{real['calls']} / {real['offered']} / {real['answered']} / {real['abandoned']}",
         f"{sim['calls']} / {sim['offered']} / {sim['answered']} / {sim['abandoned']}"),
        ("AMI events to the bridge", f"{real['ami_events']} ({real['events_per_s']:.1f}/s)", f"{sim['ami_events']} ({sim['events_per_s']:.1f}/s)"),
        ("bridge CPU (% of one core)", cpu(real, "bridge"), cpu(sim, "bridge")),
        ("event → publish, AgentCalled → call.offered  p50 / p99 / max", latency(real["publish_offered"]), latency(sim["publish_offered"])),
        ("event → publish, AgentConnect → call.answered", latency(real["publish_answered"]), latency(sim["publish_answered"])),
        ("AgentCalled (ring) → screen pop fetched", latency(real["pop"]), latency(sim["pop"])),
        ("AgentCalled → call.offered on the agent's /ws", latency(real["frame_offered"]), latency(sim["frame_offered"])),
        ("AgentConnect (answer) → call.answered on /ws", latency(real["frame_answered"]), latency(sim["frame_answered"])),
        ("pop errors", str(real["pop_errors"]), str(sim["pop_errors"])),
        ("event time from", "Asterisk's Timestamp" if real["stamped"] and not real["unstamped"] else
         f"Timestamp on {real['stamped']} of {real['stamped'] + sum(real['unstamped'].values())}",
         "bench's AMI receipt (no Timestamp)" if not sim["stamped"] else f"Timestamp on {sim['stamped']}"),
        ("Asterisk / simulator CPU", cpu(real, "asterisk"), cpu(sim, "asterisk")),
        ("web CPU / IVR CPU", f"{cpu(real, 'web')} / {cpu(real, 'ivr')}", f"{cpu(sim, 'web')} / {cpu(sim, 'ivr')}"),
        ("agents rung while their channel of another call was up", str(real["busy_rings"]), str(sim["busy_rings"])),
        ("calls offered to an agent before its wrap-up pause", f"{real['before_wrapup']} of {real['answered']}",
         f"{sim['before_wrapup']} of {sim['answered']}"),
        ("bridge ERROR log lines / still running", f"{real['bridge_errors']} / {real['bridge_alive']}",
         f"{sim['bridge_errors']} / {sim['bridge_alive']}"),
    ]
    width = max(len(row[0]) for row in rows)
    col = max(len(row[1]) for row in rows)
    print()
    print(f"PBX benchmark: {args.agents} agents, {args.seconds:g} s windows ({real['seconds']:.1f} s / {sim['seconds']:.1f} s), "
          f"{args.backend}, {os.cpu_count()} cores")
    print(f"{'':{width}}  {'real Asterisk 22':{col}}  simulator")
    for label, left, right in rows:
        print(f"{label:{width}}  {left:{col}}  {right}")
    members = real.get("members", {})
    mid = real.get("mid_window", {})
    print(f"\nreal PBX queue: {members.get('count')} of {args.agents} Local members after going ready via the API, e.g. "
          f"{(members.get('sample') or ['-'])[0]}")
    if mid:
        print(f"  mid-window `queue show hotline`: {mid.get('head')}; members in use {mid['in_use']}, ringing {mid['ringing']}, "
              f"not in use {mid['not_in_use']}, paused {mid['paused']}, unavailable/invalid {mid['unavailable']}")
    if real["unstamped"]:
        print(f"  real PBX events without a Timestamp (bench receipt used): {real['unstamped']}")
    if real["caller_errors"]:
        print(f"  caller-side errors: {real['caller_errors']}")
    verdict = lambda value, target: "met" if value == value and value < target else "NOT met"  # noqa: E731
    for label, result in (("real Asterisk", real), ("simulator", sim)):
        worst = max(result["publish_offered"]["p99"], result["publish_answered"]["p99"])
        pop = result["pop"]
        print(f"targets, {label}: event → publish p99 < 20 ms {verdict(worst, 20)} ({worst:.1f} ms); answer → pop within 1 s "
              f"{verdict(pop['p99'], 1000)} (p99 {pop['p99']:.0f} ms, max {pop['max']:.0f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callers", type=int, default=50, help="callers kept in the system on the real PBX")
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=120, help="measured window of each phase")
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--database-url", help="use this (migrated here) instead of a fresh database per phase")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL"),
                        help="an empty Redis database (default: claim one, as the tests do)")
    parser.add_argument("--sim-rate", type=float, help="simulator calls/min (default: the real run's arrival rate)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (configuration, logs)")
    args = parser.parse_args()
    if args.callers < 1 or args.agents < 1 or args.seconds <= 0:
        parser.error("--callers, --agents and --seconds must be positive")
    missing = missing_runtime_libraries()
    if missing:
        raise SystemExit(f"Asterisk's runtime libraries are missing: {missing} (see ../shared/asterisk/README.md)")

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    folder = Path(tempfile.mkdtemp(prefix="pbxbench-"))
    redis_db = RedisDatabase(args.redis_url)
    try:
        log(f"work folder {folder}, Redis {redis_db.url}")
        real = real_phase(args, folder / "real", redis_db.url)
        rate = args.sim_rate or max(1.0, (real["calls"] or real["callers_started"] or 1) / real["seconds"] * 60)
        redis.Redis.from_url(redis_db.url).flushdb()  # ours: the second deployment starts clean
        sim = sim_phase(args, folder / "sim", redis_db.url, rate)
        report(args, real, sim)
    finally:
        redis_db.release()
        if args.keep:
            log(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
