#!/usr/bin/env python3
"""Fault benchmark: the faults of the real-PBX fault tests, in rotation, under steady traffic.

    .venv/bin/python scripts/bench/faults.py [--minutes 10] [--fault-every 60] [--callers 20]
                                             [--agents 10] [--outage 20] [--faults kill,restart,db,redis]
                                             [--cut-mode reject|blackhole] [--drain 60] [--seed 7]
                                             [--redis-url URL] [--keep]

One deployment on the real Asterisk 22 (`../shared/asterisk`, configured by `callcenter
asterisk-config`, built with scripts/bench/pbx.py's parts): TWO bridges (`callcenter ami` twice,
one leading, one on standby, sharing the leader lease in Redis, both with ASTERISK_LOG_DIR so that
after an outage they record the calls they missed from Asterisk's queue_log and CEL file),
`callcenter ivr` and one `callcenter web` (agents go ready through its API). PostgreSQL
(127.0.0.1:5432, a fresh database, dropped at the end) and Redis (127.0.0.1:6379, a database of
the bench's own, claimed as the test suite claims them, emptied and released at the end). The
bridges reach PostgreSQL through one TcpProxy (tests/faults.py) and Redis through another, both
owned by the bench, so it can cut them; the web, the IVR and the bench itself reach both directly.

Traffic: `--agents` agents are queue members `Local/<ext>@bench-agent` (answer at once, hang up
after 6-12 s). `--callers` elders are kept in the system (AMI Originate of
`Local/elder@from-elders-ivr` into from-elders-ivr,12349, the test tier's caller, so the call's
first channel is in the trunk's context as a carrier's would be; a new one whenever one leaves),
for `--minutes`: 15 % hang up in the IVR menu after 2.5-4.5 s (ivr_only), the others press 0 / 1 /
9 (8:1:1) and queue; a third of those give up if no agent answered within 8-30 s (abandoned), the
rest wait; after the agent hangs up 70 % hang up, the others stay for the survey. The bench's own
AMI connection reconnects after an Asterisk restart (its callers gone with it are counted ended) and
originates again once Asterisk reports FullyBooted (AMI answers before the dialplan is loaded); an
Originate Asterisk refuses ("Asterisk is shutting down") is no call and is counted bench-side.

Faults, one every `--fault-every` s, in the order of `--faults`, none later than `--outage` + 15 s
before the end of the traffic:
- kill:    kill -9 of the leading bridge (the pid in the lease `hotline:ami:leader`); the standby
           takes over; once it is connected a new standby is started;
- restart: `core restart now` in Asterisk (the harness's CLI); the bridges and the bench reconnect;
- db:      PostgreSQL unreachable for the bridges for `--outage` s (the proxy `reject`s: open
           connections cut, new ones closed at once; `--cut-mode blackhole`: nothing passes);
- redis:   Redis unreachable for the bridges for `--outage` s (same proxy modes).
Then no new callers; the drain waits up to `--drain` s for the callers to leave on their own (those
still there after 3/4 of it are hung up by the bench, counted), for Asterisk to have no channels,
and for the bridges to publish nothing for 3 s.

Printed, per fault kind and in total (a call belongs to a fault when its life, first CEL event to
LINKEDID_END, overlaps the fault's window: from the fault to its last recovery signal + 10 s; a
call overlapping two windows counts under both; `calm` = overlapping none):
- offered: inbound Linkedids in Asterisk's CEL file `log/cel-custom/hotline.csv` (CHAN_START with
  uniqueid == linkedid in a `from-elders…` context); ended: those with a LINKEDID_END;
- recorded: of those, rows in `calls`; missing: in the CEL, not in the table; extra: in the table
  (inbound), not in the CEL; duplicated: rows of the same caller number whose started_at are within
  1 s of each other (the same Linkedid twice is impossible: unique constraint); stuck: rows whose
  state is not `ended` after the drain; reconciled: rows with `reconciled` (recorded or completed
  from Asterisk's records);
- outcomes as recorded, and how many disagree with Asterisk's queue_log (CONNECT → answered;
  ABANDON → abandoned / short_abandon / cut_off; EXITWITHTIMEOUT → timeout; no ENTERQUEUE →
  ivr_only / cut_off); `lost_during_outage` is what the bridge records when it could not find the
  call in the records;
- agents left paused: member lines of `queue show` containing "paused" after the drain.
Recovery, per fault (times from the bench's clock at the fault and the bridges' own log stamps, or
the bench's receipt of an event on Redis pub/sub; the bridge publishes a change only after it
committed it, so a publish received is a change recorded):
- kill:    kill → the standby's "AMI connected to" (takeover); → its "… calls recorded from
           Asterisk's records" line (and how many); → the first call/agent event published;
- restart: `core restart now` → Asterisk fully booted again (bench polls `core show uptime`);
           → the leading bridge's "AMI connected to"; → the bench's AMI back; → the first event
           published for a call the bench originated after the boot (the first new call recorded);
- db:      end of the cut → the first event published (the first change committed after it);
           → the bridge's "the database is back" line; events published during the cut (1 s after
           its start to its end: 0 means nothing was published unrecorded); the bridges' log lines
           during the cut (0: they did not notice it, e.g. stalled on a black-holed connection);
- redis:   end of the cut → the first event the bridges published (received on the bench's own
           connection); → the "Redis is back" line; the lease: whether the standby took it
           (a takeover) and the old leader stepped down, and for how long both led (the new holder's
           "is the leader" → the old one's "steps down").
Signals are looked for from the fault until the next fault.
No target, no assert: the figures as measured. `--keep` keeps the work folder (configuration,
every process's log, Asterisk's queue_log and CEL, and `calls.csv`, the calls table as it was after
the drain; the database itself is dropped) for a closer look.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import functools
import json
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

# scripts/bench/pbx.py's deployment parts (importing it puts the repository on sys.path)
from pbx import (AGENT_CONTEXT, LOCAL_AGENT, PASSWORD, PG_ADMIN_URL, SECRET_KEY, RedisDatabase, log, menu_file,  # noqa: E402
                 prepare_database, wait_for_log, wait_healthy)

import httpx  # noqa: E402
import redis  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from callcenter.ami.protocol import FrameParser, Message, encode_action  # noqa: E402
from callcenter.calls.leader import LEADER_KEY  # noqa: E402
from callcenter.realtime.events import event_channels  # noqa: E402
from callcenter.db import create_postgres_database  # noqa: E402
from tests.faults import TcpProxy  # noqa: E402
from tests.pbx.harness import (Asterisk, Process, elder_call, free_tcp_port, missing_runtime_libraries,  # noqa: E402
                               pbx_environment, pick_ports, wait_for_port)

FAULT_KINDS = ("kill", "restart", "db", "redis")
FAULT_NAMES = {"kill": "bridge kill -9", "restart": "Asterisk restart", "db": "database cut", "redis": "Redis cut"}
KEYS, KEY_WEIGHTS = ("0", "1", "9"), (8, 1, 1)
IVR_ONLY_SHARE = 0.15  # hang up in the IVR menu
IMPATIENT_SHARE = 1 / 3  # of the queued callers: give up if no agent within PATIENCE
PATIENCE = (8.0, 30.0)
HANG_UP_WITH_AGENT = 0.7  # the rest stay for the survey
MAX_CALL_SECONDS = 300
WINDOW_GRACE = 10.0  # a fault's window runs this long past its last recovery signal
OUTCOMES = ("answered", "abandoned", "short_abandon", "timeout", "ivr_only", "cut_off", "lost_during_outage")
_LOG_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


# --- the deployment ---------------------------------------------------------------------------------

def via_proxy(url: str, port: int) -> str:
    """The same URL with the port of a proxy on 127.0.0.1."""
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"{url}: the bench proxies only services on this host")
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


class Deployment:
    """Asterisk, the IVR, the web and the bridges (leader + standby), the proxies the bench cuts."""

    def __init__(self, args, folder: Path, redis_url: str, stack: ExitStack):
        self.args, self.folder, self.redis_url = args, folder, redis_url
        self.stopping = threading.Event()  # Ctrl-C: the fault thread stops waiting
        self.bridges: list[Process] = []
        url, drop = create_postgres_database(PG_ADMIN_URL, f"bench_faults_{uuid.uuid4().hex[:8]}")
        stack.callback(drop)
        self.database_url = url
        self.agents = prepare_database(url, folder, args.agents)
        pg_port, redis_port = make_url(url).port or 5432, urlsplit(redis_url).port or 6379
        self.pg_proxy, self.redis_proxy = TcpProxy(pg_port), TcpProxy(redis_port)
        stack.callback(self.pg_proxy.close)
        stack.callback(self.redis_proxy.close)
        self.ports = pick_ports()
        self.prefix = f"benchfaults{uuid.uuid4().hex[:8]}"
        self.log_dir = folder / "state" / "log"
        self.env = pbx_environment(database_url=url, redis_url=redis_url, secret_key=SECRET_KEY, data_dir=folder / "data",
                                   events_prefix=self.prefix, ports=self.ports,
                                   extra={"IVR_MENU_FILE": str(menu_file(folder)), "WRAPUP_SECONDS": "1",
                                          "AGENT_INTERFACE": LOCAL_AGENT, "AGENT_PHONE": LOCAL_AGENT,
                                          "ASTERISK_LOG_DIR": str(self.log_dir)})
        bridge_url = make_url(url).set(port=self.pg_proxy.port).render_as_string(hide_password=False)
        self.bridge_env = {**self.env, "DATABASE_URL": bridge_url, "REDIS_URL": via_proxy(redis_url, self.redis_proxy.port)}
        self.redis = redis.Redis.from_url(redis_url)  # direct: the bench reads the lease
        self.asterisk = Asterisk(folder, self.env)
        log("asterisk-config, prompts, Asterisk")
        self.asterisk.configure()
        with open(self.asterisk.conf / "extensions_custom.conf", "a", encoding="utf-8") as handle:
            handle.write(AGENT_CONTEXT)
        self.asterisk.synthesize_prompts()
        stack.callback(self.asterisk.stop)
        self.asterisk.start()
        self.ivr = Process("ivr", ["ivr"], self.env, folder)
        stack.callback(self.ivr.stop)
        wait_for_port(self.ports["agi"])
        stack.callback(self._stop_bridges)
        leader = self.new_bridge()
        wait_for_log(leader, "AMI connected to")
        standby = self.new_bridge()
        wait_for_log(standby, "standby: bridge")
        self.web_port = free_tcp_port()
        self.web = Process("web", ["web", "--port", str(self.web_port)], self.env, folder)
        stack.callback(self.web.stop)
        wait_healthy(self.web_port, self.web)

    def new_bridge(self) -> Process:
        bridge = Process(f"bridge{len(self.bridges) + 1}", ["ami"], self.bridge_env, self.folder)
        self.bridges.append(bridge)
        return bridge

    def _stop_bridges(self) -> None:
        for bridge in self.bridges:
            bridge.stop()

    def leader(self) -> Process | None:
        """The bridge holding the lease (its pid is in the lease's value: host:pid:nonce)."""
        holder = self.redis.get(LEADER_KEY)
        if holder is None:
            return None
        pid = int(holder.decode().split(":")[-2])
        return next((bridge for bridge in self.bridges if bridge.process.pid == pid and bridge.alive()), None)

    def queue_show(self) -> str:
        return self.asterisk.cli("queue show")

    def uptime(self) -> float | None:
        match = re.search(r"System uptime:\s*(\d+)", self.asterisk.cli("core show uptime seconds", timeout=5))
        return float(match.group(1)) if match else None


# --- the bench's own AMI connection ---------------------------------------------------------------

class BenchAmi:
    """Same manager user as the bridges; reconnects (an Asterisk restart). `connected` is set once
    logged in and `on_connect` (a snapshot) has run."""

    def __init__(self, port: int, username: str, secret: str, on_event, on_connect):
        self.port, self.username, self.secret = port, username, secret
        self.on_event, self.on_connect = on_event, on_connect
        self.connected = asyncio.Event()
        self.pending: dict[str, asyncio.Future] = {}
        self.lists: dict[str, list[Message]] = {}
        self.serial = 0
        self.writer = None
        self.booted: asyncio.Future | None = None  # FullyBooted after a login
        self.logins: list[float] = []  # when each login succeeded (and Asterisk was fully booted)
        self.drops: list[float] = []  # when each connection was lost

    async def run(self) -> None:
        while True:
            try:
                reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            self.booted = asyncio.get_running_loop().create_future()
            reading = asyncio.create_task(self._read(reader, FrameParser()))
            try:
                response = await self.action("Login", Username=self.username, Secret=self.secret, Events="on", _ready=False)
                if response.response != "Success":
                    raise RuntimeError(f"AMI login refused: {response.as_dict()}")
                # AMI answers before the dialplan is loaded: no caller before FullyBooted (sent at
                # login when booted, else once booted)
                await asyncio.wait([self.booted, reading], timeout=30, return_when=asyncio.FIRST_COMPLETED)
                if reading.done():
                    continue
                await self.on_connect()
                self.logins.append(time.time())
                self.connected.set()
                await reading
            except (OSError, ConnectionError, asyncio.TimeoutError):
                pass
            finally:
                if self.connected.is_set():
                    self.drops.append(time.time())
                self.connected.clear()
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)
                for future in self.pending.values():
                    if not future.done():
                        future.set_exception(ConnectionError("AMI connection lost"))
                self.writer.close()
            await asyncio.sleep(0.2)

    async def action(self, name: str, *pairs: tuple[str, str], timeout: float = 10, _ready: bool = True,
                     **fields: str) -> Message:
        if _ready and not self.connected.is_set():
            raise ConnectionError("AMI not connected")
        self.serial += 1
        action_id = f"fb{self.serial}"
        future = asyncio.get_running_loop().create_future()
        self.pending[action_id] = future
        try:
            self.writer.write(encode_action(name, [("ActionID", action_id), *fields.items(), *pairs]))
            return await asyncio.wait_for(future, timeout)
        finally:
            self.pending.pop(action_id, None)

    async def channels(self, _ready: bool = True) -> list[Message]:
        """CoreShowChannels: the channels up now."""
        self.serial += 1
        action_id = f"fb{self.serial}"
        self.lists[action_id] = []
        done = asyncio.get_running_loop().create_future()
        self.pending[action_id + ":done"] = done
        try:
            self.writer.write(encode_action("CoreShowChannels", [("ActionID", action_id)]))
            await asyncio.wait_for(done, 10)
            return [m for m in self.lists[action_id] if m.event == "CoreShowChannel"]
        finally:
            self.lists.pop(action_id, None)
            self.pending.pop(action_id + ":done", None)

    async def _read(self, reader, parser: FrameParser) -> None:
        while data := await reader.read(65536):
            for message in parser.feed(data):
                if not isinstance(message, Message):
                    continue
                action_id = message.action_id or ""
                if action_id in self.lists and message.event:
                    self.lists[action_id].append(message)
                    if message.event.endswith("Complete"):
                        done = self.pending.get(action_id + ":done")
                        if done is not None and not done.done():
                            done.set_result(None)
                elif message.response is not None and action_id in self.pending:
                    if not self.pending[action_id].done():
                        self.pending[action_id].set_result(message)
                elif message.event and not action_id.startswith("fb"):
                    if message.event == "FullyBooted" and self.booted is not None and not self.booted.done():
                        self.booted.set_result(time.time())
                    self.on_event(message)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# --- the callers ----------------------------------------------------------------------------------

