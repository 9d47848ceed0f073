"""The calls' part of purpose-bound access (elders/access.py): a call linked to the elder that the
user holds now, or has just ended and is wrapping up."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, select

from callcenter.auth.models import User
from callcenter.calls.models import CallRecord, CallState
from callcenter.elders.access import Grant, Purpose

# An ended call stays open for its agent until their wrap-up ended, and at most this long (a
# wrap-up whose end was never recorded, or WRAPUP_SECONDS=0, does not keep it open for ever).
WRAPUP_GRACE = timedelta(minutes=10)


def open_call(*, session: Session, user: User, elder_id: int, now: datetime) -> Grant | None:
    """The newest call linked to the elder that `user` holds (offered, talking) or is wrapping up."""
    mine = CallRecord.agent_user_id == user.id
    if user.sip_extension:
        mine = mine | (CallRecord.agent_extension == user.sip_extension)
    wrapping_up = CallRecord.wrapup_ended_at.is_(None) & (CallRecord.ended_at >= now - WRAPUP_GRACE)
    row = session.exec(select(CallRecord.id).where(CallRecord.elder_id == elder_id, mine,
                                                   (CallRecord.state != CallState.ENDED) | wrapping_up)
                       .order_by(CallRecord.started_at.desc()).limit(1)).first()
    return Grant(Purpose.CALL, row) if row is not None else None
