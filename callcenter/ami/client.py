"""An asyncio AMI client: login, actions correlated by ActionID, event lists, keep-alive pings,
reconnection with exponential backoff and jitter, and one ordered stream of events.

Why our own (DESIGN.md): the PyPI clients lose Chinese names split across reads, overwrite
repeated keys, never resolve some actions and never notice a half-open connection.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from callcenter.ami.protocol import BadFrame, FrameParser, Message, encode_action

log = logging.getLogger(__name__)

EventHandler = Callable[["Message | ActionResult"], Awaitable[None]]
ConnectHandler = Callable[["AMIClient"], Awaitable[None]]


class AMIError(Exception):
    pass


class AuthenticationFailed(AMIError):
    pass


class NotConnected(AMIError):
    pass


class ActionFailed(AMIError):
    def __init__(self, action: str, response: Message):
        super().__init__(f"{action} failed: {response.get('Message', response.response)}")
        self.response = response


@dataclass
class ActionResult:
    response: Message
    events: list[Message] = field(default_factory=list)
    action: str = ""

    @property
    def ok(self) -> bool:
        return (self.response.response or "").lower() in ("success", "follows", "goodbye")


@dataclass
class _Pending:
    action: str
    future: asyncio.Future
    events: list[Message] = field(default_factory=list)
    response: Message | None = None
    is_list: bool = False
    ordered: bool = False


class AMIClient:
    """Keeps one session to Asterisk alive and hands every event, in order, to `on_event`.

    `on_connect` runs after every successful login (the bridge takes its snapshot there).
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        on_event: EventHandler,
        on_connect: ConnectHandler | None = None,
        on_disconnect: Callable[[], Awaitable[None]] | None = None,
        ping_interval: float = 5.0,
        ping_timeout: float = 3.0,
        connect_timeout: float = 5.0,
        action_timeout: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ):
        self.host, self.port, self.username, self._secret = host, port, username, secret
        self.on_event, self.on_connect, self.on_disconnect = on_event, on_connect, on_disconnect
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.connect_timeout, self.action_timeout = connect_timeout, action_timeout
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self._ids = itertools.count(1)
        self._pending: dict[str, _Pending] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._events: asyncio.Queue[Message | ActionResult | None] = asyncio.Queue()
        self._stopping = False
        self.connected = asyncio.Event()
        self.banner: str | None = None
        self.sessions = 0  # successful logins so far
        self.bad_frames = 0
        self.last_error: str | None = None

    # --- life cycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, and reconnect after any failure, until `stop()`."""
        consumer = asyncio.create_task(self._consume(), name="ami-events")
        attempt = 0
        try:
            while not self._stopping:
                try:
                    await self._session()
                    attempt = 0  # the session was up: start the backoff over
                except AuthenticationFailed as exc:
                    self.last_error = str(exc)
                    log.error("AMI login to %s:%s refused: %s", self.host, self.port, exc)
                except (OSError, asyncio.TimeoutError, AMIError, asyncio.IncompleteReadError) as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("AMI connection to %s:%s failed: %s", self.host, self.port, self.last_error)
                if self._stopping:
                    break
                delay = min(self.backoff_max, self.backoff_initial * 2**attempt) * random.uniform(0.5, 1.0)
                attempt += 1
                log.info("AMI reconnecting in %.1f s", delay)
                await asyncio.sleep(delay)
        finally:
            await self._events.put(None)
            await consumer

    def stop(self) -> None:
        self._stopping = True
        if self._writer is not None:
            self._writer.close()

    async def _session(self) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.connect_timeout)
        self._writer = writer
        parser = FrameParser()
        reading = asyncio.create_task(self._read(reader, parser), name="ami-read")
        pinging: asyncio.Task | None = None
        try:
            await self._login()
            self.banner = parser.banner
            self.sessions += 1
            self.connected.set()
            log.info("AMI connected to %s:%s (%s)", self.host, self.port, self.banner)
            pinging = asyncio.create_task(self._ping_loop(), name="ami-ping")
            if self.on_connect is not None:
                await self.on_connect(self)
            await reading  # until the connection ends
        finally:
            self.connected.clear()
            for task in (pinging, reading):
                if task is not None and not task.done():
                    task.cancel()
            writer.close()
            self._writer = None
            self._fail_pending(NotConnected("AMI connection closed"))
            if self.on_disconnect is not None and self.sessions:
                await self.on_disconnect()
        if not self._stopping:
            raise AMIError("connection closed by peer")

    async def _login(self) -> None:
        try:
            await self.action("Login", {"Username": self.username, "Secret": self._secret, "Events": "on"})
        except ActionFailed as exc:
            raise AuthenticationFailed(f"user {self.username!r}: {exc.response.get('Message', 'refused')}") from None

    async def _ping_loop(self) -> None:
        """A session whose peer stops answering is dead even if TCP says otherwise."""
        while True:
            await asyncio.sleep(self.ping_interval)
            try:
                await self.action("Ping", timeout=self.ping_timeout)
            except (asyncio.TimeoutError, AMIError):
                log.warning("AMI peer did not answer Ping within %.1f s: reconnecting", self.ping_timeout)
                if self._writer is not None:
                    self._writer.close()
                    self._writer.transport.abort()
                return

    # --- reading ----------------------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader, parser: FrameParser) -> None:
        """Read until the connection ends; then every action still waiting fails at once (an
        `on_connect` snapshot waiting for its answer would otherwise wait for ever, and with it
        the reconnect and `stop`)."""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                for item in parser.feed(data):
                    if isinstance(item, BadFrame):
                        self.bad_frames += 1
                        log.warning("AMI frame skipped (%s, %d bytes): %s", item.reason, item.size, item.preview)
                        continue
                    self._dispatch(item)
        finally:
            self._fail_pending(NotConnected("AMI connection closed"))

    def _dispatch(self, message: Message) -> None:
        action_id = message.action_id
        pending = self._pending.get(action_id) if action_id else None
        if pending is None:
            if message.event is not None:
                self._events.put_nowait(message)
            return
        if message.response is not None and pending.response is None:
            pending.response = message
            pending.is_list = (message.get("EventList") or "").lower() == "start"
            if not pending.is_list:
                self._resolve(action_id, pending)
            return
        if message.event is not None:
            if (message.get("EventList") or "").lower() == "complete" or message.event.endswith("Complete"):
                self._resolve(action_id, pending)
            else:
                pending.events.append(message)

    def _resolve(self, action_id: str, pending: _Pending) -> None:
        self._pending.pop(action_id, None)
        if pending.future.done():
            return
        result = ActionResult(response=pending.response, events=pending.events, action=pending.action)
        if result.ok:
            pending.future.set_result(result)
            if pending.ordered:  # also into the event stream, where it happened
                self._events.put_nowait(result)
        else:
            pending.future.set_exception(ActionFailed(pending.action, pending.response))

    def _fail_pending(self, exc: Exception) -> None:
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(exc)
        self._pending.clear()

    async def _consume(self) -> None:
        """The one ordered consumer: events reach `on_event` one at a time, in arrival order
        (with the results of `ordered` actions at the point where they completed)."""
        while True:
            message = await self._events.get()
            if message is None:
                return
            try:
                await self.on_event(message)
            except Exception:  # one bad event must not stop the stream
                log.exception("AMI event handler failed on %s", message.event)

    # --- actions ----------------------------------------------------------------------------

    async def action(self, name: str, fields: dict | list | None = None, *, timeout: float | None = None,
                     ordered: bool = False) -> ActionResult:
        """Send an action and wait for its response (and its event list, if it has one).

        `ordered`: the result is also handed to `on_event`, between the events that arrived
        before and after it, so a snapshot is applied exactly where it was taken."""
        if self._writer is None:
            raise NotConnected("not connected to Asterisk")
        action_id = f"cc-{next(self._ids)}"
        pairs = list(fields.items()) if isinstance(fields, dict) else list(fields or [])
        future = asyncio.get_running_loop().create_future()
        self._pending[action_id] = _Pending(action=name, future=future, ordered=ordered)
        try:
            self._writer.write(encode_action(name, [("ActionID", action_id), *pairs]))
            await self._writer.drain()
            return await asyncio.wait_for(future, timeout or self.action_timeout)
        finally:
            self._pending.pop(action_id, None)

    async def originate(self, *, channel: str, context: str | None = None, exten: str | None = None, priority: int = 1,
                        application: str | None = None, data: str | None = None, caller_id: str | None = None,
                        variables: dict[str, str] | None = None, timeout_ms: int = 30000) -> ActionResult:
        """Place a call asynchronously (Async: true); its fate arrives as OriginateResponse."""
        pairs = [("Channel", channel), ("Context", context), ("Exten", exten), ("Priority", priority if context else None),
                 ("Application", application), ("Data", data), ("CallerID", caller_id), ("Timeout", timeout_ms), ("Async", "true")]
        pairs += [("Variable", f"{key}={value}") for key, value in (variables or {}).items()]
        return await self.action("Originate", [(k, v) for k, v in pairs if v is not None])

    async def hangup(self, channel: str, cause: int = 16) -> ActionResult:
        return await self.action("Hangup", {"Channel": channel, "Cause": cause})

    async def redirect(self, channel: str, context: str, exten: str, priority: int = 1) -> ActionResult:
        """Transfer: send `channel` to context/exten."""
        return await self.action("Redirect", {"Channel": channel, "Context": context, "Exten": exten, "Priority": priority})

    async def queue_add(self, queue: str, interface: str, *, member_name: str | None = None, penalty: int = 0,
                        paused: bool = False, state_interface: str | None = None) -> ActionResult:
        return await self.action("QueueAdd", {"Queue": queue, "Interface": interface, "MemberName": member_name,
                                              "Penalty": penalty, "Paused": str(paused).lower(), "StateInterface": state_interface})

    async def queue_remove(self, queue: str, interface: str) -> ActionResult:
        return await self.action("QueueRemove", {"Queue": queue, "Interface": interface})

    async def queue_pause(self, interface: str, paused: bool, *, queue: str | None = None, reason: str | None = None) -> ActionResult:
        return await self.action("QueuePause", {"Interface": interface, "Paused": str(paused).lower(), "Queue": queue,
                                                "Reason": reason})

    async def queue_status(self, queue: str | None = None, *, ordered: bool = False) -> ActionResult:
        return await self.action("QueueStatus", {"Queue": queue}, ordered=ordered)

    async def queue_summary(self, queue: str | None = None) -> ActionResult:
        return await self.action("QueueSummary", {"Queue": queue})

    async def core_show_channels(self, *, ordered: bool = False) -> ActionResult:
        return await self.action("CoreShowChannels", ordered=ordered)

    async def bridge_list(self) -> ActionResult:
        return await self.action("BridgeList")

    async def queue_change_priority_caller(self, queue: str, caller: str, priority: int) -> ActionResult:
        return await self.action("QueueChangePriorityCaller", {"Queue": queue, "Caller": caller, "Priority": priority})
