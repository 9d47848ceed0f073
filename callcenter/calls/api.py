"""HTTP API for calls: /api/calls (filters: date range, agent, outcome, elder), /api/calls/{id}."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Query

from callcenter.calls import presenter
from callcenter.calls import service as calls_service
from callcenter.deps import AgentUser, DbSession, ServicesDep

router = APIRouter(prefix="/api/calls", tags=["calls"])


@router.get("")
def list_calls(
    session: DbSession,
    services: ServicesDep,
    user: AgentUser,
    date_from: date | None = Query(None, alias="from"),
    date_to: date | None = Query(None, alias="to"),
    agent: str | None = None,
    outcome: str | None = None,
    elder_id: int | None = None,
    page: int = Query(1, ge=1),
    page_size: int = Query(50, ge=1, le=500),
):
    """Newest first. `from` / `to` are days in the centre's time zone (inclusive)."""
    tz = services.settings.tz
    rows, total = calls_service.search(session=session, tz=tz, date_from=date_from, date_to=date_to, agent=agent,
                                       outcome=outcome, elder_id=elder_id, page=page, page_size=page_size)
    return {"items": [presenter.call_dict(r, tz) for r in rows], "total": total, "page": page, "page_size": page_size}


@router.get("/{call_id}")
def get_call(call_id: int, session: DbSession, services: ServicesDep, user: AgentUser):
    return presenter.call_dict(calls_service.get_or_raise(session=session, call_id=call_id), services.settings.tz)
