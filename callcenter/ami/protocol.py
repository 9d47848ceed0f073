"""The AMI wire format: messages of `Key: Value` lines ended by an empty line, CRLF line ends.

`FrameParser` turns bytes, in reads of any size, into `Message`s. It splits on the empty line in
*bytes* and decodes each whole message, so a multi-byte UTF-8 character split across two TCP
reads survives. A message that cannot be decoded or parsed becomes a `BadFrame` (reported, then
skipped): the messages after it are still delivered, in order.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_MESSAGE_BYTES = 256 * 1024  # Asterisk's largest real messages are a few KB
_TERMINATOR = b"\r\n\r\n"


class Message:
    """One AMI message: its fields in order; a key may repeat (`ChanVariable`, `Variable`)."""

    __slots__ = ("fields", "_first", "raw")

    def __init__(self, fields: list, raw: str | None = None):
        self.fields = fields  # [key, value] pairs, in order
        self._first: dict[str, str] | None = None  # built on first look-up
        self.raw = raw if raw is not None else "\r\n".join(f"{k}: {v}" for k, v in fields)

    @property
    def first(self) -> dict[str, str]:
        """key → first value (a repeated key keeps its first value)."""
        if self._first is None:
            self._first = dict(reversed(self.fields))
        return self._first

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first value of `key`."""
        return self.first.get(key, default)

    def __getitem__(self, key: str) -> str:
        return self.first[key]

    def __contains__(self, key: str) -> bool:
        return key in self.first

    def getall(self, key: str) -> list[str]:
        return [value for k, value in self.fields if k == key]

    @property
    def event(self) -> str | None:
        return self.first.get("Event")

    @property
    def response(self) -> str | None:
        return self.first.get("Response")

    @property
    def action_id(self) -> str | None:
        return self.first.get("ActionID")

    def as_dict(self) -> dict[str, str]:
        return dict(self.first)

    def __repr__(self) -> str:
        kind = f"Event={self.event}" if self.event else f"Response={self.response}"
        return f"<Message {kind} {len(self.fields)} fields>"


@dataclass(frozen=True)
class BadFrame:
    """A message that was skipped, and why (for the log; never raised)."""

    reason: str
    size: int
    preview: str


def encode_action(action: str, fields: dict | list[tuple[str, str]]) -> bytes:
    """An action as bytes. A list of pairs may repeat keys (`Variable` on Originate)."""
    pairs = fields.items() if isinstance(fields, dict) else fields
    lines = [f"Action: {action}"]
    for key, value in pairs:
        if value is None:
            continue
        text = str(value)
        if "\r" in text or "\n" in text:
            raise ValueError(f"AMI field {key} must not contain a line break")
        lines.append(f"{key}: {text}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


class FrameParser:
    """Bytes in, messages out. Feed it whatever the socket gives."""

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES):
        self._buffer = bytearray()
        self._max = max_message_bytes
        self._discarding = False  # inside an oversized message, skipping to its end
        self.banner: str | None = None
        self._expect_banner = True

    def feed(self, data: bytes) -> list[Message | BadFrame]:
        self._buffer += data
        return self._drain()

    def _drain(self) -> list[Message | BadFrame]:
        buffer = self._buffer
        out: list[Message | BadFrame] = []
        if self._expect_banner:
            end = buffer.find(b"\r\n")
            if end < 0:
                return out
            self.banner = bytes(buffer[:end]).decode("utf-8", "replace")
            del buffer[: end + 2]
            self._expect_banner = False
        *complete, rest = bytes(buffer).split(_TERMINATOR)
        buffer[:] = rest
        if self._discarding and complete:
            complete[0] = b""  # the end of an oversized message
            self._discarding = False
        out += [parse_message(chunk) for chunk in complete if chunk and not chunk.isspace()]
        if len(buffer) > self._max:
            # No end in sight: drop what we hold and skip to the end of this message (reported once).
            if not self._discarding:
                out.append(BadFrame("message longer than %d bytes" % self._max, len(buffer), _preview(bytes(buffer[:80]))))
            keep = buffer[-3:]  # a terminator may straddle the cut
            buffer.clear()
            buffer += keep
            self._discarding = True
        return out


def parse_message(chunk: bytes) -> Message | BadFrame:
    """One message (without its terminating empty line) from bytes."""
    text = decode(chunk)
    fields = [line.split(": ", 1) for line in text.split("\r\n")]
    if min(map(len, fields)) < 2:  # rare: `Key:` with nothing after it, or no colon at all
        lines = text.split("\r\n")
        fields = [_slow_field(line) for line in lines]
        bad = next((line for line, found in zip(lines, fields) if found is None), None)
        if bad is not None:
            return BadFrame("line without 'Key: value'", len(chunk), _preview(bad.encode("utf-8", "replace")))
    return Message(fields, text)


def decode(chunk: bytes) -> str:
    """UTF-8, as Asterisk sends; a caller name from an old trunk in GBK (GB 18030 covers it) is
    read as such; anything else gets replacement characters. Never a dropped event: a Hangup
    whose caller name is not UTF-8 is still a hang-up."""
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return chunk.decode("gb18030")
    except UnicodeDecodeError:
        return chunk.decode("utf-8", "replace")


def _slow_field(line: str) -> list[str] | None:
    key, sep, value = line.partition(":")
    if not sep or not key or key != key.strip():
        return None
    return [key, value[1:] if value.startswith(" ") else value]


def _preview(raw: bytes) -> str:
    return raw[:60].decode("utf-8", "replace").encode("unicode_escape").decode("ascii")
