"""The realtime hub: Redis pub/sub → websockets, one hub per web process.

Every web process subscribes to the bridge's channels (`<events_prefix>:calls` and `:agents`) once
and fans the events out to its own sockets, so an event reaches an agent whichever process holds
the agent's socket. Who gets what:
- a supervisor (or admin): every call and agent event;
- an agent: events of calls offered to / answered by their extension, their own agent state,
  and the number of callers waiting in each queue (`queue.waiting`).

Each socket has a bounded send queue: a console that falls too far behind is closed (code 1013)
and reconnects through the HTTP snapshot instead of growing memory without bound.

`queue.waiting` goes to every agent, so it is sent at most every WAITING_INTERVAL seconds per
queue, with the latest count: per change it was two frames per call to every connected agent,
most of a busy centre's websocket traffic.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from callcenter.calls.models import WAITING_STATES
from callcenter.calls.service import event_channels

log = logging.getLogger(__name__)
SEND_QUEUE_LIMIT = 256
TOO_SLOW = 1013  # "try again later": the browser reconnects and reloads the snapshot
WAITING_INTERVAL = 0.25


@dataclass(eq=False)
class Subscriber:
    """One open websocket: who is behind it, and what is waiting to be sent to it."""

    user_id: int
    role: str
    extension: str | None
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(maxsize=SEND_QUEUE_LIMIT))
    overflowed: bool = False

    @property
    def sees_everything(self) -> bool:
        return self.role in ("supervisor", "admin")

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

    def offer(self, text: str) -> None:
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.overflowed = True


class Hub:
    def __init__(self, redis_url: str, *, events_prefix: str = "hotline"):
        self.redis_url = redis_url
        self.channels = event_channels(events_prefix)
        self.subscribers: set[Subscriber] = set()
        self.waiting: dict[str, dict[str, str]] = {}  # queue → {call_id: state} of callers waiting
        self._waiting_changed: set[str] = set()  # queues whose count changed since it was last sent
        # One listening task per event loop: tests serve one app from several loops at once.
        self._tasks: dict[asyncio.AbstractEventLoop, list[asyncio.Task]] = {}

    async def start(self, waiting_calls: list[tuple[str, str, str]] = ()) -> None:
        """Subscribe (in the background, retrying while Redis is down). `waiting_calls`:
        (queue, call_id, state) of calls waiting now, from the database."""
        self.waiting.clear()
        for queue, call_id, state in waiting_calls:
            self.waiting.setdefault(queue, {})[call_id] = state
        self._tasks[asyncio.get_running_loop()] = [asyncio.create_task(self._listen(), name="realtime-hub"),
                                                   asyncio.create_task(self._send_waiting(), name="realtime-waiting")]

    async def stop(self) -> None:
        tasks = self._tasks.pop(asyncio.get_running_loop(), [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def add(self, subscriber: Subscriber) -> None:
        self.subscribers.add(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def waiting_counts(self) -> dict[str, int]:
        return {queue: len(calls) for queue, calls in self.waiting.items()}

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            client = aioredis.from_url(self.redis_url)
            try:
                pubsub = client.pubsub()
                await pubsub.subscribe(*self.channels)
                delay = 0.5
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("realtime hub lost Redis (%s); retrying in %.1f s", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                await client.aclose()

    def dispatch(self, data: bytes | str) -> None:
        """Fan one published event out to the sockets that may see it."""
        try:
            event = json.loads(data)
        except ValueError:
            log.warning("realtime hub ignored a message that is not JSON")
            return
        text = data.decode() if isinstance(data, bytes) else data
        self._track_waiting(event)
        self._fan_out(event, text)

    def _fan_out(self, event: dict, text: str) -> None:
        for subscriber in list(self.subscribers):
            if subscriber.wants(event):
                subscriber.offer(text)

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

    async def _send_waiting(self) -> None:
        while True:
            await asyncio.sleep(WAITING_INTERVAL)
            self.flush_waiting()

    def flush_waiting(self) -> None:
        """Send the latest `queue.waiting` count of each queue that changed."""
        changed, self._waiting_changed = self._waiting_changed, set()
        for queue in sorted(changed):
            event = {"type": "queue.waiting", "queue": queue, "waiting": len(self.waiting.get(queue, {}))}
            self._fan_out(event, json.dumps(event, ensure_ascii=False))
