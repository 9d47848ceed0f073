"""Writing the audit log. The caller's transaction carries the row, so the view or change and its
audit entry are committed together or not at all."""

from __future__ import annotations

from sqlmodel import Session

from callcenter.audit.models import AuditLog
from callcenter.auth.models import User


def record(
    *, session: Session, actor: User | None, action: str, elder_id: int | None = None, detail: dict | None = None, ip: str | None = None,
    actor_name: str | None = None,
) -> AuditLog:
    """Write one audit row: `actor` did `action` (view, create, update, …) to `elder_id`. People
    without a hotline account (provider staff) are named by `actor_name`."""
    entry = AuditLog(user_id=actor.id if actor else None, username=(actor.username if actor else actor_name or "")[:64],
                     action=action, elder_id=elder_id, detail=detail or {}, ip=ip)
    session.add(entry)
    return entry

