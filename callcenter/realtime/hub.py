"""The realtime hub: Redis pub/sub → websockets, one hub per web process.

Every web process subscribes to the bridge's channels (`<events_prefix>:calls` and `:agents`) once
and fans the events out to its own sockets, so an event reaches an agent whichever process holds
the agent's socket. Who gets what:
- a supervisor (or admin) of the whole city: every call and agent event;
- a supervisor of a district, street or community (areas/scope.py): as an agent, since a frame
  carries no area, and a frame about an elder outside the subscriber's scope must not be sent;
- an agent: events of calls offered to / answered by their extension, their own agent state,
  and the number of callers waiting in each queue (`queue.waiting`).

Each socket has a bounded send queue: a console that falls too far behind is closed (code 1013)
and reconnects through the HTTP snapshot instead of growing memory without bound.

`queue.waiting` goes to every agent, so it is sent at most every WAITING_INTERVAL seconds per
queue, with the latest count: per change it was two frames per call to every connected agent,
most of a busy centre's websocket traffic.

Nothing may be lost silently (README, "Live events"):
- every event frame carries `seq` (1, 2, 3 … per `channel`, `calls` or `agents`, on each socket)
  and `epoch` (this hub, i.e. this web process's lifetime): a browser that sees a number missing,
  or another epoch, reloads its snapshot. (`queue.waiting` is not numbered: each carries the whole
  count and replaces the one before, so losing one loses nothing.);
- pub/sub keeps nothing for a subscriber that is away, so whenever the hub's subscription is
  (re)established every open socket gets `{"type": "resync", …}` and reloads its snapshot: the
  events published while the hub was cut off from Redis are gone;
- a subscription that answers nothing (a half-open connection) is found by PING and replaced.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from callcenter.calls.models import WAITING_STATES
from callcenter.realtime.events import AGENTS, CALLS, QueueWaiting, Resync, encode, event_channels

log = logging.getLogger(__name__)
SEND_QUEUE_LIMIT = 256
TOO_SLOW = 1013  # "try again later": the browser reconnects and reloads the snapshot
WAITING_INTERVAL = 0.25
IDLE_PING_SECONDS = 5.0  # a subscription silent this long is asked for a PONG, replaced when none comes as long again
RETRY_INITIAL, RETRY_MAX = 0.5, 5.0  # back-off between attempts to subscribe again
# Closing a Redis connection can wait forever for a socket that never finishes closing
# (redis/redis-py#3941: wait_closed inside disconnect); the hub gives it this long, and its stop
# twice as long, so a web process always stops (once seen: a test's app teardown hung 13 min).
CLOSE_SECONDS = 2.0

WaitingRows = list[tuple[str, str, str]]  # (queue, call_id, state) of the calls waiting now


class SubscriptionLost(ConnectionError):
    """Redis stopped answering on the pub/sub connection (no PONG)."""


@dataclass(eq=False)
class Subscriber:
    """One open websocket: who is behind it, what is waiting to be sent to it, and the number of
    the last frame of each channel sent to it."""

    user_id: int
    role: str
    extension: str | None
    city: bool = True  # the account's scope is the whole city
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(maxsize=SEND_QUEUE_LIMIT))
    overflowed: bool = False
    seq: dict[str, int] = field(default_factory=dict)

    @property
    def sees_everything(self) -> bool:
        return self.role in ("supervisor", "admin") and self.city

    def wants(self, event: dict) -> bool:
        if self.sees_everything:
            return True
        kind = event.get("type", "")
        if kind == "queue.waiting":
            return True
        if self.extension is None:
            return False
        # A call that rang here unanswered went back to the queue: this console must drop it.
        return event.get("agent") == self.extension or event.get("rang_agent") == self.extension

    def next_seq(self, channel: str) -> int:
        self.seq[channel] = self.seq.get(channel, 0) + 1
        return self.seq[channel]

    def offer(self, text: str) -> None:
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.overflowed = True


class Hub:
    def __init__(self, redis_url: str, *, events_prefix: str = "hotline", ping_seconds: float = IDLE_PING_SECONDS):
        self.redis_url = redis_url
        # a silent subscription is PINGed after this long, and replaced when no PONG comes as long again
        self.ping_seconds = ping_seconds
        self.channels = event_channels(events_prefix)
        self._stream_of = {self.channels.calls: CALLS, self.channels.agents: AGENTS}
        self.epoch = uuid.uuid4().hex[:12]  # tells this hub's frames from another process's
        self.subscribers: set[Subscriber] = set()
        self.waiting: dict[str, dict[str, str]] = {}  # queue → {call_id: state} of callers waiting
        self._waiting_changed: set[str] = set()  # queues whose count changed since it was last sent
        # How to read the waiting calls from the database again after a resync (the hub knows no
        # database: see set_waiting_loader); None: counts go on from what the hub has.
        self.waiting_loader: Callable[[], WaitingRows] | None = None
        self._replay: list[dict] | None = None  # events that arrive while the waiting calls are re-read
        self.subscriptions = 0  # times the subscription was (re)established (each followed by a resync)
        self.live = False  # subscribed now: events published from here on reach the sockets
        # One listening task per event loop: tests serve one app from several loops at once.
        self._tasks: dict[asyncio.AbstractEventLoop, list[asyncio.Task]] = {}

    async def start(self, waiting_calls: WaitingRows = ()) -> None:
        """Subscribe (in the background, retrying while Redis is down). `waiting_calls`:
        (queue, call_id, state) of calls waiting now, from the database."""
        self._set_waiting(waiting_calls)
        self._tasks[asyncio.get_running_loop()] = [asyncio.create_task(self._listen(), name="realtime-hub"),
                                                   asyncio.create_task(self._send_waiting(), name="realtime-waiting")]

    async def stop(self) -> None:
        tasks = self._tasks.pop(asyncio.get_running_loop(), [])
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=2 * CLOSE_SECONDS)
            if stuck:
                log.warning("realtime hub stopped with %d task(s) still closing their Redis connection", len(stuck))

    def add(self, subscriber: Subscriber) -> None:
        self.subscribers.add(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def waiting_counts(self) -> dict[str, int]:
        return {queue: len(calls) for queue, calls in self.waiting.items()}

    # --- the subscription ---------------------------------------------------------------------------

    async def _listen(self) -> None:
        """Follow the channels for as long as the hub runs: subscribe, read, and on any failure
        log it, wait (bounded back-off) and subscribe again."""
        delay = RETRY_INITIAL
        while True:
            # No retries inside redis-py: a lost connection surfaces here, where it is logged and
            # followed by a resync, instead of being re-subscribed silently.
            client = aioredis.from_url(self.redis_url, socket_connect_timeout=5, socket_timeout=self.ping_seconds,
                                       retry=Retry(NoBackoff(), 0))
            try:
                pubsub = client.pubsub()
                await pubsub.subscribe(*self.channels)
                delay = RETRY_INITIAL  # connected: the next outage starts its back-off afresh
                await self._follow(pubsub)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.live = False
                log.warning("realtime hub lost Redis (%s: %s); subscribing again in %.1f s", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
            finally:
                try:
                    await asyncio.wait_for(client.aclose(), CLOSE_SECONDS)
                except (RedisError, OSError, asyncio.TimeoutError):
                    pass  # broken already, or a close that never ends: nothing more to do cleanly

    async def _follow(self, pubsub) -> None:
        """Read the subscription; each time all channels are confirmed subscribed (the first
        time, and after any reconnection) every socket is told to resync. Raises
        SubscriptionLost when Redis stops answering."""
        confirmed: set[str] = set()
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged: float | None = None
        while True:
            message = await pubsub.get_message(timeout=1.0)
            now = loop.time()
            if message is not None:
                heard, pinged = now, None
                self._receive(message, confirmed)
            elif pinged is not None and now - pinged > self.ping_seconds:
                raise SubscriptionLost(f"no answer to PING in {self.ping_seconds:g} s")
            elif pinged is None and now - heard > self.ping_seconds:
                await pubsub.ping()
                pinged = now

    def _receive(self, message: dict, confirmed: set[str]) -> None:
        kind = message.get("type")
        channel = _text(message.get("channel"))
        if kind == "message":
            self.dispatch(message["data"], stream=self._stream_of.get(channel))
        elif kind == "subscribe":
            confirmed.add(channel)
            if confirmed >= set(self.channels):
                confirmed.clear()
                self._subscribed()

    def _subscribed(self) -> None:
        """The subscription is (again) in place: what was published while it was not is lost."""
        if self.subscriptions:
            log.warning("realtime hub subscribed to Redis again: telling %d socket(s) to reload their snapshot",
                        len(self.subscribers))
        else:
            log.info("realtime hub subscribed to %s", ", ".join(self.channels))
        self.subscriptions += 1
        self.live = True
        self.resync(reason="redis")
        if self.waiting_loader is not None:
            self._spawn(self.reload_waiting(), "realtime-waiting-reload")

    def set_waiting_loader(self, loader: Callable[[], WaitingRows]) -> None:
        """How to read the waiting calls from the database again after a resync (the web layer
        hands it over with its first socket); a resync that came before is caught up now."""
        if self.waiting_loader is not None:
            return
        self.waiting_loader = loader
        if self.subscriptions > 1:
            self._spawn(self.reload_waiting(), "realtime-waiting-reload")

    def resync(self, *, reason: str) -> None:
        """Tell every open socket to reload its snapshot."""
        text = encode(Resync(epoch=self.epoch, reason=reason))
        for subscriber in list(self.subscribers):
            subscriber.offer(text)

    def _spawn(self, coroutine, name: str) -> None:
        """A task stopped with the hub (`stop`), forgotten once done."""
        task = asyncio.create_task(coroutine, name=name)
        tasks = self._tasks.setdefault(asyncio.get_running_loop(), [])
        tasks.append(task)

        def forget(done: asyncio.Task) -> None:
            if done in tasks:
                tasks.remove(done)

        task.add_done_callback(forget)

    # --- events -------------------------------------------------------------------------------------

    def dispatch(self, data: bytes | str, *, stream: str | None = None) -> None:
        """Fan one published event out to the sockets that may see it. `stream`: the channel it
        came on (`calls` or `agents`); by default told by its type."""
        try:
            event = json.loads(data)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            log.warning("realtime hub ignored a message that is not a JSON object")
            return
        if self._replay is not None:
            self._replay.append(event)
        self._track_waiting(event)
        self._fan_out(event, stream or (AGENTS if event.get("type", "").startswith("agent.") else CALLS))

    def _fan_out(self, event: dict, stream: str | None) -> None:
        """Each socket gets the event numbered in its own sequence of `stream`: an agent sees only
        some events, and a gap must mean a frame lost, not one meant for someone else. No stream:
        not numbered."""
        plain = None
        for subscriber in list(self.subscribers):
            if not subscriber.wants(event):
                continue
            if stream is None:
                plain = plain or json.dumps(event, ensure_ascii=False)
                subscriber.offer(plain)
            else:
                frame = event | {"seq": subscriber.next_seq(stream), "channel": stream, "epoch": self.epoch}
                subscriber.offer(json.dumps(frame, ensure_ascii=False))

    def _track_waiting(self, event: dict) -> None:
        """Keep the per-queue count of waiting callers; note the queues whose count changed."""
        queue, call_id = event.get("queue"), event.get("call_id")
        if not queue or not call_id or not event.get("type", "").startswith("call."):
            return
        calls = self.waiting.setdefault(queue, {})
        before = len(calls)
        if event.get("state") in WAITING_STATES:
            calls[call_id] = event["state"]
        else:
            calls.pop(call_id, None)
        if len(calls) != before:
            self._waiting_changed.add(queue)

    def _set_waiting(self, rows: WaitingRows) -> None:
        self.waiting = {}
        for queue, call_id, state in rows:
            self.waiting.setdefault(queue, {})[call_id] = state

    async def reload_waiting(self) -> None:
        """Read the waiting calls from the database again (after a resync: calls that left a
        queue while the hub heard nothing would be counted for ever). Events arriving meanwhile
        are applied again on top, in order; every queue's count is sent anew."""
        self._replay = []
        try:
            rows = await asyncio.to_thread(self.waiting_loader)
        except Exception as exc:  # the database away: keep counting from what the hub has
            log.warning("realtime hub could not re-read the waiting calls (%s)", type(exc).__name__)
            return
        finally:
            replay, self._replay = self._replay, None
        before = set(self.waiting)
        self._set_waiting(rows)
        for event in replay:
            self._track_waiting(event)
        self._waiting_changed |= before | set(self.waiting)

    async def _send_waiting(self) -> None:
        while True:
            await asyncio.sleep(WAITING_INTERVAL)
            self.flush_waiting()

    def flush_waiting(self) -> None:
        """Send the latest `queue.waiting` count of each queue that changed."""
        changed, self._waiting_changed = self._waiting_changed, set()
        for queue in sorted(changed):
            self._fan_out(QueueWaiting(queue=queue, waiting=len(self.waiting.get(queue, {}))).model_dump(), None)


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
