"""A local SMSC speaking SMPP 3.4 for the tests, written from the specification (not with the
client's library): bind_transceiver / bind_receiver with a system id and password,
submit_sm → submit_sm_resp with a message id, then a deliver_sm delivery receipt per part
(esm_class 0x04, `id:… stat:DELIVRD …`, with the receipted_message_id and message_state TLVs),
enquire_link, unbind. UCS-2 (data_coding 8) is decoded and concatenated parts (UDH IEI 0x00)
are reassembled, so a test reads each message as the handset would show it."""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from datetime import datetime

BIND_RECEIVER, BIND_TRANSCEIVER, SUBMIT_SM, DELIVER_SM, UNBIND, ENQUIRE_LINK = 0x01, 0x09, 0x04, 0x05, 0x06, 0x15
RESP = 0x80000000
ROK, RINVPASWD, RINVCMDID = 0x00, 0x0E, 0x03
SYSTEM_ID, PASSWORD = "hotline", "smpp-pw"


class FakeSmsc:
    """`submit_statuses`: statuses to answer the next submit_sm with (consumed in order; 0x58 is
    throttling); `receipt_state`: the final state receipts report; `hold_receipts`: keep them
    until a later bind (as an SMSC keeps them for a system id nobody is bound as)."""

    def __init__(self):
        self.submit_statuses: list[int] = []
        self.receipt_state, self.hold_receipts = "DELIVRD", False
        self.messages: list[dict] = []  # reassembled: to, text, data_coding, parts, message_ids
        self.binds: list[str] = []
        self.unbinds = 0
        self.held: list[bytes] = []
        self.lock = threading.Lock()
        self._parts: dict[tuple, dict] = {}
        self._next_id = 0
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def message_id(self) -> str:
        with self.lock:
            self._next_id += 1
            return f"SMSC{self._next_id:06d}"

    def take_part(self, submit: dict, message_id: str) -> None:
        """One submitted part; a message is recorded once all its parts arrived."""
        body = submit["short_message"]
        key, number, total = ("single", message_id), 1, 1
        if submit["esm_class"] & 0x40:  # UDH: length, then IEI 0x00 (concatenation, 8-bit reference), 3, ref, total, number
            header_length = body[0]
            header, body = body[1:1 + header_length], body[1 + header_length:]
            assert header[0] == 0x00 and header[1] == 3, f"unexpected UDH {header!r}"
            key, total, number = (submit["destination_addr"], header[2]), header[3], header[4]
        with self.lock:
            entry = self._parts.setdefault(key, {"parts": {}, "ids": {}})
            entry["parts"][number], entry["ids"][number] = body, message_id
            if len(entry["parts"]) < total:
                return
            del self._parts[key]
        raw = b"".join(entry["parts"][n] for n in sorted(entry["parts"]))
        text = raw.decode("utf-16-be") if submit["data_coding"] == 8 else raw.decode("latin-1")
        with self.lock:
            self.messages.append({"to": submit["destination_addr"], "from": submit["source_addr"], "text": text, "parts": total,
                                  "data_coding": submit["data_coding"], "message_ids": [entry["ids"][n] for n in sorted(entry["ids"])]})

    def receipt(self, submit: dict, message_id: str, sequence: int) -> bytes:
        now = datetime.now().strftime("%y%m%d%H%M")
        text = (f"id:{message_id} sub:001 dlvrd:{'001' if self.receipt_state == 'DELIVRD' else '000'} submit date:{now} "
                f"done date:{now} stat:{self.receipt_state} err:{'000' if self.receipt_state == 'DELIVRD' else '001'} text:")
        state = {"DELIVRD": 2, "EXPIRED": 3, "UNDELIV": 5, "REJECTD": 8}[self.receipt_state]
        body = (cstr("") + bytes([1, 1]) + cstr(submit["destination_addr"]) + bytes([0, 0]) + cstr(submit["source_addr"])
                + bytes([0x04, 0, 0]) + cstr("") + cstr("") + bytes([0, 0, 0, 0]) + bytes([len(text)]) + text.encode()
                + tlv(0x001E, cstr(message_id)) + tlv(0x0427, bytes([state])))
        return pdu(DELIVER_SM, ROK, sequence, body)


