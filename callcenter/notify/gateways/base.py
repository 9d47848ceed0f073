"""What every gateway is: `send(message) -> Sent`, raising TransientError (worth another try
later: the network, throttling, the provider's own trouble) or PermanentError (another try
would fail the same way: a wrong number, a template the provider refused). Gateways that learn
of delivery also have `receipts() -> [Receipt]` (reports received since the last call)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class GatewayError(Exception):
    """A send that did not happen; its text goes into the message's `error` (never a secret)."""


class TransientError(GatewayError):
    pass


class PermanentError(GatewayError):
    pass


class GatewayConfigError(Exception):
    """The settings do not make a working gateway: raised when the worker starts, naming what is missing."""


@dataclass(frozen=True)
class Outgoing:
    """What a gateway needs of one outbox row (no ORM object crosses into the network code)."""

    id: int
    kind: str
    params: dict
    text: str
    address: str  # the phone (E.164) or the WeChat openid


@dataclass(frozen=True)
class Receipt:
    """A delivery report: the gateway's message id, whether it arrived, the provider's words."""

    provider_message_id: str
    delivered: bool
    detail: str = ""


@dataclass(frozen=True)
class Sent:
    provider_message_id: str
    delivered: bool = False  # its receipt came in the same session already
    receipts: tuple[Receipt, ...] = ()  # every receipt read in that session (this message's and earlier ones')


class Gateway(Protocol):
    name: str

    def send(self, message: Outgoing) -> Sent: ...

    def receipts(self) -> list[Receipt]: ...
