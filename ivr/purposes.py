"""The IVR's part of purpose-bound access (callcenter/elders/access.py): the elder asked to be
called back and the request is due on the agents' callback list."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from callcenter.auth.models import User
from callcenter.elders.access import Grant, Purpose
from ivr.models import CallbackRequest, CallbackStatus


def open_callback(*, session: Session, user: User, elder_id: int, now: datetime) -> Grant | None:
    """A waiting callback request of the elder that is due (on every agent's list, ivr.service.callbacks_due)."""
    row = session.exec(select(CallbackRequest.id).where(CallbackRequest.elder_id == elder_id,
                                                        CallbackRequest.status == CallbackStatus.WAITING,
                                                        CallbackRequest.due_at <= now)
                       .order_by(CallbackRequest.due_at).limit(1)).first()
    return Grant(Purpose.CALLBACK, row) if row is not None else None
