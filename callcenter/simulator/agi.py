"""Asterisk's side of FastAGI, for the simulator (and the IVR tests): connect to the AGI server,
send the AGI environment, answer each command as Asterisk 22 does (fastagi-trace.txt), press the
keys the caller chooses, and report what the server set on the channel."""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass, field
from typing import Callable

# keys(prompt, escape_digits): the digit the caller presses at this chance (a prompt that takes
# keys, or a digit wait: prompt None), or None for no key.
KeyChooser = Callable[[str | None, str], str | None]


@dataclass
class AgiCall:
    """What Asterisk saw of one AGI session."""

    commands: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    played: list[str] = field(default_factory=list)
    closed_by_server: bool = False

    def count(self, prefix: str) -> int:
        return sum(1 for command in self.commands if command.startswith(prefix))


def keys_from(presses: list[str | None]) -> KeyChooser:
    """A caller who does what `presses` says at each chance in turn, then stays silent. A digit
    the prompt does not take is kept for the next digit wait."""
    queue = list(presses)

    def choose(prompt: str | None, escape: str) -> str | None:
        if not queue or (prompt is not None and queue[0] is not None and queue[0] not in escape):
            return None
        return queue.pop(0)

    return choose


async def run_session(host: str, port: int, env: dict[str, str], *, keys: KeyChooser, channel: dict[str, str] | None = None,
                      on_set: Callable[[str, str], None] | None = None, hangup_at: str | None = None,
                      silent_after: int | None = None, timeout: float = 30.0) -> AgiCall:
    """One AGI session, until the server closes it. `channel`: what GET VARIABLE finds;
    `on_set(name, value)`: called for each SET VARIABLE (the simulator emits VarSet);
    `hangup_at`: the caller hangs up when a command starting with this arrives (HANGUP, then 511
    as Asterisk answers on a dead channel); `silent_after`: stop answering after that many commands."""
    call, hung_up, channel = AgiCall(), False, dict(channel or {})
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write("".join(f"{name}: {value}\n" for name, value in env.items()).encode() + b"\n")
        await writer.drain()
        while True:
            line = await asyncio.wait_for(reader.readline(), timeout)
            if not line:
                call.closed_by_server = True
                return call
            command = line.decode().strip()
            call.commands.append(command)
            if silent_after is not None and len(call.commands) > silent_after:
                continue
            if hangup_at and command.startswith(hangup_at) and not hung_up:
                hung_up = True
                writer.write(b"HANGUP\n")
            if hung_up:
                writer.write(b"511 Command Not Permitted on a dead channel or intercepted by application\n")
            else:
                writer.write((reply(command, keys, call, channel, on_set) + "\n").encode())
            await writer.drain()
    finally:
        writer.close()


def reply(command: str, keys: KeyChooser, call: AgiCall, channel: dict[str, str],
          on_set: Callable[[str, str], None] | None) -> str:
    """Asterisk's reply line to one AGI command."""
    try:
        words = shlex.split(command)
    except ValueError:
        return "520 Invalid command syntax.  Proper usage not available."
    if not words:
        return "510 Invalid or unknown command"
    verb = " ".join(words[:2]).upper()
    if words[0].upper() == "ANSWER":
        return "200 result=0"
    if verb == "STREAM FILE" and len(words) >= 3:
        call.played.append(words[2])
        escape = words[3] if len(words) > 3 else ""
        digit = keys(words[2], escape) if escape else None
        return f"200 result={ord(digit)} endpos=8000" if digit else "200 result=0 endpos=24000"
    if verb == "WAIT FOR" and len(words) >= 4:
        digit = keys(None, "0123456789*#")
        return f"200 result={ord(digit)}" if digit else "200 result=0"
    if verb == "SET VARIABLE" and len(words) >= 4:
        call.variables[words[2]] = words[3]
        channel[words[2]] = words[3]
        if on_set is not None:
            on_set(words[2], words[3])
        return "200 result=1"
    if verb == "GET VARIABLE" and len(words) >= 3:
        value = channel.get(words[2])
        return f"200 result=1 ({value})" if value is not None else "200 result=0"
    if words[0].upper() == "VERBOSE":
        return "200 result=1"
    return "510 Invalid or unknown command"
