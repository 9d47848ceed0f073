"""The carrier beyond the trunk, for the calls the hotline places (callbacks, care calls): a small
UDP SIP user agent server at the trunk's contact (`sip:<TRUNK_ADDRESS>`, a loopback address of
the run's own, port 5060) that answers each INVITE by the dialled number's last digit, the simulator's rule
(`callcenter.simulator.traffic.far_end_status`):

- BUSY: 486 Busy Here (ACKed by Asterisk);
- NOANSWER: 180 Ringing and nothing more, until Asterisk gives up (the outbound Dial's timeout,
  OUTBOUND_RING_SECONDS) and CANCELs: 200 OK to the CANCEL, 487 to the INVITE;
- CONGESTION: 503 Service Unavailable;
- ANSWER: 180 Ringing, then 200 OK with an audio answer (PCMU/PCMA), the ACK, and a BYE from
  either side: `hang_up(number)` is the elder putting the phone down.

OPTIONS (the trunk's qualify) get 200 OK. Every request is answered to the address it came from.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from dataclasses import dataclass, field

from callcenter.simulator.traffic import far_end_status

ANSWER_AFTER_SECONDS = 0.5  # ringing before the elder picks up


@dataclass
class Dialog:
    number: str
    invite: dict  # the INVITE's headers (lower-case names → list of values)
    source: tuple[str, int]
    tag: str
    status: str = "ringing"  # ringing | answered | busy | cancelled | failed | ended
    ended_by: str | None = None  # carrier | pbx
    cseq: int = 0
    answered_at: float | None = None
    history: list[str] = field(default_factory=list)  # what each side sent, in order


class Carrier:
    def __init__(self, address: str, port: int = 5060):
        self.address, self.port = address, port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((address, port))
        except OSError as exc:
            self.sock.close()
            raise AssertionError(f"the fake carrier cannot listen on {address}:{port} ({exc}): another run's carrier?") from exc
        self.sock.settimeout(0.2)
        self.dialogs: dict[str, Dialog] = {}  # Call-ID → dialog
        self.options = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._timers: list[threading.Timer] = []
        self._thread = threading.Thread(target=self._serve, name="fake-carrier", daemon=True)
        self._thread.start()

    # --- what tests use -------------------------------------------------------------------------

    def dialog(self, number: str) -> Dialog | None:
        """The latest call to `number`."""
        with self._lock:
            found = [d for d in self.dialogs.values() if d.number == number]
        return found[-1] if found else None

    def hang_up(self, number: str) -> None:
        """The elder called at `number` puts the phone down (a BYE in the answered dialog)."""
        dialog = self.dialog(number)
        assert dialog is not None and dialog.status == "answered", f"no answered call to {number}: {dialog}"
        invite = dialog.invite
        dialog.cseq += 1
        target = _uri(invite["contact"][0]) if invite.get("contact") else f"sip:{dialog.source[0]}:{dialog.source[1]}"
        lines = [f"BYE {target} SIP/2.0",
                 f"Via: SIP/2.0/UDP {self.address}:{self.port};branch=z9hG4bK{random.getrandbits(48):x};rport",
                 "Max-Forwards: 70", f"From: {invite['to'][0]};tag={dialog.tag}", f"To: {invite['from'][0]}",
                 f"Call-ID: {invite['call-id'][0]}", f"CSeq: {dialog.cseq} BYE", "Content-Length: 0"]
        dialog.status, dialog.ended_by = "ended", "carrier"
        dialog.history.append("> BYE")
        self._send("\r\n".join(lines) + "\r\n\r\n", dialog.source)

    def close(self) -> None:
        self._stop.set()
        for timer in self._timers:
            timer.cancel()
        self._thread.join(5)
        self.sock.close()

    # --- the server -----------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self._handle(data.decode("utf-8", errors="replace"), source)
            except Exception as exc:  # noqa: BLE001  (a test helper: say what it could not take, keep serving)
                print(f"fake carrier: could not handle a message from {source}: {exc!r}")

    def _handle(self, text: str, source: tuple[str, int]) -> None:
        head, _, body = text.partition("\r\n\r\n")
        start, *header_lines = head.split("\r\n")
        headers: dict[str, list[str]] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers.setdefault(_long_name(name.strip().lower()), []).append(value.strip())
        if start.startswith("SIP/2.0 "):
            return  # a response to our BYE
        method = start.split(" ", 1)[0]
        call_id = headers.get("call-id", [""])[0]
        if method == "OPTIONS":
            self.options += 1
            self._respond(headers, source, "200 OK", extra=["Accept: application/sdp", "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS"])
        elif method == "INVITE":
            self._invite(start, headers, source)
        elif method == "ACK":
            dialog = self.dialogs.get(call_id)
            if dialog is not None:
                dialog.history.append("< ACK")
        elif method == "CANCEL":
            dialog = self.dialogs.get(call_id)
            self._respond(headers, source, "200 OK")
            if dialog is not None and dialog.status == "ringing":
                dialog.status = "cancelled"
                dialog.history.append("< CANCEL")
                self._respond(dialog.invite, source, "487 Request Terminated", tag=dialog.tag)
        elif method == "BYE":
            dialog = self.dialogs.get(call_id)
            self._respond(headers, source, "200 OK")
            if dialog is not None:
                dialog.status, dialog.ended_by = "ended", dialog.ended_by or "pbx"
                dialog.history.append("< BYE")
        else:
            self._respond(headers, source, "405 Method Not Allowed")

    def _invite(self, start: str, headers: dict, source: tuple[str, int]) -> None:
        call_id = headers["call-id"][0]
        existing = self.dialogs.get(call_id)
        if existing is not None:  # a retransmission: say again where we are
            if existing.status == "ringing":
                self._respond(headers, source, "180 Ringing", tag=existing.tag)
            return
        number = start.split()[1].removeprefix("sip:").split("@", 1)[0]
        dialog = Dialog(number=number, invite=headers, source=source, tag=f"{random.getrandbits(32):x}")
        dialog.history.append("< INVITE")
        with self._lock:
            self.dialogs[call_id] = dialog
        self._respond(headers, source, "100 Trying")
        outcome = far_end_status(number)
        if outcome == "BUSY":
            dialog.status = "busy"
            self._respond(headers, source, "486 Busy Here", tag=dialog.tag)
        elif outcome == "CONGESTION":
            dialog.status = "failed"
            self._respond(headers, source, "503 Service Unavailable", tag=dialog.tag)
        else:
            self._respond(headers, source, "180 Ringing", tag=dialog.tag)
            if outcome == "ANSWER":
                timer = threading.Timer(ANSWER_AFTER_SECONDS, self._answer, args=(dialog,))
                self._timers.append(timer)
                timer.start()

    def _answer(self, dialog: Dialog) -> None:
        if dialog.status != "ringing":
            return  # cancelled meanwhile
        dialog.status, dialog.answered_at = "answered", time.monotonic()
        dialog.history.append("> 200")
        sdp = "\r\n".join(["v=0", f"o=carrier 1 1 IN IP4 {self.address}", "s=carrier", f"c=IN IP4 {self.address}", "t=0 0",
                           f"m=audio {self.port + 2} RTP/AVP 0 8 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
                           "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=ptime:20", "a=sendrecv", ""])
        self._respond(dialog.invite, dialog.source, "200 OK", tag=dialog.tag, body=sdp,
                      extra=[f"Contact: <sip:{dialog.number}@{self.address}:{self.port}>", "Content-Type: application/sdp",
                             "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS"])

    def _respond(self, request: dict, source: tuple[str, int], status: str, *, tag: str | None = None, body: str = "",
                 extra: list[str] = ()) -> None:
        to = request.get("to", [""])[0]
        if tag and ";tag=" not in to:
            to = f"{to};tag={tag}"
        lines = [f"SIP/2.0 {status}", *[f"Via: {via}" for via in request.get("via", [])],
                 f"From: {request.get('from', [''])[0]}", f"To: {to}", f"Call-ID: {request.get('call-id', [''])[0]}",
                 f"CSeq: {request.get('cseq', [''])[0]}", "Server: fake-carrier", *extra,
                 f"Content-Length: {len(body.encode())}"]
        self._send("\r\n".join(lines) + "\r\n\r\n" + body, source)

    def _send(self, text: str, target: tuple[str, int]) -> None:
        self.sock.sendto(text.encode(), target)


_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length", "c": "content-type"}


def _long_name(name: str) -> str:
    return _COMPACT.get(name, name)


def _uri(contact: str) -> str:
    """`<sip:asterisk@127.0.0.1:5060>;expires=…` → `sip:asterisk@127.0.0.1:5060`."""
    return contact.split("<", 1)[1].split(">", 1)[0] if "<" in contact else contact.split(";", 1)[0]
