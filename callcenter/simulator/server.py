"""A small AMI *server*: what Asterisk shows a manager client, over real TCP.

Banner, Login (with a clear error for a wrong secret), Ping, Logoff, event lists, and events
pushed to every logged-in session. The simulator builds its call traffic on it; the tests
replay the recorded traces through it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from callcenter.ami.protocol import FrameParser, Message

log = logging.getLogger(__name__)
BANNER = "Asterisk Call Manager/11.0.0"  # what Asterisk 22 announces
Pairs = list[tuple[str, object]]


def encode_message(pairs: Iterable[tuple[str, object]]) -> bytes:
    return ("".join(f"{key}: {'' if value is None else value}\r\n" for key, value in pairs) + "\r\n").encode("utf-8")


@dataclass
class Session:
    writer: asyncio.StreamWriter
    authenticated: bool = False
    events_on: bool = True
    username: str | None = None
    closed: bool = False
    tasks: list[asyncio.Task] = field(default_factory=list)

    def send(self, data: bytes) -> None:
        if not self.closed:
            self.writer.write(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()


class AMIServer:
    def __init__(self, *, username: str, secret: str, host: str = "127.0.0.1", port: int = 0):
        self.username, self.secret, self.host, self.requested_port = username, secret, host, port
        self.port: int | None = None
        self.sessions: list[Session] = []
        self.login_attempts = 0
        self.actions_seen: list[Message] = []
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.requested_port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        for session in list(self.sessions):
            session.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        await self._server.serve_forever()

    # --- sessions ---------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(writer=writer)
        writer.write(f"{BANNER}\r\n".encode())
        parser = FrameParser()
        parser._expect_banner = False  # clients send no banner
        try:
            while not session.closed:
                data = await reader.read(65536)
                if not data:
                    break
                for item in parser.feed(data):
                    if isinstance(item, Message):
                        await self._action(session, item)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for task in session.tasks:
                task.cancel()
            if session in self.sessions:
                self.sessions.remove(session)
            session.close()

    async def _action(self, session: Session, message: Message) -> None:
        name = (message.get("Action") or "").lower()
        action_id = message.action_id
        self.actions_seen.append(message)
        if name == "login":
            self.login_attempts += 1
            if message.get("Username") == self.username and secrets.compare_digest(message.get("Secret", ""), self.secret):
                session.authenticated, session.username = True, self.username
                session.events_on = (message.get("Events") or "on").lower() != "off"
                session.send(self.response(action_id, "Success", Message="Authentication accepted"))
                self.sessions.append(session)
                await self.on_login(session)
            else:
                session.send(self.response(action_id, "Error", Message="Authentication failed"))
            return
        if not session.authenticated:
            session.send(self.response(action_id, "Error", Message="Permission denied"))
            return
        if name == "ping":
            session.send(encode_message([("Response", "Success"), ("ActionID", action_id), ("Ping", "Pong"),
                                         ("Timestamp", f"{time.time():.6f}")]))
            return
        if name == "logoff":
            session.send(self.response(action_id, "Goodbye", Message="Thanks for all the fish."))
            await session.writer.drain()
            session.close()
            return
        await self.handle_action(session, name, message)

    # --- to override ------------------------------------------------------------------------

    async def on_login(self, session: Session) -> None:
        """Called after a successful login."""

    async def handle_action(self, session: Session, name: str, message: Message) -> None:
        session.send(self.response(message.action_id, "Error", Message="Invalid/unknown command"))

    # --- helpers ----------------------------------------------------------------------------

    @staticmethod
    def response(action_id: str | None, status: str, **fields) -> bytes:
        return encode_message([("Response", status), ("ActionID", action_id), *fields.items()])

    def send_list(self, session: Session, action_id: str | None, started: str, items: list[Pairs], complete_event: str) -> None:
        """An event list: `Response … EventList: start`, the items, then `…Complete`."""
        out = [encode_message([("Response", "Success"), ("ActionID", action_id), ("EventList", "start"), ("Message", started)])]
        for pairs in items:
            out.append(encode_message([pairs[0], ("ActionID", action_id), *pairs[1:]]))
        out.append(encode_message([("Event", complete_event), ("ActionID", action_id), ("EventList", "Complete"),
                                   ("ListItems", len(items))]))
        session.send(b"".join(out))

    def broadcast(self, data: bytes) -> None:
        """Send raw event bytes to every logged-in session that wants events."""
        for session in self.sessions:
            if session.events_on:
                session.send(data)
