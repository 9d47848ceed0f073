"""Sending SMS: a small gateway interface. The default gateway is the outbox table (shown in the
admin pages); a city plugs its SMS provider in by writing rows' `status` after sending them."""

from __future__ import annotations

from sqlmodel import Session

from workorders.models import SmsMessage


def send(*, session: Session, to: str, text: str, order_id: int | None = None, provider_id: int | None = None) -> SmsMessage:
    """Queue one SMS in the outbox, in the caller's transaction (sent with the change it announces)."""
    message = SmsMessage(to=to, text=text[:500], order_id=order_id, provider_id=provider_id)
    session.add(message)
    return message
