"""FastAGI: Asterisk's AGI over TCP (`AGI(agi://host:4573/ivr)`), our own small asyncio module.

A session: Asterisk connects and sends the AGI environment, `agi_<name>: <value>` lines ended by
an empty line; then every command we write (one line) gets one reply line,
`200 result=<n> [(<data>)] [endpos=<n>]`. Other codes: `510` invalid command, `511` the channel
is dead, `520` usage error (several `520-` lines ending with `520 End of proper usage.`). When
the caller hangs up Asterisk also writes `HANGUP` on its own line (AGISIGHUP, on by default), and
it closes the socket when the dialplan takes the channel back.

A hang-up at any point (HANGUP, 511, a closed socket) raises `AgiHangup`, a peer silent for too
long raises `AgiTimeout`: the script stops where it is and the server closes the session. One
coroutine per call, so the server serves as many calls at once as the event loop can hold.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Mapping
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

ENV_TIMEOUT = 5.0  # seconds Asterisk has to send the environment
REPLY_TIMEOUT = 10.0  # seconds a plain command may take; playback and digit waits add their own
MAX_LINE = 8192
_REPLY = re.compile(r"^(\d{3})[ -](.*)$")
_RESULT = re.compile(r"^result=(-?\d+)(?:\s+\((.*)\))?(?:\s+endpos=\d+)?\s*$")


class AgiError(Exception):
    """The session cannot go on."""


class AgiHangup(AgiError):
    """The caller hung up (HANGUP, 511) or Asterisk closed the socket."""


class AgiTimeout(AgiError):
    """Asterisk sent nothing for too long."""


class AgiCommandError(AgiError):
    """Asterisk refused a command (510 invalid command, 520 usage): a bug on our side."""


@dataclass(frozen=True)
class Reply:
    code: int
    result: int
    data: str | None
    line: str

    @property
    def digit(self) -> str | None:
        """The key pressed, for WAIT FOR DIGIT and STREAM FILE (result is its ASCII code, 0: none)."""
        return chr(self.result) if self.result > 0 else None


def parse_reply(line: str) -> Reply:
    """`200 result=1 (Local/8001@agents)` → Reply(200, 1, 'Local/8001@agents')."""
    match = _REPLY.match(line)
    if not match:
        raise AgiCommandError(f"not an AGI reply: {line[:80]!r}")
    code, rest = int(match.group(1)), match.group(2)
    if code == 511:
        raise AgiHangup(rest)
    if code != 200:
        raise AgiCommandError(f"{code} {rest}")
    result = _RESULT.match(rest)
    if not result:
        raise AgiCommandError(f"unreadable result: {rest[:80]!r}")
    return Reply(code, int(result.group(1)), result.group(2), line)


def quote(value: str) -> str:
    """One AGI argument: in double quotes, with quotes and backslashes escaped and line breaks
    dropped (a newline would end the command and start another one)."""
    flat = " ".join(str(value).splitlines())
    return '"' + flat.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class AgiSession:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    env: dict[str, str] = field(default_factory=dict)
    reply_timeout: float = REPLY_TIMEOUT
    hung_up: bool = False

    @property
    def script(self) -> str:
        """The script asked for: `ivr` from `agi://host:4573/ivr?x=y`."""
        request = self.env.get("agi_network_script") or urlsplit(self.env.get("agi_request", "")).path
        return request.split("?", 1)[0].strip("/")

    @property
    def caller_number(self) -> str | None:
        value = (self.env.get("agi_callerid") or "").strip()
        return None if value in ("", "unknown", "anonymous") else value

    @property
    def uniqueid(self) -> str:
        return self.env.get("agi_uniqueid", "")

    async def read_environment(self, timeout: float = ENV_TIMEOUT) -> None:
        while True:
            line = await self._read_line(timeout)
            if line == "":
                return
            name, sep, value = line.partition(":")
            if not sep:
                raise AgiCommandError(f"not an AGI environment line: {line[:80]!r}")
            self.env[name.strip()] = value.strip()

    async def command(self, *words: str, timeout: float = 0.0) -> Reply:
        """Send one command and read its reply (`timeout` seconds on top of the usual wait, for
        commands that last: playback, digit waits)."""
        if self.hung_up:
            raise AgiHangup("caller already gone")
        self.writer.write((" ".join(words) + "\n").encode())
        try:
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            raise AgiHangup(f"socket closed ({type(exc).__name__})") from exc
        while True:
            line = await self._read_line(self.reply_timeout + timeout)
            if line == "HANGUP":  # the caller left; Asterisk still answers the pending command
                self.hung_up = True
                raise AgiHangup("HANGUP")
            if line.startswith("520-"):  # multi-line usage error: read to its last line
                continue
            return parse_reply(line)

    async def _read_line(self, timeout: float) -> str:
        try:
            raw = await asyncio.wait_for(self.reader.readline(), timeout)
        except asyncio.TimeoutError as exc:
            raise AgiTimeout(f"nothing from Asterisk for {timeout:g} s") from exc
        except (ConnectionError, OSError, ValueError) as exc:
            raise AgiHangup(f"socket closed ({type(exc).__name__})") from exc
        if not raw:
            raise AgiHangup("socket closed")
        if len(raw) > MAX_LINE:
            raise AgiCommandError("line too long")
        return raw.decode("utf-8", errors="replace").rstrip("\r\n")

    # --- the commands the scripts use ----------------------------------------------------------

    async def answer(self) -> None:
        await self.command("ANSWER")

    async def stream_file(self, name: str, escape_digits: str = "", *, max_seconds: float = 60.0) -> str | None:
        """Play a prompt; a key in `escape_digits` cuts it short and is returned."""
        reply = await self.command("STREAM FILE", name, quote(escape_digits), timeout=max_seconds)
        if reply.result < 0:
            log.warning("AGI could not play %s", name)
            return None
        return reply.digit

    async def wait_for_digit(self, milliseconds: int) -> str | None:
        reply = await self.command("WAIT FOR DIGIT", str(int(milliseconds)), timeout=milliseconds / 1000)
        return reply.digit if reply.result > 0 else None

    async def set_variable(self, name: str, value: str | int) -> None:
        await self.command("SET VARIABLE", name, quote(str(value)))

    async def get_variable(self, name: str) -> str | None:
        reply = await self.command("GET VARIABLE", name)
        return reply.data if reply.result == 1 else None

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.command("VERBOSE", quote(message), str(level))


Handler = Callable[[AgiSession], Awaitable[None]]


class AgiServer:
    """Serves scripts by path (`agi://host:4573/<script>`) over TCP, one task per call."""

    def __init__(self, handlers: Mapping[str, Handler], *, host: str = "127.0.0.1", port: int = 4573,
                 env_timeout: float = ENV_TIMEOUT, reply_timeout: float = REPLY_TIMEOUT):
        self.handlers = dict(handlers)
        self.host, self._port = host, port
        self.env_timeout, self.reply_timeout = env_timeout, reply_timeout
        self.active = 0
        self.served = 0
        self._server: asyncio.base_events.Server | None = None

    @property
    def port(self) -> int:
        if self._server is not None and self._server.sockets:
            return self._server.sockets[0].getsockname()[1]
        return self._port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self._port, limit=MAX_LINE * 2)

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        async with self._server:
            await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = AgiSession(reader, writer, reply_timeout=self.reply_timeout)
        self.active += 1
        try:
            await session.read_environment(self.env_timeout)
            handler = self.handlers.get(session.script)
            if handler is None:
                log.warning("AGI script %r is not served here (serving %s)", session.script, ", ".join(self.handlers))
                await session.verbose(f"12349: no AGI script {session.script!r}")
                return
            await handler(session)
        except AgiHangup as exc:
            log.info("AGI %s: caller hung up (%s)", session.script or "?", exc)
        except AgiTimeout as exc:
            log.warning("AGI %s: %s", session.script or "?", exc)
        except AgiCommandError as exc:
            log.error("AGI %s: Asterisk refused a command: %s", session.script or "?", exc)
        except Exception:
            log.exception("AGI %s failed", session.script or "?")
        finally:
            self.active -= 1
            self.served += 1
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass
