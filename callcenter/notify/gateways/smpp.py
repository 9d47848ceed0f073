"""SMPP 3.4, the carriers' protocol, through `smpplib`: one session per send (bind_transceiver,
submit_sm for each part, submit_sm_resp with the SMSC's message id, a short wait for the
delivery receipt, unbind). Chinese text goes as UCS-2 (data_coding 8); a text longer than one
SMS (70 characters) goes in parts with a concatenation UDH (esm_class 0x40), each part asking
for a receipt. The message is known by its first part's message id: its receipt marks the
message delivered (the handset shows the parts as one message).

Receipts that arrive later are collected by `receipts()` (a receiver bind for a few seconds,
run by the periodic sweep): the SMSC keeps them for the system id until someone binds."""

from __future__ import annotations

import logging
import re
import socket
import time

import smpplib.client
import smpplib.consts as c
import smpplib.exceptions
import smpplib.gsm
import smpplib.smpp

from callcenter.notify.gateways.base import Outgoing, PermanentError, Receipt, Sent, TransientError

log = logging.getLogger(__name__)
# submit_sm_resp / bind statuses worth another try later (the SMSC's trouble, not the message's)
TRANSIENT_STATUSES = {c.SMPP_ESME_RTHROTTLED, c.SMPP_ESME_RMSGQFUL, c.SMPP_ESME_RSYSERR, 0x00000064}  # 0x64: ESME_RX_T_APPN
SMSC_DELIVERY_RECEIPT = 0x04  # esm_class of a deliver_sm that is a delivery receipt (SMPP 3.4, 5.2.12)
RECEIPT_FIELDS = re.compile(r"(\w+(?: \w+)?):(\S*)")
DELIVERED_STATES = {"DELIVRD"}
FINAL_STATES = {"DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "REJECTD", "UNKNOWN"}


class SmppGateway:
    name = "smpp"

    def __init__(self, *, host: str, port: int, system_id: str, password: str, system_type: str = "", source_addr: str = "12349",
                 receipt_wait: float = 5.0, timeout: float = 10.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.credentials = {"system_id": system_id, "password": password, "system_type": system_type}
        self.source_addr, self.receipt_wait = source_addr, receipt_wait
        self._pending: list[Receipt] = []  # receipts read, not yet handed out

    def send(self, message: Outgoing) -> Sent:
        with self._session("bind_transceiver") as client:
            message_ids = self._submit(client, message)
            receipts = self._read_receipts(client, until=lambda seen: message_ids[0] in seen)
        own = [r for r in receipts if r.provider_message_id == message_ids[0]]
        return Sent(provider_message_id=message_ids[0], receipts=tuple(receipts), delivered=bool(own) and own[-1].delivered)

    def receipts(self) -> list[Receipt]:
        """Receipts the SMSC kept for us, read over a receiver bind of `receipt_wait` seconds."""
        with self._session("bind_receiver") as client:
            return self._read_receipts(client, until=lambda seen: False)

    # --- the session ----------------------------------------------------------------------------

    def _session(self, bind: str):
        client = smpplib.client.Client(self.host, self.port, timeout=self.timeout, allow_unknown_opt_params=True,
                                       logger_name="callcenter.notify.smpp")
        return _Bound(client, bind, self.credentials)

    def _submit(self, client, message: Outgoing) -> list[str]:
        """submit_sm every part; the SMSC's message id of each, in order."""
        parts, coding, esm_class = smpplib.gsm.make_parts(message.text, encoding=c.SMPP_ENCODING_ISO10646)
        sequences = []
        for part in parts:
            pdu = client.send_message(source_addr_ton=c.SMPP_TON_UNK, source_addr_npi=c.SMPP_NPI_ISDN, source_addr=self.source_addr,
                                      dest_addr_ton=c.SMPP_TON_INTL, dest_addr_npi=c.SMPP_NPI_ISDN,
                                      destination_addr=message.address.lstrip("+"), short_message=part, data_coding=coding,
                                      esm_class=esm_class, registered_delivery=c.SMPP_SMSC_DELIVERY_RECEIPT_BOTH)
            sequences.append(pdu.sequence)
        ids: dict[int, str] = {}
        while len(ids) < len(sequences):
            pdu = _read(client)
            if pdu.command == "submit_sm_resp" and pdu.sequence in sequences:
                if pdu.status != c.SMPP_ESME_ROK:
                    raise _status_error("submit_sm", pdu.status)
                ids[pdu.sequence] = _text(pdu.message_id)
            else:
                _answer(client, pdu, self._pending)
        return [ids[sequence] for sequence in sequences]

    def _read_receipts(self, client, *, until) -> list[Receipt]:
        """Receipts already read and those arriving within `receipt_wait` s, or until `until(ids seen)`."""
        deadline = time.monotonic() + self.receipt_wait
        while not until({r.provider_message_id for r in self._pending}) and time.monotonic() < deadline:
            client._socket.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                pdu = client.read_pdu()
            except socket.timeout:
                break
            _answer(client, pdu, self._pending)
        client._socket.settimeout(self.timeout)
        receipts, self._pending[:] = list(self._pending), []
        return receipts


class _Bound:
    """Connect and bind on enter; unbind and disconnect on exit (also after an error)."""

    def __init__(self, client, bind: str, credentials: dict):
        self.client, self.bind, self.credentials = client, bind, credentials

    def __enter__(self):
        try:
            self.client.connect()
            getattr(self.client, self.bind)(**self.credentials)
        except smpplib.exceptions.PDUError as exc:
            self.client.disconnect()
            status = exc.args[1] if len(exc.args) > 1 else -1
            raise _status_error(self.bind, status) from exc
        except (smpplib.exceptions.ConnectionError, OSError) as exc:
            self.client.disconnect()
            raise TransientError(f"SMPP：连接 {self.client.host}:{self.client.port} 失败（{type(exc).__name__}）") from exc
        return self.client

    def __exit__(self, *exc_info):
        try:
            if self.client.state != c.SMPP_CLIENT_STATE_CLOSED:
                self.client.unbind()
        except (smpplib.exceptions.PDUError, smpplib.exceptions.ConnectionError, OSError) as exc:
            log.info("SMPP unbind: %s", exc)
        finally:
            self.client.disconnect()


def _read(client):
    try:
        return client.read_pdu()
    except (socket.timeout, smpplib.exceptions.ConnectionError, OSError) as exc:
        raise TransientError(f"SMPP：等待应答时连接中断（{type(exc).__name__}）") from exc


def _answer(client, pdu, receipts: list[Receipt]) -> None:
    """What the SMSC may send at any time: a delivery receipt (deliver_sm), enquire_link."""
    if pdu.command == "deliver_sm":
        receipt = parse_receipt(pdu)
        if receipt is not None:
            receipts.append(receipt)
        response = smpplib.smpp.make_pdu("deliver_sm_resp", client=client)
        response.sequence = pdu.sequence
        client.send_pdu(response)
    elif pdu.command == "enquire_link":
        response = smpplib.smpp.make_pdu("enquire_link_resp", client=client)
        response.sequence = pdu.sequence
        client.send_pdu(response)
    else:
        log.info("SMPP: %s ignored", pdu.command)


def parse_receipt(pdu) -> Receipt | None:
    """A deliver_sm that is a delivery receipt (esm_class 0x04): its message id and final state,
    from the TLVs receipted_message_id / message_state when present, else from the text
    `id:… sub:… dlvrd:… submit date:… done date:… stat:DELIVRD err:000 text:…` (SMPP 3.4 appendix B)."""
    if not (pdu.esm_class or 0) & SMSC_DELIVERY_RECEIPT:
        return None
    fields = dict(RECEIPT_FIELDS.findall(_text(pdu.short_message or b"")))
    message_id = _text(pdu.receipted_message_id) if pdu.receipted_message_id else fields.get("id", "")
    state = fields.get("stat", "").upper()
    if not state and pdu.message_state:
        state = {2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 8: "REJECTD"}.get(pdu.message_state, "UNKNOWN")
    if not message_id or state not in FINAL_STATES:
        return None
    return Receipt(provider_message_id=message_id, delivered=state in DELIVERED_STATES, detail=f"{state} err:{fields.get('err', '')}")


def _status_error(what: str, status: int):
    description = c.DESCRIPTIONS.get(status, "unknown status")
    error = TransientError if status in TRANSIENT_STATUSES else PermanentError
    return error(f"SMPP：{what} 被拒绝（0x{status:08X} {description}）")


def _text(value) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else (value or "")
