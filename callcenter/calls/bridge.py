"""The AMI bridge (`callcenter ami`): Asterisk events → call tracker → database → Redis.

Every change is committed to the database *before* its JSON event is published. Events are
processed in small batches (all that arrived while the previous batch was written) so a busy
city costs one transaction per batch, not per event. When Redis is down the events wait in
memory, in order, and go out when it returns; the database stays the record.

After every (re)connect the bridge takes a snapshot (QueueStatus, CoreShowChannels; bridged
channels carry their BridgeId there, so BridgeList adds nothing) and reconciles: calls Asterisk no longer has are closed as `lost_during_outage`.

Each write transaction hands what it wrote (`calls.written.Written`) to the bridge's rollup keeper
before it commits (the reports read the hours it touched from the calls until they are summed
again), and the keeper sums them again a second later (`_refresh_rollups`). The keeper comes from
the composition root (callcenter/cli.py): the calls domain does not import stats.

The bridge also runs the console's telephony commands (`calls.commands`: pause, ready, hang up,
transfer, call back) and the wrap-up: after each answered queue call the agent is paused with
reason `wrapup` for `wrapup_seconds`, then made ready again unless they chose otherwise meanwhile.

Redis pub/sub channels (JSON messages), named after `events_prefix` (EVENTS_PREFIX, default `hotline`):
- `<prefix>:calls`  — call.started, call.ivr, call.queued, call.offered, call.ring_no_answer,
  call.answered, call.agent_done, call.abandoned, call.transferred,
  call.updated, call.ended (`realtime.events.CallEvent`, built by `calls.notifier`)
- `<prefix>:agents` — agent.state (`realtime.events.AgentStateEvent`)
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from pathlib import Path
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from callcenter.ami.client import ActionFailed, ActionResult, AMIClient, AMIError, NotConnected
from callcenter.ami.protocol import Message
from callcenter.calls import commands, control, notifier, records
from callcenter.calls import service as calls_service
from callcenter.calls.control import PAUSE_REASONS, PHONE_OFFLINE_REASON, WRAPUP_REASON
from callcenter.calls.models import AgentActivity
from callcenter.calls.tracker import AGENT_CONTEXTS, CallTracker, Change
from callcenter.calls.written import RollupKeeper, Written
from callcenter.db import Database
from callcenter.realtime.events import Event, encode
from callcenter.timeutil import utcnow

log = logging.getLogger(__name__)
MAX_BATCH = 500
HELD_RETRY_SECONDS = 1.0
# On stop, what is left to tell Redis (the last events, "no bridge runs") gets this long: each
# Redis command may wait out its socket timeout (5 s) and retries, and a bridge told to stop must
# stop (systemd, a standby taking over), Redis or not. Consoles resync from the database anyway.
LAST_WORDS_SECONDS = 3.0
BEAT_SECONDS = 2.0  # a heartbeat Redis has not taken by then is skipped (the next comes within a quarter of its TTL)
MAX_HELD_CHANGES = 50_000  # changes kept through a database outage before compacting them
ROLLUP_REFRESH_SECONDS = 1.0
DB_STALL_SECONDS = 5.0  # a batch the database has not taken in this long is reported (log, heartbeat, /healthz)
RECORDS_MARGIN = timedelta(seconds=5)  # read the records from a little before the outage began


class Publisher:
    """Publishes in order; keeps what Redis could not take and retries on the next flush."""

    def __init__(self, redis: aioredis.Redis, *, prefix: str, max_buffer: int = 200_000):
        self.redis = redis
        self.prefix = prefix  # EVENTS_PREFIX
        self.pending: deque[tuple[str, str, float | None]] = deque()
        self.max_buffer = max_buffer
        self.dropped = 0
        self.published = 0
        self.redis_down = False
        self.latencies: list[float] | None = None  # the benchmark turns this on
        self._flushing = asyncio.Lock()  # the batch loop and the retry loop both flush: one at a time

    def add(self, event: Event, received: float | None = None) -> None:
        if len(self.pending) >= self.max_buffer:
            self.pending.popleft()
            self.dropped += 1
        self.pending.append((event.channel(self.prefix), encode(event), received))

    async def flush(self) -> bool:
        """Publish everything pending; False when Redis is down (what is left stays queued)."""
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> bool:
        while self.pending:
            batch = list(self.pending)[:1000]
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for channel, text, _ in batch:
                        pipe.publish(channel, text)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                if not self.redis_down:
                    log.warning("Redis unavailable (%s): %d events kept until it returns", type(exc).__name__, len(self.pending))
                self.redis_down = True
                return False
            if self.redis_down:
                log.info("Redis is back: publishing the events kept meanwhile")
            self.redis_down = False
            now = asyncio.get_running_loop().time()
            for _ in batch:
                _, _, received = self.pending.popleft()
                if self.latencies is not None and received is not None:
                    self.latencies.append(now - received)
            self.published += len(batch)
        return True


@dataclass
class _Snapshot:
    action: str  # QueueStatus | CoreShowChannels
    events: list[Message]
    outage_from: datetime | None
    taken_at: datetime


@dataclass
class _WrapUp:
    linkedid: str | None  # the call it follows (None: taken over after a restart)
    timer: asyncio.Task
    confirmed: bool = False  # Asterisk has reported the wrap-up pause


@dataclass
class BridgeStats:
    events: int = 0
    changes: int = 0
    batches: int = 0
    reconciles: int = 0
    reconciled: int = 0  # calls recorded from Asterisk's records after outages
    errors: int = 0
    db_stalls: int = 0  # writes the database took longer than DB_STALL_SECONDS to answer
    started: datetime = field(default_factory=utcnow)


class Bridge:
    def __init__(self, *, database: Database, rollups: RollupKeeper, redis: aioredis.Redis, area_code: str, host: str, port: int,
                 username: str, secret: str, short_abandon_seconds: int = 5, ping_interval: float = 5.0, ping_timeout: float = 3.0,
                 backoff_initial: float = 0.5, backoff_max: float = 5.0, wrapup_seconds: float = 0,
                 events_prefix: str = "hotline", records_dir: Path | None = None, agent_contexts: frozenset[str] = AGENT_CONTEXTS):
        self.database = database
        self.rollups = rollups  # told what each write changed, in its transaction; refreshed a second later
        self.records_dir = records_dir  # Asterisk's log folder (ASTERISK_LOG_DIR): queue_log and CEL
        self.redis = redis
        self.wrapup_seconds = wrapup_seconds
        self.wrapups: dict[str, _WrapUp] = {}  # agent interface → its wrap-up under way
        self._phone_tasks: dict[str, asyncio.Task] = {}  # agent interface → its phone pause under way
        self.area_code = area_code
        self.tracker = CallTracker(short_abandon_seconds=short_abandon_seconds, agent_contexts=agent_contexts)
        self.publisher = Publisher(redis, prefix=events_prefix)
        self.stats = BridgeStats()
        self.work: asyncio.Queue = asyncio.Queue()
        self.held: list[tuple[Change, float | None]] = []  # changes a database outage kept back, in order
        self.failures_in_a_row = 0
        self.db_stalled_since: datetime | None = None  # a write to the database hangs since then
        self._beaten_recording = True  # what the last heartbeat said of `recording`
        self.idle = asyncio.Event()
        self.rollups_pending = True  # marks may be left from before a restart
        self.disconnected_at: datetime | None = None
        self.stopping = False
        self.client = AMIClient(host, port, username, secret, on_event=self._on_event, on_connect=self._on_connect,
                                on_disconnect=self._on_disconnect, ping_interval=ping_interval, ping_timeout=ping_timeout,
                                backoff_initial=backoff_initial, backoff_max=backoff_max)

    async def run(self) -> None:
        """Restore open calls from the database, then follow Asterisk until stopped."""
        await self._beat()
        for agent in await asyncio.to_thread(self._known_agents):
            self.tracker.restore_agent(agent)
        for call in await asyncio.to_thread(self._open_calls):
            self.tracker.restore(call)
        if self.tracker.calls:
            log.info("restored %d open calls; the first snapshot decides which are still up", len(self.tracker.calls))
            self.disconnected_at = max(call.started_at for call in self.tracker.calls.values())
        if self.records_dir is not None:  # whatever happened since the last call recorded is read from the records
            last = await asyncio.to_thread(self._last_recorded_at)
            if last is not None:
                self.disconnected_at = min(self.disconnected_at or last, last)
        worker = asyncio.create_task(self._process(), name="bridge-process")
        helpers = [asyncio.create_task(self._retry_publish(), name="bridge-publish-retry"),
                   asyncio.create_task(self._serve_commands(), name="bridge-commands"),
                   asyncio.create_task(self._refresh_rollups(), name="bridge-rollups"),
                   asyncio.create_task(self._heartbeat(), name="bridge-heartbeat")]
        try:
            await self.client.run()
        finally:
            await self.work.put(None)
            await worker
            for task in helpers + [w.timer for w in self.wrapups.values()] + list(self._phone_tasks.values()):
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            try:
                await asyncio.wait_for(self._last_words(), LAST_WORDS_SECONDS)
            except asyncio.TimeoutError:
                log.warning("stopped with %d events unpublished: Redis did not answer within %.0f s",
                            len(self.publisher.pending), LAST_WORDS_SECONDS)

    async def _last_words(self) -> None:
        """Publish what is left and tell the web at once that no bridge runs."""
        await self.publisher.flush()
        try:
            await self.redis.delete(commands.BRIDGE_KEY)
        except (RedisError, OSError):
            pass

    def stop(self) -> None:
        self.stopping = True
        self.client.stop()

    def _last_recorded_at(self) -> datetime | None:
        with self.database.session_scope() as session:
            return calls_service.last_recorded_at(session=session)

    def _known_agents(self):
        with self.database.session_scope() as session:
            return calls_service.known_agents(session=session)

    def _open_calls(self):
        with self.database.session_scope() as session:
            return calls_service.open_calls(session=session)

    # --- AMI callbacks ----------------------------------------------------------------------

    async def _on_event(self, item: Message | ActionResult) -> None:
        self.idle.clear()
        if isinstance(item, ActionResult):  # a snapshot, at the point of the stream it describes
            await self.work.put(_Snapshot(action=item.action, events=item.events, outage_from=self.disconnected_at,
                                          taken_at=utcnow()))
            return
        await self.work.put((item, event_time(item), asyncio.get_running_loop().time()))

    async def _on_disconnect(self) -> None:
        self.disconnected_at = utcnow()
        if not self.stopping:  # stopping: the last words say no bridge runs
            await self._beat()
        log.warning("AMI connection lost at %s", self.disconnected_at.isoformat())

    async def _on_connect(self, client: AMIClient) -> None:
        """Snapshot what Asterisk has now (applied in event order, see AMIClient.action)."""
        await self._beat()
        await client.queue_status(ordered=True)
        await client.core_show_channels(ordered=True)

    # --- processing -------------------------------------------------------------------------

    async def _process(self) -> None:
        while True:
            try:  # with changes held back by a database outage, retry them every second
                item = await asyncio.wait_for(self.work.get(), HELD_RETRY_SECONDS) if self.held else await self.work.get()
            except asyncio.TimeoutError:
                await self._handle([])
                continue
            if item is None:
                if self.held:
                    await self._handle([])  # one last try before stopping
                return
            batch = [item]
            while len(batch) < MAX_BATCH and not self.work.empty():
                nxt = self.work.get_nowait()
                if nxt is None:
                    await self.work.put(None)
                    break
                batch.append(nxt)
            await self._handle(batch)
            if self.work.empty():
                self.idle.set()

    async def _handle(self, batch: list) -> None:
        changes: list[tuple[Change, float | None]] = []
        for item in batch:
            if isinstance(item, _Snapshot):
                changes += [(change, None) for change in self._reconcile(item)]
                if item.action == "CoreShowChannels":
                    changes += [(change, None) for change in await self._reconcile_from_records(item)]
                continue
            message, at, received = item
            self.stats.events += 1
            changes += [(change, received) for change in self.tracker.apply(message, at)]
        changes, self.held = self.held + changes, []
        if not changes:
            return
        self.stats.batches += 1
        self.stats.changes += len(changes)
        try:
            payloads = await self._persist_watched(changes)
        except Exception as exc:
            # The database is the record: without it we publish nothing rather than events nobody
            # can look up, and keep the changes, in order, to write them first once it is back (a
            # call that ended meanwhile would otherwise stay open forever).
            self.stats.errors += 1
            self.failures_in_a_row += 1
            self.held = self._bounded(changes)
            if self.failures_in_a_row == 1 or self.failures_in_a_row % 30 == 0:
                log.error("could not record %d call changes (%s): kept, retried every %.0f s", len(self.held),
                          type(exc).__name__, HELD_RETRY_SECONDS, exc_info=self.failures_in_a_row == 1)
            await self._beat_if_recording_changed()
            return
        if self.failures_in_a_row:
            log.info("the database is back: recorded the %d call changes kept", len(changes))
            self.failures_in_a_row = 0
        await self._beat_if_recording_changed()
        self.rollups_pending = True
        for event, received in payloads:
            self.publisher.add(event, received)
        if not self.publisher.redis_down:  # else the retry loop publishes: calls and wrap-ups do not wait on Redis
            await self.publisher.flush()
        await self._follow_wrapups([change for change, _ in changes])
        self._follow_phones([change for change, _ in changes])

    async def _persist_watched(self, changes: list[tuple[Change, float | None]]) -> list[tuple[Event, float | None]]:
        """`_persist` in a thread, said out loud when the database stops answering instead of
        failing (a hung connection): logged, and the heartbeat (hence /healthz) says calls are
        not being recorded until the write ends either way. Every event stays queued meanwhile."""
        write = asyncio.ensure_future(asyncio.to_thread(self._persist, changes))
        try:
            return await asyncio.wait_for(asyncio.shield(write), DB_STALL_SECONDS)
        except asyncio.TimeoutError:
            pass
        self.db_stalled_since = utcnow() - timedelta(seconds=DB_STALL_SECONDS)
        self.stats.db_stalls += 1
        log.error("the database has not answered for %g s: %d call changes wait to be recorded, and every event after them",
                  DB_STALL_SECONDS, len(changes))
        await self._beat()
        try:
            return await write
        finally:  # the caller's heartbeat tells how it ended (recorded, or kept for a retry)
            log.warning("the stalled database write ended after %.1f s", (utcnow() - self.db_stalled_since).total_seconds())
            self.db_stalled_since = None

    @property
    def recording(self) -> bool:
        """Calls are being written as they happen (no database outage, no stalled write)."""
        return self.db_stalled_since is None and not self.failures_in_a_row

    @staticmethod
    def _bounded(changes: list[tuple[Change, float | None]]) -> list[tuple[Change, float | None]]:
        """At most MAX_HELD_CHANGES kept through an outage: past that, each call's and agent's last
        change only (what the database needs: every row is written from its latest state; the
        live events in between are dropped, consoles resnapshot)."""
        if len(changes) <= MAX_HELD_CHANGES:
            return changes
        last: dict[tuple[str, str], tuple[Change, float | None]] = {}
        for change, received in changes:
            key = ("call", change.call.linkedid) if change.call is not None else ("agent", change.agent.interface)
            last.pop(key, None)
            last[key] = (change, received)
        log.warning("%d call changes held back by the database outage: compacted to the last state of %d calls and agents",
                    len(changes), len(last))
        return list(last.values())

    def _reconcile(self, snapshot: _Snapshot) -> list[Change]:
        if snapshot.action == "QueueStatus":
            return self.tracker.reconcile_queue(
                members=[e for e in snapshot.events if e.event == "QueueMember"],
                entries=[e for e in snapshot.events if e.event == "QueueEntry"], now=snapshot.taken_at)
        self.stats.reconciles += 1
        self.disconnected_at = None
        return self.tracker.reconcile_channels(channels=[e for e in snapshot.events if e.event == "CoreShowChannel"],
                                               outage_from=snapshot.outage_from, now=snapshot.taken_at)

    async def _reconcile_from_records(self, snapshot: _Snapshot) -> list[Change]:
        """After an outage: the calls Asterisk's records (queue_log, CEL) show ended in it,
        recorded with their real outcome, agents and legs (calls.records)."""
        if self.records_dir is None or snapshot.outage_from is None:
            return []
        start, end = snapshot.outage_from - RECORDS_MARGIN, snapshot.taken_at
        restarted = self.tracker.booted_at if self.tracker.pbx_restarted_since(snapshot.outage_from) else None
        try:
            found = await asyncio.to_thread(self._read_records, start, end, restarted)
        except OSError as exc:
            log.error("could not read Asterisk's records in %s (%s): calls of the outage stay as lost", self.records_dir, exc)
            return []
        changes = self.tracker.take_reconciled(found)
        log.info("outage %s – %s: %d calls recorded from Asterisk's records", start.isoformat(), end.isoformat(), len(changes))
        self.stats.reconciled += len(changes)
        return changes

    def _read_records(self, start: datetime, end: datetime, restarted: datetime | None) -> list:
        found = records.read(self.records_dir, start)
        return records.ended_calls(found, start=start, end=end, restarted_at=restarted, skip=self.tracker.reconciled_skip(),
                                   short_abandon_seconds=self.tracker.short_abandon_seconds,
                                   inbound_contexts=self.tracker.inbound_contexts, agent_contexts=self.tracker.agent_contexts)

    def _persist(self, changes: list[tuple[Change, float | None]]) -> list[tuple[Event, float | None]]:
        """Write the batch in one transaction (each call and agent once, as it ended up); returns
        one event per change, to publish once committed."""
        last_call = {c.call.linkedid: c.call for c, _ in changes if c.call is not None}
        last_agent = {c.agent.interface: c.agent for c, _ in changes if c.agent is not None}
        written = Written()
        with self.database.session_scope() as session, session.no_autoflush:
            records = {linkedid: calls_service.record_call(session=session, call=call, area_code=self.area_code, written=written)
                       for linkedid, call in last_call.items()}
            for agent in last_agent.values():
                calls_service.record_agent(session=session, agent=agent)
            calls_service.log_agent_activities(session=session, agents=[c.agent for c, _ in changes if c.agent is not None],
                                               written=written)
            session.flush()  # ids for the events
            self.rollups.written(session, written)  # the batch's hours, marked once, committed with its calls
            return [(notifier.of_change(change, records), received) for change, received in changes]

    async def _refresh_rollups(self) -> None:
        """Sum the hours this bridge's writes marked dirty again, a second after the writes, off
        the path from event to publish (readers meanwhile take those hours from the calls)."""
        failures = 0
        while True:
            await asyncio.sleep(ROLLUP_REFRESH_SECONDS)
            if self.rollups_pending:
                self.rollups_pending = False
                try:
                    await asyncio.to_thread(self._refresh_rollups_now)
                except Exception as exc:
                    self.rollups_pending = True
                    failures += 1
                    if failures == 1 or failures % 60 == 0:  # once per outage (and every minute), not every second
                        log.error("could not refresh the call rollup (%s, %d tries); trying again every %.0f s",
                                  type(exc).__name__, failures, ROLLUP_REFRESH_SECONDS, exc_info=failures == 1)
                    continue
                if failures:
                    log.info("the call rollup is refreshed again after %d failed tries", failures)
                    failures = 0

    def _refresh_rollups_now(self) -> int:
        with self.database.session_scope() as session:
            return self.rollups.refresh(session)

    async def _retry_publish(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.publisher.pending:
                await self.publisher.flush()

    # --- console commands -------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(commands.BRIDGE_TTL_SECONDS / 4)
            await self._beat()

    async def _beat_if_recording_changed(self) -> None:
        """/healthz learns at once, not at the next periodic beat, that recording stopped or resumed."""
        if self.recording != self._beaten_recording:
            await self._beat()

    async def _beat(self) -> None:
        """Tell /healthz and the web how the bridge is. Best effort and bounded: a Redis that does not
        answer (a half-open link) must not hold up the AMI login or the snapshot behind it."""
        self._beaten_recording = self.recording
        beat = self.redis.set(commands.BRIDGE_KEY, commands.heartbeat(ami_connected=self.client.connected.is_set(),
                                                                      recording=self.recording, held=len(self.held)),
                              ex=commands.BRIDGE_TTL_SECONDS)
        try:
            await asyncio.wait_for(beat, BEAT_SECONDS)
        except (RedisError, OSError, asyncio.TimeoutError):
            pass  # Redis is down: the web cannot send commands either

    async def _serve_commands(self) -> None:
        """Run the web's commands one at a time, in the order they were sent."""
        while True:
            try:
                item = await self.redis.blpop([commands.COMMANDS_KEY], timeout=1)
            except (RedisError, OSError):
                await asyncio.sleep(1.0)
                continue
            if item is None:
                continue
            command, problem = commands.parse(item[1])
            if command is None:
                log.warning("refused a telephony command: %s", problem)
                continue
            remaining = float(command.get("deadline", 0)) - time.time()
            if remaining <= 0:
                log.warning("dropped a telephony command that waited past its deadline")
                continue
            outcome = await self._run_steps(command["steps"], timeout=remaining)
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.rpush(commands.reply_key(command), commands.encode_reply(outcome))
                    pipe.expire(commands.reply_key(command), commands.REPLY_TTL_SECONDS)
                    await pipe.execute()
            except (RedisError, OSError):
                log.warning("could not reply to a telephony command (Redis unavailable)")

    async def _run_steps(self, steps: list[dict], *, timeout: float) -> commands.Outcome:
        results = []
        for step in steps:
            try:
                response = (await self.client.action(step["action"], [tuple(pair) for pair in step["fields"]],
                                                     timeout=timeout)).response
            except ActionFailed as exc:  # Asterisk said no
                response = exc.response
            except NotConnected:  # not refused: Asterisk is out of reach (the web answers 503)
                return commands.Outcome(ok=False, message=commands.NO_ASTERISK, results=results, unavailable=True)
            except (AMIError, asyncio.TimeoutError, OSError) as exc:
                return commands.Outcome(ok=False, message=f"{step['action']}：{exc or type(exc).__name__}", results=results)
            message = response.get("Message", "")
            results.append({"action": step["action"], "response": response.response, "message": message})
            ok = (response.response or "").lower() == "success"
            if not ok and not any(text in message for text in step.get("tolerate", [])):
                return commands.Outcome(ok=False, message=f"{step['action']}：{message}", results=results)
        return commands.Outcome(ok=True, results=results)

    # --- phones ------------------------------------------------------------------------------

    def _follow_phones(self, changes: list[Change]) -> None:
        """An agent in a queue whose phone is gone (a softphone not registered, a closed console,
        a dead WebSocket, a desk phone unplugged: device state unavailable) is paused with reason
        `phone_offline`, so consoles and the wallboard do not call them ready; they are made ready
        again when the phone registers. A pause the agent chose is left alone."""
        for interface in dict.fromkeys(c.agent.interface for c in changes if c.kind == "agent.state"):
            agent = self.tracker.agents.get(interface)  # as it is now, not as one change of the batch saw it
            if agent is None or not agent.queues:
                continue
            offline = agent.state == AgentActivity.UNAVAILABLE
            if offline and not agent.paused:
                self._spawn_pause(agent.interface, True, PHONE_OFFLINE_REASON)
            elif not offline and agent.status != "unknown" and agent.paused and agent.pause_reason == PHONE_OFFLINE_REASON:
                self._spawn_pause(agent.interface, False, None)

    def _spawn_pause(self, interface: str, paused: bool, reason: str | None) -> None:
        if interface in self._phone_tasks:
            return  # one under way: the state it brings decides whether another is needed

        async def pause() -> None:
            try:
                await self.client.queue_pause(interface, paused, reason=reason)
            except (AMIError, asyncio.TimeoutError, OSError) as exc:
                log.warning("could not %s %s (phone %s): %s", "pause" if paused else "unpause", interface,
                            "offline" if paused else "back", exc or type(exc).__name__)
        task = asyncio.create_task(pause(), name=f"phone-{interface}")
        self._phone_tasks[interface] = task
        task.add_done_callback(lambda _: self._phone_tasks.pop(interface, None))

    # --- wrap-up ----------------------------------------------------------------------------

    async def _follow_wrapups(self, changes: list[Change]) -> None:
        """Start a wrap-up when an agent finishes a queue call; notice when it ends; take over a
        wrap-up pause this bridge did not start (it was restarted, or another bridge stopped)."""
        for change in changes:
            interface = finished_agent(change)
            if interface and self.wrapup_seconds > 0:
                self._start_wrapup(interface, change.call.linkedid)
            elif change.kind == "agent.state" and change.agent.interface in self.wrapups:
                wrapup, agent = self.wrapups[change.agent.interface], change.agent
                if agent.paused and agent.pause_reason == WRAPUP_REASON:
                    wrapup.confirmed = True
                elif wrapup.confirmed:  # ended: by the timer, or the agent chose ready / another pause
                    self.wrapups.pop(agent.interface).timer.cancel()
                    if wrapup.linkedid:
                        await asyncio.to_thread(self._record_wrapup_end, wrapup.linkedid, agent.since or utcnow(), agent.interface)
                        self.rollups_pending = True
            elif change.kind == "agent.state" and change.agent.paused and change.agent.pause_reason == WRAPUP_REASON:
                agent = change.agent  # an orphan: nobody would ever make this agent ready again
                elapsed = (utcnow() - agent.since).total_seconds() if agent.since else 0.0
                self._start_wrapup(agent.interface, None, pause=False, seconds=max(0.0, self.wrapup_seconds - elapsed))
                self.wrapups[agent.interface].confirmed = True

    def _start_wrapup(self, interface: str, linkedid: str | None, *, pause: bool = True, seconds: float | None = None) -> None:
        agent = self.tracker.agents.get(interface)
        if pause and agent is not None and agent.paused and agent.pause_reason in PAUSE_REASONS:
            return  # the agent chose a pause during the call: keep it, do not make them ready later
        previous = self.wrapups.pop(interface, None)
        if previous is not None:
            previous.timer.cancel()
        seconds = self.wrapup_seconds if seconds is None else seconds
        timer = asyncio.create_task(self._wrapup(interface, pause=pause, seconds=seconds), name=f"wrapup-{interface}")
        self.wrapups[interface] = _WrapUp(linkedid=linkedid, timer=timer)

    async def _wrapup(self, interface: str, *, pause: bool, seconds: float) -> None:
        """Pause for wrap-up, wait, make ready. The unpause outlives an AMI outage: retried once
        Asterisk is back (an agent left paused for good takes no more calls)."""
        try:
            if pause:
                await self.client.queue_pause(interface, True, reason=WRAPUP_REASON)
        except (AMIError, asyncio.TimeoutError, OSError) as exc:
            log.warning("wrap-up of %s not started: %s", interface, exc or type(exc).__name__)
            return
        await asyncio.sleep(seconds)
        while True:
            agent = self.tracker.agents.get(interface)
            if agent is None or not agent.paused or agent.pause_reason != WRAPUP_REASON:
                return
            try:
                await self.client.queue_pause(interface, False)
                return
            except (AMIError, asyncio.TimeoutError, OSError) as exc:
                log.warning("end of the wrap-up of %s: %s; retried when Asterisk is back", interface, exc or type(exc).__name__)
                await self.client.connected.wait()
                await asyncio.sleep(1.0)  # the reconnect snapshot first: it says whether still paused

    def _record_wrapup_end(self, linkedid: str, at: datetime, interface: str) -> None:
        written = Written()
        try:
            with self.database.session_scope() as session:
                calls_service.record_wrapup_end(session=session, linkedid=linkedid, at=at, interface=interface, written=written)
                session.flush()
                self.rollups.written(session, written)
        except Exception:
            log.exception("could not record the end of a wrap-up")

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Tests and benchmarks: until everything received so far is recorded and published."""
        await asyncio.wait_for(self.idle.wait(), timeout)


def finished_agent(change: Change) -> str | None:
    """The agent whose part of a call just ended (hung up, or passed the caller on): their
    wrap-up starts now."""
    if change.kind not in ("call.agent_done", "call.transferred") or change.call is None:
        return None
    ended = [leg for leg in change.call.legs if leg.ended_at is not None]
    if ended:
        return max(ended, key=lambda leg: leg.ended_at).interface
    return change.call.agent_interface if change.kind == "call.agent_done" else None


def event_time(message: Message) -> datetime:
    """When Asterisk saw the event: its `Timestamp` header (manager.conf `timestampevents = yes`),
    else now. Asterisk's clock keeps a backlog read after a stall, or a replay, at its real times."""
    stamp = message.get("Timestamp")
    if stamp:
        try:
            seconds = float(stamp)
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds) and 0 < seconds < 32503680000:  # before the year 3000
            return datetime.fromtimestamp(seconds, timezone.utc)
    return utcnow()


def from_settings(settings, *, host: str, port: int, username: str, secret: str, rollups: RollupKeeper,
                  database: Database | None = None) -> Bridge:
    """A bridge for `callcenter ami` / `callcenter run`, on the configured database and Redis,
    keeping `rollups` (the composition root's: stats.rollup.Keeper)."""
    from callcenter import redis_conn

    return Bridge(database=database or Database(settings), rollups=rollups, redis=aioredis.from_url(redis_conn.redis_url(settings)),
                  area_code=settings.city_area_code, host=host, port=port, username=username, secret=secret,
                  short_abandon_seconds=settings.short_abandon_seconds, wrapup_seconds=settings.wrapup_seconds,
                  events_prefix=settings.events_prefix, records_dir=settings.asterisk_log_dir,
                  agent_contexts=control.agent_contexts(settings))
