"""The demo and default gateway: nothing leaves the machine. The message is marked sent (the
outbox page shows it, and the demo's providers sign in from its link)."""

from __future__ import annotations

from callcenter.notify.gateways.base import Outgoing, Receipt, Sent


class OutboxGateway:
    name = "outbox"

    def send(self, message: Outgoing) -> Sent:
        return Sent(provider_message_id=f"outbox-{message.id}")

    def receipts(self) -> list[Receipt]:
        return []
