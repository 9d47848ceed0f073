"""Calls and agent shifts as AMI events stamped with chosen times (the `Timestamp` header that
Asterisk adds with `timestampevents = yes`), played to the real bridge over TCP by the fake
Asterisk: KPIs can then be computed by hand for exactly known waits, talks and wrap-ups.

Event shapes follow the recorded traces (tests/fixtures/ami-traces) and the simulator."""

from __future__ import annotations

import asyncio
import itertools
import threading
from concurrent.futures import Future
from datetime import datetime, timedelta

import redis.asyncio as aioredis

from callcenter.calls.bridge import Bridge
from callcenter.simulator.server import encode_message
from callcenter.stats import rollup
from tests.ami.fake_asterisk import SECRET, USER, FakeAsterisk

QUEUE = "hotline"
MEMBER = {"not_in_use": 1, "in_use": 2, "ringing": 6}
RING_SECONDS = 2


class Script:
    """AMI events in time order. Each call's Uniqueid is `prefix + name`, so one script can be
    played twice (on two days) without the bridge taking the second for a replay."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self._events: list[tuple[datetime, int, bytes]] = []
        self._order = itertools.count()

    def emit(self, at: datetime, event: str, **fields) -> None:
        pairs = [("Event", event), ("Privilege", "call,all"), ("Timestamp", f"{at.timestamp():.6f}")]
        pairs += [(key.replace("_", "-") if key == "Cause_txt" else key, value) for key, value in fields.items()]
        self._events.append((at, next(self._order), encode_message(pairs)))

    def messages(self) -> list[bytes]:
        return [message for _, _, message in sorted(self._events)]

    # --- agents -----------------------------------------------------------------------------

    def member(self, at: datetime, extension: str, status: str, *, event: str = "QueueMemberStatus", paused: bool = False,
               reason: str = "") -> None:
        self.emit(at, event, Queue=QUEUE, MemberName=f"坐席{extension}", Interface=f"Local/{extension}@agents",
                  StateInterface=f"Local/{extension}@agents", Membership="dynamic", Penalty=0, CallsTaken=0,
                  InCall=1 if status == "in_use" else 0, Status=MEMBER[status], Paused=1 if paused else 0,
                  PausedReason=reason, Ringinuse=0, Wrapuptime=0)

    def shift(self, extension: str, start: datetime, end: datetime) -> None:
        """Logged in (ready) from `start`, logged out at `end`."""
        self.member(start, extension, "not_in_use", event="QueueMemberAdded")
        self.emit(end, "QueueMemberRemoved", Queue=QUEUE, MemberName=f"坐席{extension}", Interface=f"Local/{extension}@agents")

    def pause(self, extension: str, start: datetime, end: datetime, reason: str) -> None:
        for at, paused in ((start, True), (end, False)):
            self.emit(at, "QueueMemberPause", Queue=QUEUE, MemberName=f"坐席{extension}", Interface=f"Local/{extension}@agents",
                      Paused=1 if paused else 0, PausedReason=reason if paused else "")

    # --- calls ------------------------------------------------------------------------------

    def _channel(self, name: str, context: str, number: str) -> dict:
        uniqueid = f"{self.prefix}{name}"
        return {"Channel": f"PJSIP/trunk-{uniqueid}", "ChannelState": 6, "CallerIDNum": number, "CallerIDName": "",
                "Context": context, "Exten": "12349", "Priority": 1, "Uniqueid": uniqueid, "Linkedid": uniqueid}

    def inbound(self, name: str, queued: datetime, outcome: str, *, wait: int, talk: int = 0, agent: str | None = None,
                wrapup: int = 0, emergency: bool = False, transfer: bool = False, number: str = "13800138000") -> None:
        """A caller who dials 12349, waits `wait` s in the queue, then is answered (talks `talk`
        s with `agent`, who then wraps up for `wrapup` s), abandons, or times out."""
        context = "from-elders-ivr" if emergency else "from-elders"
        channel = self._channel(name, context, number)
        self.emit(queued - timedelta(seconds=20), "Newchannel", **channel)
        if emergency:
            self.emit(queued - timedelta(seconds=15), "AGIExecStart", **channel, Command="ANSWER", CommandId=1)
            self.emit(queued - timedelta(seconds=5), "VarSet", **channel, Variable="IVR_ROUTE", Value="emergency")
            self.emit(queued - timedelta(seconds=5), "VarSet", **channel, Variable="QUEUE_PRIO", Value=10)
        self.emit(queued, "QueueCallerJoin", **channel, Queue=QUEUE, Position=1, Count=1)
        left = queued + timedelta(seconds=wait)
        if outcome == "answered":
            ring, done = left - timedelta(seconds=RING_SECONDS), left + timedelta(seconds=talk)
            member = {"Queue": QUEUE, "Interface": f"Local/{agent}@agents", "MemberName": f"坐席{agent}"}
            self.emit(ring, "AgentCalled", **channel, **member)
            self.member(ring, agent, "ringing")
            self.emit(left, "QueueCallerLeave", **channel, Queue=QUEUE, Count=0, Position=1)
            self.emit(left, "AgentConnect", **channel, **member, HoldTime=wait, RingTime=RING_SECONDS)
            self.member(left, agent, "in_use")
            if transfer:
                self.emit(done, "BlindTransfer", Result="Success", TransfererChannel=channel["Channel"],
                          TransfererUniqueid=channel["Uniqueid"], TransfererLinkedid=channel["Linkedid"], Extension="8100",
                          Context="hotline-transfer")
            self.emit(done, "AgentComplete", **channel, **member, HoldTime=wait, TalkTime=talk,
                      Reason="transfer" if transfer else "agent")
            self.member(done, agent, "not_in_use")
            if wrapup:
                self.pause(agent, done, done + timedelta(seconds=wrapup), "wrapup")
            end = done + timedelta(seconds=60 if transfer else 1)
        elif outcome in ("abandoned", "short_abandon"):
            self.emit(left, "QueueCallerAbandon", **channel, Queue=QUEUE, Position=1, OriginalPosition=1, HoldTime=wait)
            self.emit(left, "QueueCallerLeave", **channel, Queue=QUEUE, Count=0, Position=1)
            end = left
        else:  # timeout: out of the queue alive, to the voicemail, hangs up later
            self.emit(left, "QueueCallerLeave", **channel, Queue=QUEUE, Count=0, Position=1)
            end = left + timedelta(seconds=30)
        self.emit(end, "Hangup", **channel, Cause=16, Cause_txt="Normal Clearing")

    def not_offered(self, name: str, at: datetime, kind: str) -> None:
        """An outbound call (callback) or an IVR-only call: neither reaches the queue."""
        context = "hotline-outbound" if kind == "outbound" else "from-elders-ivr"
        channel = self._channel(name, context, "13900139000")
        self.emit(at, "Newchannel", **channel)
        if kind == "ivr":
            self.emit(at + timedelta(seconds=2), "AGIExecStart", **channel, Command="ANSWER", CommandId=1)
        self.emit(at + timedelta(seconds=60), "Hangup", **channel, Cause=16, Cause_txt="Normal Clearing")


def _events_in(messages: list[bytes]) -> int:
    return sum(1 for message in messages if message.startswith(b"Event:"))


class ScriptedAsterisk:
    """The fake Asterisk and the real bridge on their own event loop in a thread, so a
    browser test can watch the wallboard while events are played or injected."""

    def __init__(self, settings, services, script: list[bytes], rollups=None):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.fake = FakeAsterisk([script])
        self.sent = _events_in(script)  # what the bridge must have read before the test looks
        port = self.run(self.fake.start())
        # A long wrap-up timer: the script's own pause events end each wrap-up at its chosen time.
        self.bridge = Bridge(database=services.db, rollups=rollups or rollup.Keeper(tz=settings.tz),
                             redis=aioredis.from_url(settings.redis_url), area_code="0411",
                             events_prefix=settings.events_prefix,
                             host="127.0.0.1", port=port, username=USER, secret=SECRET, backoff_initial=0.05,
                             backoff_max=0.5, wrapup_seconds=3600)
        self._task = self.run(self._spawn(self.bridge.run()))
        self.run(asyncio.wait_for(self.fake.script_done.wait(), 20))
        self.settle()

    async def _spawn(self, coroutine) -> asyncio.Task:
        return asyncio.create_task(coroutine)

    def run(self, coroutine, timeout: float = 30):
        future: Future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def settle(self) -> None:
        """Until everything sent so far is recorded and published."""
        async def idle():
            deadline = asyncio.get_running_loop().time() + 20
            while self.bridge.stats.events < self.sent and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)  # until the bridge has read all of it …
            await self.bridge.wait_idle(20)  # … and recorded it
        self.run(idle(), timeout=60)

    def send(self, messages: list[bytes]) -> None:
        async def send():
            for message in messages:
                self.fake.sessions[-1].send(message)
        self.run(send())
        self.sent += _events_in(messages)

    def close(self) -> None:
        async def shutdown():
            self.bridge.stop()
            await asyncio.wait_for(self._task, 10)
            await self.fake.close()
        self.run(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()