class Callers:
    """Keeps `count` elders in the system (see the module's docstring for their mix)."""

    def __init__(self, ami: BenchAmi, count: int, rng: random.Random):
        self.ami, self.count, self.rng = ami, count, rng
        self.run_id = uuid.uuid4().hex[:6]
        self.active: set[asyncio.Task] = set()
        self.hangups: set[asyncio.Task] = set()
        self.ended: dict[str, asyncio.Future] = {}  # call_id → the hotline side's Hangup
        self.answered: dict[str, asyncio.Future] = {}  # call_id → AgentConnect
        self.hang_with_agent: dict[str, bool] = {}
        self.originated: dict[str, tuple[float, str]] = {}  # call_id → (when, profile)
        self.profiles: Counter = Counter()
        self.errors: Counter = Counter()
        self.gone_with_asterisk = 0
        self.started = 0
        self.accepting = True

    def on_event(self, message: Message) -> None:
        event = message.event
        if event == "Hangup":
            future = self.ended.get(message.get("Uniqueid") or "")
            if future is not None and not future.done():
                future.set_result(time.time())
        elif event == "AgentConnect":
            for key in (message.get("Uniqueid"), message.get("Linkedid")):
                future = self.answered.get(key or "")
                if future is not None and not future.done():
                    future.set_result(time.time())
        elif event == "AgentComplete":
            call_id = message.get("Linkedid") or message.get("Uniqueid") or ""
            if self.hang_with_agent.get(call_id):
                task = asyncio.create_task(self._hang_up(call_id, after=self.rng.uniform(0.2, 1.0)))
                self.hangups.add(task)
                task.add_done_callback(self.hangups.discard)

    async def on_connect(self) -> None:
        """After a reconnect: callers whose channel Asterisk no longer has are gone (a restart)."""
        if not self.ended:
            return
        up = {channel.get("Uniqueid") for channel in await self.ami.channels(_ready=False)}
        for call_id, future in list(self.ended.items()):
            if call_id not in up and not future.done():
                self.gone_with_asterisk += 1
                future.set_result(time.time())

    async def run(self, deadline: float) -> None:
        while time.time() < deadline:
            while self.accepting and len(self.active) < self.count and time.time() < deadline:
                self.started += 1
                task = asyncio.create_task(self._caller(self.started))
                self.active.add(task)
                task.add_done_callback(self.active.discard)
                await asyncio.sleep(0.05)
            if self.active:
                await asyncio.wait(set(self.active), timeout=max(0.01, deadline - time.time()),
                                   return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.sleep(0.1)

    async def _caller(self, n: int) -> None:
        await self.ami.connected.wait()
        call_id = f"flt-{self.run_id}-{n}"
        if self.rng.random() < IVR_ONLY_SHARE:
            profile, keys = "ivr_only", ""
        else:
            profile = "impatient" if self.rng.random() < IMPATIENT_SHARE else "patient"
            keys = self.rng.choices(KEYS, KEY_WEIGHTS)[0]
        number = f"13{self.rng.randrange(10 ** 9):09d}"
        ended = asyncio.get_running_loop().create_future()
        answered = asyncio.get_running_loop().create_future()
        self.ended[call_id], self.answered[call_id] = ended, answered
        self.hang_with_agent[call_id] = self.rng.random() < HANG_UP_WITH_AGENT
        try:
            try:
                variables, fields = elder_call(call_id=call_id, number=number, keys=keys,
                                               delay=round(self.rng.uniform(1, 3), 1))
                response = await self.ami.action("Originate", *variables, **fields)
            except (ConnectionError, OSError, asyncio.TimeoutError):
                self.errors["originate: AMI lost"] += 1
                return
            if response.response != "Success":  # e.g. "Asterisk is shutting down": not offered, retried
                self.errors[f"originate refused: {response.get('Message')}"] += 1
                await asyncio.sleep(0.5)
                return
            self.originated[call_id] = (time.time(), profile)
            self.profiles[profile] += 1
            if profile == "ivr_only":
                await asyncio.wait([ended], timeout=self.rng.uniform(2.5, 4.5))
                if not ended.done():
                    await self._hang_up(call_id)
            elif profile == "impatient":
                await asyncio.wait([ended, answered], timeout=self.rng.uniform(*PATIENCE),
                                   return_when=asyncio.FIRST_COMPLETED)
                if not ended.done() and not answered.done():
                    await self._hang_up(call_id)
            await asyncio.wait([ended], timeout=MAX_CALL_SECONDS)
            if not ended.done():
                self.errors["caller still up after 300 s: hung up"] += 1
                await self._hang_up(call_id)
                await asyncio.wait([ended], timeout=10)
        finally:
            for table in (self.ended, self.answered, self.hang_with_agent):
                table.pop(call_id, None)

    async def _hang_up(self, call_id: str, after: float = 0) -> None:
        await asyncio.sleep(after)
        try:  # the elder's half, by its Uniqueid
            await self.ami.action("Hangup", Channel=f"{call_id}.elder", timeout=5)
        except (ConnectionError, OSError, asyncio.TimeoutError):
            self.errors["hang-up: AMI lost"] += 1

    async def hang_up_everyone(self) -> int:
        """The drain's end: every caller still on the line hangs up; returns how many there were."""
        left = sum(1 for future in self.ended.values() if not future.done())
        for pattern in ("/^Local\\/elder@from-elders-ivr-/", "/@bench-agent-/"):
            try:
                await self.ami.action("Hangup", Channel=pattern, timeout=5)
            except (ConnectionError, OSError, asyncio.TimeoutError):
                pass
        return left

    async def stop(self) -> None:
        for task in [*self.active, *self.hangups]:
            task.cancel()
        await asyncio.gather(*self.active, *self.hangups, return_exceptions=True)


# --- the faults (blocking: run in a thread while the callers go on) ---------------------------------

def wait_until(condition, timeout: float, stopping: threading.Event, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopping.is_set():
        value = condition()
        if value:
            return value
        stopping.wait(step)
    return None


def fault_kill(dep: Deployment) -> dict:
    leader = dep.leader()
    if leader is None:
        return {"note": "no leader holds the lease: nothing killed"}
    standbys = [bridge for bridge in dep.bridges if bridge is not leader and bridge.alive()]
    counts = {bridge.name: bridge.output().count("AMI connected to") for bridge in standbys}
    at = time.time()
    leader.process.kill()
    leader.process.wait(10)
    result = {"at": at, "end": at, "killed": leader.name, "standbys": [bridge.name for bridge in standbys]}
    taken = wait_until(lambda: next((b for b in standbys if b.output().count("AMI connected to") > counts[b.name]), None),
                       40, dep.stopping)
    result["took_over"] = taken.name if taken else None
    if taken is None:
        result["note"] = "no standby connected to AMI within 40 s"
    new = dep.new_bridge()
    if wait_until(lambda: "standby: bridge" in new.output() or "is the leader" in new.output(), 30, dep.stopping) is None:
        result["note"] = f"the new standby {new.name} did not report within 30 s"
    result["new_standby"] = new.name
    return result


def fault_restart(dep: Deployment) -> dict:
    at = time.time()
    dep.asterisk.cli("core restart now")
    result = {"at": at}

    def booted():
        try:
            uptime = dep.uptime()
        except Exception:  # noqa: BLE001 - the CLI times out while Asterisk is down
            return None
        if uptime is None or uptime > time.time() - at + 1:
            return None  # the old Asterisk still, or nothing yet
        return "fully booted" in dep.asterisk.cli("core waitfullybooted", timeout=5)

    if wait_until(booted, 60, dep.stopping, step=0.2):
        result["booted"] = time.time()
    else:
        result["note"] = "Asterisk not booted again within 60 s"
    result["end"] = result.get("booted", at)
    return result


def fault_cut(dep: Deployment, proxy: TcpProxy, seconds: float, mode: str) -> dict:
    leader = dep.leader()
    at = time.time()
    proxy.blackhole() if mode == "blackhole" else proxy.reject()
    dep.stopping.wait(seconds)
    end = time.time()
    proxy.heal()
    result = {"at": at, "end": end, "leader_before": leader.name if leader else None}
    dep.stopping.wait(6)  # the lease settles (3 s lease, renewed every second)
    after = dep.leader()
    result["leader_after"] = after.name if after else None
    return result


def run_fault(dep: Deployment, kind: str) -> dict:
    log(f"fault: {FAULT_NAMES[kind]}")
    if kind == "kill":
        result = fault_kill(dep)
    elif kind == "restart":
        result = fault_restart(dep)
    elif kind == "db":
        result = fault_cut(dep, dep.pg_proxy, dep.args.outage, dep.args.cut_mode)
    else:
        result = fault_cut(dep, dep.redis_proxy, dep.args.outage, dep.args.cut_mode)
    result["kind"] = kind
    result.setdefault("at", time.time())
    result.setdefault("end", result["at"])
    log(f"fault {FAULT_NAMES[kind]} done{': ' + result['note'] if result.get('note') else ''}")
    return result


# --- the run ----------------------------------------------------------------------------------------

async def follow_redis(url: str, prefix: str, published: list, subscribed: asyncio.Event) -> None:
    """Every event the bridges publish (call.*, agent.*): (receipt, type, call_id)."""
    channels = event_channels(prefix)
    client = aioredis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(channels.calls, channels.agents)
    subscribed.set()
    try:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            received = time.time()
            event = json.loads(message["data"])
            if str(event.get("type")).startswith(("call.", "agent.")):  # the bridges' (not the IVR's ivr.emergency)
                published.append((received, event.get("type"), event.get("call_id")))
    finally:
        await pubsub.aclose()
        await client.aclose()


async def agents_ready(dep: Deployment) -> None:
    """Each agent signs in and goes ready through the API (the bridge adds it to the queue)."""
    async def one(username: str) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dep.web_port}", timeout=15) as client:
            response = await client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
            response.raise_for_status()
            client.headers["X-CSRF-Token"] = client.cookies.get("cc_csrf") or ""
            deadline = time.monotonic() + 60
            while True:
                response = await client.post("/api/agent/state", json={"state": "ready"})
                if response.status_code == 200:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{username} could not go ready: {response.status_code} {response.text}")
                await asyncio.sleep(0.5)

    await asyncio.gather(*(one(username) for _, username in dep.agents))

    def members() -> int:
        return sum(1 for line in dep.asterisk.cli("queue show hotline").splitlines()
                   if "bench-agent" in line and "paused" not in line)

    deadline = time.monotonic() + 20
    while (count := await asyncio.to_thread(members)) < len(dep.agents) and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
    log(f"{count} of {len(dep.agents)} agents ready in the hotline queue")


async def run_bench(dep: Deployment) -> dict:
    args = dep.args
    rng = random.Random(args.seed)
    published: list = []
    subscribed = asyncio.Event()
    follower = asyncio.create_task(follow_redis(dep.redis_url, dep.prefix, published, subscribed))
    await asyncio.wait_for(subscribed.wait(), 10)
    callers_box: list[Callers] = []
    ami = BenchAmi(dep.ports["ami"], dep.env["AMI_USER"], dep.env["AMI_SECRET"],
                   on_event=lambda m: callers_box[0].on_event(m), on_connect=lambda: callers_box[0].on_connect())
    callers = Callers(ami, args.callers, rng)
    callers_box.append(callers)
    ami_task = asyncio.create_task(ami.run())
    faults: list[dict] = []
    result: dict = {"published": published, "faults": faults, "callers": callers, "ami": ami}
    scheduler = None
    try:
        await asyncio.wait_for(ami.connected.wait(), 20)
        await agents_ready(dep)
        t0 = time.time()
        t_end = t0 + args.minutes * 60
        result["t0"], result["t_end"] = t0, t_end

        async def schedule() -> None:
            kinds = args.faults
            for n in range(10_000):
                at = t0 + (n + 1) * args.fault_every
                if at + args.outage + 15 > t_end:
                    return
                await asyncio.sleep(max(0.0, at - time.time()))
                faults.append(await asyncio.to_thread(run_fault, dep, kinds[n % len(kinds)]))

        log(f"traffic for {args.minutes:g} min: {args.callers} callers kept, a fault every {args.fault_every:g} s")
        scheduler = asyncio.create_task(schedule())
        await callers.run(t_end)
        callers.accepting = False
        if not scheduler.done():
            log("traffic over; waiting for the last fault to finish")
        await scheduler
        result["traffic_end"] = time.time()

        # --- drain ---
        drain_start = time.time()
        log(f"drain: {len(callers.active)} callers still in the system")
        if callers.active:
            await asyncio.wait(set(callers.active), timeout=args.drain * 0.75)
        result["forced_hangups"] = await callers.hang_up_everyone() if callers.active else 0
        if callers.active:
            await asyncio.wait(set(callers.active), timeout=5)
        channels = None
        while time.time() < drain_start + args.drain:
            try:
                channels = len(await ami.channels()) if ami.connected.is_set() else None
            except (ConnectionError, OSError, asyncio.TimeoutError):
                channels = None
            if channels == 0:
                break
            await asyncio.sleep(0.5)
        result["channels_left"] = channels
        quiet_deadline = time.time() + 20
        while time.time() < quiet_deadline:
            last = published[-1][0] if published else 0
            if time.time() - last >= 3:
                break
            await asyncio.sleep(0.3)
        result["drained"] = time.time()
        log(f"drained in {result['drained'] - drain_start:.1f} s (Asterisk channels left: {channels})")
    finally:
        dep.stopping.set()
        if scheduler is not None and not scheduler.done():
            scheduler.cancel()
            await asyncio.gather(scheduler, return_exceptions=True)
        await callers.stop()
        ami_task.cancel()
        await asyncio.gather(ami_task, return_exceptions=True)
        ami.close()
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    return result


# --- what happened ----------------------------------------------------------------------------------

def log_lines(dep: Deployment) -> list[tuple[float, str, str]]:
    """Every bridge's stamped log lines: (epoch, bridge, line), in time order."""
    lines = []
    for bridge in dep.bridges:
        for line in bridge.output().splitlines():
            match = _LOG_STAMP.match(line)
            if match:
                at = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")) + int(match.group(2)) / 1000
                lines.append((at, bridge.name, line))
    return sorted(lines)


def _first_line(lines, after: float, text: str, bridge: str | None = None, exclude: str | None = None,
               before: float = float("inf")):
    return next(((at, name, line) for at, name, line in lines if after <= at < before and text in line
                 and (bridge is None or name == bridge) and name != exclude), None)


def _first_publish(published: list, after: float, call_ids: set[str] | None = None,
                  before: float = float("inf")) -> float | None:
    return next((at for at, _, call_id in published
                 if after <= at < before and (call_ids is None or call_id in call_ids)), None)


def recoveries(dep: Deployment, run: dict, lines) -> None:
    """Each fault's recovery signals (seconds from the fault's reference moment, looked for until the
    next fault) and its window."""
    published, originated = run["published"], run["callers"].originated
    nexts = [fault["at"] for fault in run["faults"][1:]] + [float("inf")]
    for fault, next_at in zip(run["faults"], nexts):
        at, kind, signals = fault["at"], fault["kind"], {}
        first_line = functools.partial(_first_line, before=next_at)
        first_publish = functools.partial(_first_publish, before=next_at)
        if kind == "kill":
            taken = first_line(lines, at, "AMI connected to", exclude=fault.get("killed"))
            if taken:
                signals["standby connected to AMI"] = taken[0] - at
                records = first_line(lines, at, "calls recorded from Asterisk's records", bridge=taken[1])
                if records:
                    signals["outage read from the records"] = records[0] - at
                    found = re.search(r": (\d+) calls recorded", records[2])
                    fault["reconciled_by_bridge"] = int(found.group(1)) if found else None
            publish = first_publish(published, at)
            if publish:
                signals["first event published"] = publish - at
            fault["reference"] = "kill -9"
        elif kind == "restart":
            if fault.get("booted"):
                signals["Asterisk fully booted"] = fault["booted"] - at
            connected = first_line(lines, at, "AMI connected to")
            if connected:
                signals["bridge reconnected"] = connected[0] - at
                records = first_line(lines, at, "calls recorded from Asterisk's records", bridge=connected[1])
                if records:
                    found = re.search(r": (\d+) calls recorded", records[2])
                    fault["reconciled_by_bridge"] = int(found.group(1)) if found else None
            bench = next((login for login in run["ami"].logins if login > at), None)
            if bench:
                signals["bench's AMI back"] = bench - at
            if fault.get("booted"):
                new = {call_id for call_id, (when, _) in originated.items() if when >= fault["booted"]}
                publish = first_publish(published, fault["booted"], new)
                if publish:
                    signals["first new call recorded"] = publish - at
            fault["reference"] = "core restart now"
        else:
            end = fault["end"]
            publish = first_publish(published, end)
            if publish:
                signals["first event published"] = publish - end
            text = "the database is back" if kind == "db" else "Redis is back"
            back = first_line(lines, end, text)
            if back:
                signals[f"'{text}'"] = back[0] - end
            fault["during"] = Counter(kind for when, kind, _ in published if at + 1 <= when < end)
            fault["logged"] = sum(1 for when, _, _ in lines if at <= when < end)  # 0: the bridges did not notice
            fault["reference"] = f"end of the {end - at:.0f} s cut"
            fault["stepped_down"] = [line for when, _, line in lines if at <= when <= end + 10 and "steps down" in line]
            took = first_line(lines, at, "is the leader", exclude=fault.get("leader_before"))
            stepped = first_line(lines, at, "steps down", bridge=fault.get("leader_before"))
            if took and stepped and took[0] <= end + 10:
                fault["both_leading"] = stepped[0] - took[0]  # the new leader runs before the old one steps down
        fault["signals"] = signals
        base = fault["end"] if kind in ("db", "redis") else at
        last = max([base + value for value in signals.values()] or [fault["end"] + 30])
        fault["window"] = (at, max(last, fault["end"]) + WINDOW_GRACE)


def read_cel(path: Path) -> dict[str, dict]:
    """Linkedid → {start, end (LINKEDID_END) or None, last, inbound, number}."""
    calls: dict[str, dict] = {}
    if not path.exists():
        return calls
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        for row in csv.reader(handle):
            if len(row) < 9:
                continue
            try:
                at = float(row[1])
            except ValueError:
                continue
            call = calls.setdefault(row[8], {"start": at, "end": None, "last": at, "inbound": False, "number": None})
            call["start"], call["last"] = min(call["start"], at), max(call["last"], at)
            if row[0] == "CHAN_START" and row[7] == row[8] and row[4].startswith("from-elders"):
                call["inbound"], call["number"] = True, row[2]
            if row[0] == "LINKEDID_END":
                call["end"] = at
    return calls


def read_queue_log(path: Path) -> dict[str, list[list[str]]]:
    lines: dict[str, list[list[str]]] = defaultdict(list)
    if path.exists():
        for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = text.split("|")
            if len(parts) > 4:
                lines[parts[1]].append(parts)
    return lines


def expected_outcomes(events: list[str]) -> set[str] | None:
    if "CONNECT" in events:
        return {"answered"}
    if "ABANDON" in events:
        return {"abandoned", "short_abandon", "cut_off"}
    if "EXITWITHTIMEOUT" in events:
        return {"timeout", "answered", "abandoned", "short_abandon", "ivr_only", "cut_off"}  # then the callback menu
    if "ENTERQUEUE" not in events:
        return {"ivr_only", "cut_off"}
    return None


def analyse(dep: Deployment, run: dict) -> dict:
    lines = log_lines(dep)
    recoveries(dep, run, lines)
    cel = read_cel(dep.log_dir / "cel-custom" / "hotline.csv")
    queue_log = read_queue_log(dep.log_dir / "queue_log")
    engine = create_engine(dep.database_url)
    with engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(text(
            "SELECT id, linkedid, direction, state, outcome, reconciled, caller_number, started_at, ended_at, hangup_by, "
            "agent_extension, outage_from, outage_to FROM calls ORDER BY started_at"))]
    engine.dispose()
    if dep.args.keep:  # the database is dropped at the end: its calls are kept with the folder
        with open(dep.folder / "calls.csv", "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(rows[0].keys() if rows else [])
            writer.writerows(row.values() for row in rows)
    offered = {linkedid: call for linkedid, call in cel.items() if call["inbound"]}
    by_linkedid = {row["linkedid"]: row for row in rows}
    now = time.time()

    def span(linkedid: str) -> tuple[float, float]:
        call = cel.get(linkedid)
        if call is not None:  # CEL times are whole seconds (truncated): the end may be up to 1 s later
            return call["start"], (call["end"] or call["last"]) + 1
        row = by_linkedid[linkedid]
        return row["started_at"].timestamp(), (row["ended_at"].timestamp() if row["ended_at"] else now)

    windows = [(fault["kind"], fault["window"]) for fault in run["faults"]]

    def buckets(linkedid: str) -> set[str]:
        start, end = span(linkedid)
        hit = {kind for kind, (w0, w1) in windows if start <= w1 and end >= w0}
        return hit or {"calm"}

    duplicated: set[str] = set()
    by_number: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_number[row["caller_number"] or ""].append(row)
    for number, group in by_number.items():
        if not number:
            continue
        group.sort(key=lambda row: row["started_at"])
        for first, second in zip(group, group[1:]):
            if (second["started_at"] - first["started_at"]).total_seconds() <= 1:
                duplicated.add(second["linkedid"])

    names = ["calm", *FAULT_KINDS, "total"]
    table = {name: Counter() for name in names}
    samples: dict[str, list[str]] = defaultdict(list)
    disagreements: list[str] = []

    def count(linkedid: str, key: str, amount: int = 1) -> None:
        for name in buckets(linkedid) | {"total"}:
            table[name][key] += amount

    for linkedid, call in offered.items():
        count(linkedid, "offered")
        if call["end"] is not None:
            count(linkedid, "ended")
        row = by_linkedid.get(linkedid)
        if row is None:
            count(linkedid, "missing")
            samples["missing"].append(linkedid)
            continue
        count(linkedid, "recorded")
        count(linkedid, f"outcome:{row['outcome']}")
        if row["reconciled"]:
            count(linkedid, "reconciled")
            if row["outcome"] == "answered" and not row["agent_extension"]:
                count(linkedid, "reconciled_no_agent")
                samples["reconciled answered without an agent"].append(linkedid)
        expected = expected_outcomes([line[4] for line in queue_log.get(linkedid, [])])
        if expected is not None and row["outcome"] not in expected:
            count(linkedid, "disagree")
            disagreements.append(f"{linkedid}: recorded {row['outcome']} (hangup_by {row['hangup_by']}, reconciled "
                                 f"{row['reconciled']}), queue_log {[line[4] for line in queue_log.get(linkedid, [])]}")
    for row in rows:
        linkedid = row["linkedid"]
        if linkedid not in offered and row["direction"] == "inbound":
            count(linkedid, "extra")
            samples["extra"].append(linkedid)
        if row["state"] != "ended":
            count(linkedid, "stuck")
            samples["stuck"].append(f"{linkedid} state {row['state']} outcome {row['outcome']}")
        if linkedid in duplicated:
            count(linkedid, "duplicated")
            samples["duplicated"].append(linkedid)
    queue_text = dep.queue_show()
    paused = [line.strip() for line in queue_text.splitlines() if "paused" in line and "/" in line]
    return {"table": table, "names": names, "samples": samples, "disagreements": disagreements, "paused": paused,
            "rows": rows, "offered": offered, "lines": lines, "not_inbound": sum(1 for r in rows if r["direction"] != "inbound")}


# --- the report -------------------------------------------------------------------------------------

def report(dep: Deployment, run: dict, found: dict) -> None:
    args = dep.args
    callers: Callers = run["callers"]
    table, names = found["table"], found["names"]
    print()
    print(f"Fault benchmark: {run['traffic_end'] - run['t0']:.0f} s of traffic on the real Asterisk 22, {args.callers} callers "
          f"kept, {args.agents} Local agents, two bridges (leader + standby), a fault every {args.fault_every:g} s "
          f"({', '.join(args.faults)}), cuts of {args.outage:g} s ({args.cut_mode})")
    profiles = ", ".join(f"{name} {callers.profiles[name]}" for name in ("ivr_only", "impatient", "patient"))
    print(f"bench callers originated: {len(callers.originated)} ({profiles}); gone with an Asterisk restart: "
          f"{callers.gone_with_asterisk}; hung up at the drain's end: {run.get('forced_hangups', 0)}; "
          f"Asterisk channels left after the drain: {run.get('channels_left')}")
    if callers.errors:
        print(f"  bench-side: {dict(callers.errors)}")

    print("\nFaults (seconds after the reference moment):")
    for n, fault in enumerate(run["faults"], 1):
        at = fault["at"] - run["t0"]
        signals = "; ".join(f"{name} +{value:.1f}" for name, value in fault.get("signals", {}).items()) or "no recovery signal"
        print(f" {n:2d}. t={at:6.1f} s  {FAULT_NAMES[fault['kind']]:17s} from {fault.get('reference')}: {signals}")
        extra = []
        if fault["kind"] == "kill":
            extra.append(f"killed {fault.get('killed')}, taken over by {fault.get('took_over')}, new standby "
                         f"{fault.get('new_standby')}")
        if "reconciled_by_bridge" in fault:
            extra.append(f"bridge log: '{fault['reconciled_by_bridge']} calls recorded from Asterisk's records'¹")
        if fault["kind"] in ("db", "redis"):
            during = fault.get("during") or {}
            extra.append(f"events published during the cut: {sum(during.values())}"
                         + (f" {dict(during)}" if during else ""))
            extra.append(f"bridge log lines during the cut: {fault.get('logged')}")
            extra.append(f"lease {fault.get('leader_before')} → {fault.get('leader_after')}")
            if fault.get("stepped_down"):
                extra.append(f"stepped down: {len(fault['stepped_down'])}")
            if "both_leading" in fault:
                extra.append(f"two bridges leading for {fault['both_leading']:.2f} s (new lease holder's 'is the leader' "
                             "→ the old one's 'steps down')")
        if fault.get("note"):
            extra.append(f"NOTE {fault['note']}")
        if extra:
            print(f"       {'; '.join(extra)}")

    columns = [("offered", "offered"), ("ended", "ended"), ("recorded", "recorded"), ("missing", "missing"),
               ("duplicated", "dup"), ("extra", "extra"), ("stuck", "stuck"), ("reconciled", "reconc"),
               *[(f"outcome:{name}", {"short_abandon": "short", "lost_during_outage": "lost", "ivr_only": "ivr"}.get(name, name))
                 for name in OUTCOMES], ("disagree", "≠qlog")]
    print("\nCalls (per Asterisk's CEL / as recorded), by the fault whose window they overlap:")
    header = f"{'':20s}" + "".join(f"{label:>10s}" for _, label in columns)
    print(header)
    for name in names:
        label = {"calm": "no fault", "total": "total"}.get(name, FAULT_NAMES.get(name, name))
        count = sum(1 for fault in run["faults"] if fault["kind"] == name)
        if name in FAULT_KINDS:
            label = f"{label} ×{count}"
        print(f"{label:20s}" + "".join(f"{table[name][key]:10d}" for key, _ in columns))
    other = {key: value for key, value in table["total"].items()
             if key.startswith("outcome:") and key.split(":", 1)[1] not in OUTCOMES}
    if other:
        print(f"  other outcomes (total): {other}")
    if found["not_inbound"]:
        print(f"  rows not inbound (not compared with the CEL): {found['not_inbound']}")
    if table["total"]["reconciled_no_agent"]:
        print(f"  reconciled answered calls without an agent: {table['total']['reconciled_no_agent']} (calls.records finds "
              "agents' channels by context: control.agent_contexts, from AGENT_INTERFACE)")
    print(f"agents left paused after the drain: {len(found['paused'])}")
    for line in found["paused"]:
        print(f"  {line}")
    for key in ("missing", "duplicated", "extra", "stuck", "reconciled answered without an agent"):
        if found["samples"][key]:
            print(f"{key}: {', '.join(found['samples'][key][:12])}{' …' if len(found['samples'][key]) > 12 else ''}")
    if found["disagreements"]:
        print(f"outcome ≠ queue_log ({len(found['disagreements'])}):")
        for line in found["disagreements"][:12]:
            print(f"  {line}")
    bridges = ", ".join(f"{bridge.name} {'running' if bridge.alive() else f'exit {bridge.process.returncode}'} "
                        f"({bridge.output().count(' ERROR ')} ERROR, {bridge.output().count('Traceback')} tracebacks)"
                        for bridge in dep.bridges)
    print(f"bridges: {bridges}")
    print("\nDefinitions: see the module docstring (scripts/bench/faults.py); a fault's window runs from the fault "
          f"to its last recovery signal + {WINDOW_GRACE:g} s.")
    if any("reconciled_by_bridge" in fault for fault in run["faults"]):
        print("¹ the bridge's count: every call the records show ended in the outage that it did not follow itself, "
              "including calls already recorded whole (by the other bridge), which are not overwritten; the calls table's "
              "`reconciled` column is in the table above.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10, help="traffic duration")
    parser.add_argument("--fault-every", type=float, default=60, help="seconds between faults")
    parser.add_argument("--callers", type=int, default=20, help="callers kept in the system")
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--outage", type=float, default=20, help="seconds the database / Redis stay cut")
    parser.add_argument("--faults", default=",".join(FAULT_KINDS), help="the rotation, e.g. kill,restart,db,redis")
    parser.add_argument("--cut-mode", choices=["reject", "blackhole"], default="reject")
    parser.add_argument("--drain", type=float, default=60, help="longest wait for the system to empty after the traffic")
    parser.add_argument("--redis-url", help="an empty Redis database on this host (default: claim one, as the tests do)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true",
                        help="keep the work folder (configuration, logs, queue_log, CEL, calls.csv: the calls table)")
    args = parser.parse_args()
    args.faults = [kind.strip() for kind in args.faults.split(",") if kind.strip()]
    if not args.faults or any(kind not in FAULT_KINDS for kind in args.faults):
        parser.error(f"--faults: a comma-separated list of {', '.join(FAULT_KINDS)}")
    if args.callers < 1 or args.agents < 1 or args.minutes <= 0 or args.fault_every <= 0 or args.outage <= 0:
        parser.error("--callers, --agents, --minutes, --fault-every and --outage must be positive")
    missing = missing_runtime_libraries()
    if missing:
        raise SystemExit(f"Asterisk's runtime libraries are missing: {missing} (see ../shared/asterisk/README.md)")

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C cleans up even when started with SIGINT ignored
    folder = Path(tempfile.mkdtemp(prefix="faultbench-"))
    with ExitStack() as stack:
        stack.callback(lambda: log(f"kept {folder}") if args.keep else shutil.rmtree(folder, ignore_errors=True))
        redis_db = RedisDatabase(args.redis_url)
        stack.callback(redis_db.release)
        log(f"work folder {folder}, Redis {redis_db.url}")
        dep = Deployment(args, folder, redis_db.url, stack)
        stack.callback(dep.stopping.set)
        try:
            run = asyncio.run(run_bench(dep))
        except BaseException:
            for process in [*dep.bridges, dep.ivr, dep.web]:
                log(f"--- {process.name} log (tail)\n{process.output()[-1500:]}")
            raise
        found = analyse(dep, run)
        report(dep, run, found)


if __name__ == "__main__":
    main()
