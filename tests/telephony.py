"""A live telephony stack for console tests: the AMI simulator and the real bridge running in a
background thread with their own event loop, so HTTP clients and Playwright can drive them from
the test's thread."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future

import redis.asyncio as aioredis
from sqlmodel import select

from callcenter.calls.bridge import Bridge
from callcenter.calls.models import AgentStatus, CallRecord
from callcenter.simulator.traffic import Simulator, TrafficMix
from callcenter.stats import rollup

USER, SECRET = "console-bridge", "console-secret"
# Calls stay up until the test (or the console) ends them; agents answer almost at once. A call
# placed from an agent's phone to a number that answers (a callback, a care call) talks 2 s, then
# the elder hangs up.
STEADY = TrafficMix(calls_per_minute=1, ivr_share=0, patience_seconds=(600, 600), ring_seconds=(0.2, 0.2),
                    talk_seconds=(900, 900), survey_share=0, unknown_share=0, outbound_talk_seconds=(2, 2))


class LiveTelephony:
    def __init__(self, settings, services, *, agents=(("8001", "Agent 8001"), ("8002", "Agent 8002")),
                 start_in_queue: bool = False, wrapup_seconds: float = 0, with_bridge: bool = True):
        self.settings, self.services = settings, services
        self.sim = Simulator(username=USER, secret=SECRET, port=0, agents=list(agents), mix=STEADY, seed=1,
                             start_in_queue=start_in_queue)
        self.loop = asyncio.new_event_loop()
        self.bridge: Bridge | None = None
        self.wrapup_seconds = wrapup_seconds
        self._tasks: list[asyncio.Task] = []
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.port = self.run(self.sim.start())
        self._tasks.append(self.run(self._spawn(self.sim.serve())))
        if with_bridge:
            self.start_bridge()

    async def _spawn(self, coroutine) -> asyncio.Task:
        return asyncio.create_task(coroutine)

    def run(self, coroutine, timeout: float = 20):
        """Run a coroutine on the telephony loop and return its result."""
        future: Future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def start_bridge(self) -> None:
        self.bridge = Bridge(database=self.services.db, rollups=rollup.Keeper(tz=self.settings.tz),
                             redis=aioredis.from_url(self.settings.redis_url), area_code="0411",
                             events_prefix=self.settings.events_prefix,
                             host="127.0.0.1", port=self.port, username=USER, secret=SECRET, backoff_initial=0.05,
                             backoff_max=0.5, wrapup_seconds=self.wrapup_seconds)
        self._bridge_task = self.run(self._spawn(self.bridge.run()))
        self._tasks.append(self._bridge_task)
        self.run(asyncio.wait_for(self.bridge.client.connected.wait(), 10))

    def place_call(self, number: str, name: str = "") -> None:
        """A caller dials 12349 now (answered by the first ready agent)."""
        self.loop.call_soon_threadsafe(lambda: self.sim._spawn(self.sim.inbound_call(number=number, name=name, ivr=False)))

    def caller_hangs_up(self, linkedid: str) -> None:
        self.loop.call_soon_threadsafe(self.sim.end_talk, linkedid, "caller")

    def member(self, extension: str):
        return self.sim.members[f"PJSIP/{extension}"]

    def actions(self, name: str) -> list:
        return [m for m in list(self.sim.actions_seen) if (m.get("Action") or "").lower() == name.lower()]

    def close(self) -> None:
        self.run(self._shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()

    async def _shutdown(self) -> None:
        pending = self._tasks + list(self.sim._tasks)
        if self.bridge is not None:
            self.bridge.stop()
            # its last database write may be under way in a thread: let it end before the next
            # test empties the tables
            await asyncio.wait([self._bridge_task], timeout=10)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.sim.close()


def wait_for(predicate, timeout: float = 10.0, message: str = "condition not reached in time"):
    """Poll `predicate` until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(message)


def call_rows(services) -> list[CallRecord]:
    with services.db.session_scope() as session:
        rows = list(session.exec(select(CallRecord).order_by(CallRecord.id)))
        for row in rows:
            session.expunge(row)
        return rows


def agent_row(services, extension: str) -> AgentStatus | None:
    with services.db.session_scope() as session:
        row = session.exec(select(AgentStatus).where(AgentStatus.extension == extension)).first()
        if row is not None:
            session.expunge(row)
        return row