def cstr(value: str) -> bytes:
    return value.encode() + b"\0"


def tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


def pdu(command: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    return struct.pack(">IIII", 16 + len(body), command, status, sequence) + body


class Reader:
    """C-strings and integers off a PDU body, in order."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def cstr(self) -> str:
        end = self.data.index(b"\0", self.at)
        value, self.at = self.data[self.at:end].decode("latin-1"), end + 1
        return value

    def byte(self) -> int:
        self.at += 1
        return self.data[self.at - 1]

    def octets(self, n: int) -> bytes:
        self.at += n
        return self.data[self.at - n:self.at]


def parse_submit(body: bytes) -> dict:
    r = Reader(body)
    out = {"service_type": r.cstr(), "source_addr_ton": r.byte(), "source_addr_npi": r.byte(), "source_addr": r.cstr(),
           "dest_addr_ton": r.byte(), "dest_addr_npi": r.byte(), "destination_addr": r.cstr(), "esm_class": r.byte(),
           "protocol_id": r.byte(), "priority_flag": r.byte(), "schedule_delivery_time": r.cstr(), "validity_period": r.cstr(),
           "registered_delivery": r.byte(), "replace_if_present_flag": r.byte(), "data_coding": r.byte(), "sm_default_msg_id": r.byte()}
    out["short_message"] = r.octets(r.byte())
    return out


def _handler(smsc: FakeSmsc):
    class Session(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.settimeout(30)
            self.bound, self.sequence = None, 0x7000
            try:
                while True:
                    header = self.read(16)
                    if header is None:
                        return
                    length, command, _status, sequence = struct.unpack(">IIII", header)
                    body = self.read(length - 16) if length > 16 else b""
                    if not self.act(command, sequence, body or b""):
                        return
            except (ConnectionError, socket.timeout):
                return

        def read(self, n: int) -> bytes | None:
            data = b""
            while len(data) < n:
                chunk = self.request.recv(n - len(data))
                if not chunk:
                    return None
                data += chunk
            return data

        def act(self, command: int, sequence: int, body: bytes) -> bool:
            """Answer one PDU; False once the session is over (unbound)."""
            if command in (BIND_TRANSCEIVER, BIND_RECEIVER):
                r = Reader(body)
                system_id, password = r.cstr(), r.cstr()
                ok = (system_id, password) == (SYSTEM_ID, PASSWORD)
                self.request.sendall(pdu(command | RESP, ROK if ok else RINVPASWD, sequence, cstr("FAKESMSC")))
                if ok:
                    self.bound = "transceiver" if command == BIND_TRANSCEIVER else "receiver"
                    smsc.binds.append(self.bound)
                    self.deliver_held()
                return ok
            if command == SUBMIT_SM and self.bound == "transceiver":
                self.submit(sequence, parse_submit(body))
            elif command == ENQUIRE_LINK:
                self.request.sendall(pdu(ENQUIRE_LINK | RESP, ROK, sequence))
            elif command == DELIVER_SM | RESP:
                pass
            elif command == UNBIND:
                smsc.unbinds += 1
                self.request.sendall(pdu(UNBIND | RESP, ROK, sequence))
                return False
            else:
                self.request.sendall(pdu(0x80000000, RINVCMDID, sequence))
            return True

        def submit(self, sequence: int, submit: dict) -> None:
            with smsc.lock:
                status = smsc.submit_statuses.pop(0) if smsc.submit_statuses else ROK
            if status != ROK:
                self.request.sendall(pdu(SUBMIT_SM | RESP, status, sequence, b"\0"))
                return
            message_id = smsc.message_id()
            smsc.take_part(submit, message_id)
            self.request.sendall(pdu(SUBMIT_SM | RESP, ROK, sequence, cstr(message_id)))
            if submit["registered_delivery"] & 1:
                self.sequence += 1
                receipt = smsc.receipt(submit, message_id, self.sequence)
                if smsc.hold_receipts:
                    smsc.held.append(receipt)
                else:
                    self.request.sendall(receipt)

        def deliver_held(self) -> None:
            if smsc.hold_receipts:
                return  # still holding: the test lets go by clearing hold_receipts
            with smsc.lock:
                held, smsc.held = smsc.held, []
            for receipt in held:
                self.request.sendall(receipt)

    return Session
