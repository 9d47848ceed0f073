"""Test double of Asterisk over real TCP: replays recorded traces (tests/../shared/ami-traces)
through `callcenter.simulator.server.AMIServer`, in chosen chunk sizes, with injected junk,
dropped connections and silent (half-open) peers."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from callcenter.ami.protocol import FrameParser, Message
from callcenter.simulator.server import AMIServer, Session, encode_message

# Copied from ../shared/ami-traces (raw bytes of a real Asterisk 22.10.1), so a clone is self-contained.
TRACES = Path(__file__).resolve().parents[1] / "fixtures" / "ami-traces"
USER, SECRET = "bridge", "s3cret-for-tests"


def trace_events(name: str) -> list[bytes]:
    """The events of a trace as raw message bytes (terminator included), without the original
    session's responses and list results (they answered the recording client's actions)."""
    raw = (TRACES / f"ami-trace-{name}.txt").read_bytes()
    parser = FrameParser()
    out = []
    for chunk, message in zip(_raw_messages(raw), parser.feed(raw)):
        if isinstance(message, Message) and message.event and not message.action_id:
            out.append(chunk)
    return out


def _raw_messages(raw: bytes) -> list[bytes]:
    body = raw[raw.index(b"\r\n") + 2:]  # after the banner
    return [part + b"\r\n\r\n" for part in body.split(b"\r\n\r\n") if part.strip()]


SNAPSHOT_WAIT_SECONDS = 30.0  # every client here is a bridge, which takes one


class FakeAsterisk(AMIServer):
    def __init__(self, scripts: list[list[bytes]] | None = None, *, chunk=None, answer_pings: bool = True,
                 answer_snapshots: bool = True, secret: str = SECRET, drop_after: dict[int, int] | None = None):
        super().__init__(username=USER, secret=secret)
        self.scripts = scripts or []  # events to send on the 1st, 2nd … session
        self.chunk = chunk  # callable(bytes) -> list[bytes]; None: one write per message
        self.answer_pings = answer_pings
        self.answer_snapshots = answer_snapshots  # False: QueueStatus and CoreShowChannels go unanswered
        self.drop_after = drop_after or {}  # session index -> close after that many messages
        # What QueueStatus / CoreShowChannels answer, per session index (default: the last set).
        self.snapshots: dict[int, dict[str, list]] = {}
        self.logins = 0
        self.script_done = asyncio.Event()

    async def on_login(self, session: Session) -> None:
        index = self.logins
        self.logins += 1
        session.index = index
        session.snapshot_taken = asyncio.Event()
        script = self.scripts[index] if index < len(self.scripts) else []
        session.tasks.append(asyncio.create_task(self._play(session, script, self.drop_after.get(index))))

    async def _play(self, session: Session, script: list[bytes], drop_after: int | None) -> None:
        # The client takes its snapshot first (as the bridge does after every login): the fake's
        # snapshot is fixed, so events played before it was taken would contradict it, which a
        # real Asterisk never does. A client that takes none gets the events after a while.
        try:
            await asyncio.wait_for(session.snapshot_taken.wait(), SNAPSHOT_WAIT_SECONDS)
        except asyncio.TimeoutError:
            pass
        for count, message in enumerate(script + [None]):
            if drop_after is not None and count == drop_after:
                await asyncio.sleep(0.1)  # what was sent has arrived; then the link goes
                session.close()
                return
            if message is None:
                break
            for piece in (self.chunk(message) if self.chunk else [message]):
                session.send(piece)
                await session.writer.drain()
        self.script_done.set()

    async def _action(self, session, message):
        if (message.get("Action") or "").lower() == "ping" and not self.answer_pings:
            return  # a half-open peer: TCP up, nobody answering
        await super()._action(session, message)

    def set_snapshot(self, session_index: int, *, channels=(), members=(), entries=()) -> None:
        self.snapshots[session_index] = {"channels": list(channels), "members": list(members), "entries": list(entries)}

    async def handle_action(self, session: Session, name: str, message: Message) -> None:
        action_id = message.action_id
        snapshot = self.snapshots.get(getattr(session, "index", 0), {"channels": [], "members": [], "entries": []})
        if name in ("queuestatus", "coreshowchannels") and not self.answer_snapshots:
            return
        if name == "queuestatus":
            items = [[("Event", "QueueParams"), ("Queue", "hotline")]] + snapshot["members"] + snapshot["entries"]
            self.send_list(session, action_id, "Queue status will follow", items, "QueueStatusComplete")
        elif name == "coreshowchannels":
            self.send_list(session, action_id, "Channels will follow", snapshot["channels"], "CoreShowChannelsComplete")
            session.snapshot_taken.set()  # the bridge's last snapshot action
        elif name == "bridgelist":
            self.send_list(session, action_id, "Bridge listing will follow", [], "BridgeListComplete")
        else:
            await super().handle_action(session, name, message)


def random_chunks(seed: int, largest: int = 64):
    rng = random.Random(seed)

    def cut(data: bytes) -> list[bytes]:
        pieces, i = [], 0
        while i < len(data):
            size = rng.randint(1, largest)
            pieces.append(data[i:i + size])
            i += size
        return pieces

    return cut


def channel_row(uniqueid: str, linkedid: str, context: str = "from-elders", number: str = "13800138000", duration: str = "00:00:07",
                bridge: str = "") -> list[tuple[str, object]]:
    return [("Event", "CoreShowChannel"), ("Channel", f"Local/12349@{context}-00000000;2"), ("ChannelState", 6),
            ("CallerIDNum", number), ("CallerIDName", "Elder"), ("Context", context), ("Uniqueid", uniqueid),
            ("Linkedid", linkedid), ("Duration", duration), ("BridgeId", bridge)]


__all__ = ["FakeAsterisk", "trace_events", "random_chunks", "channel_row", "encode_message", "USER", "SECRET"]
