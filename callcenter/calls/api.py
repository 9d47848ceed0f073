"""HTTP API for calls: /api/calls (filters: date range, agent, outcome, elder), /api/calls/{id}."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from fastapi import APIRouter, Query
from sqlalchemy import func
from sqlmodel import select

from callcenter.calls.models import CALL_OUTCOMES, CALL_STATES, IVR_ROUTES, CallRecord
from callcenter.calls import service as calls_service
from callcenter.deps import AgentUser, DbSession, ServicesDep
from callcenter.timeutil import as_utc

router = APIRouter(prefix="/api/calls", tags=["calls"])


def call_dict(record: CallRecord, tz) -> dict:
    local = lambda value: as_utc(value).astimezone(tz).isoformat() if value else None  # noqa: E731
    return {
        "id": record.id,
        "call_id": record.linkedid,
        "direction": record.direction,
        "state": record.state,
        "state_label": CALL_STATES.get(record.state, record.state),
        "outcome": record.outcome,
        "outcome_label": CALL_OUTCOMES.get(record.outcome, "") if record.outcome else "",
        "caller": record.caller_e164 or record.caller_number,
        "caller_name": record.caller_name,
        "elder_id": record.elder_id,
        "elder_candidates": record.elder_candidates,
        "queue": record.queue,
        "priority": record.priority,
        "ivr_route": record.ivr_route,
        "ivr_route_label": IVR_ROUTES.get(record.ivr_route, record.ivr_route or ""),
        "agent": record.agent_extension,
        "agent_user_id": record.agent_user_id,
        "wait_seconds": record.wait_seconds,
        "talk_seconds": record.talk_seconds,
        "hangup_by": record.hangup_by,
        "survey_score": record.survey_score,
        "started_at": local(record.started_at),
        "queued_at": local(record.queued_at),
        "answered_at": local(record.answered_at),
        "ended_at": local(record.ended_at),
        "outage_from": local(record.outage_from),
        "outage_to": local(record.outage_to),
        "disposition": record.disposition,
        "notes": record.notes,
    }


def _day_start_utc(day: date, tz) -> datetime:
    """Midnight of `day` in the centre's time zone, in UTC (what is stored; SQLite keeps no zone)."""
    return datetime.combine(day, time.min, tz).astimezone(timezone.utc)


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
    query = select(CallRecord)
    if date_from:
        query = query.where(CallRecord.started_at >= _day_start_utc(date_from, tz))
    if date_to:
        query = query.where(CallRecord.started_at < _day_start_utc(date_to + timedelta(days=1), tz))
    if agent:
        query = query.where(CallRecord.agent_extension == agent)
    if outcome:
        query = query.where(CallRecord.outcome == outcome)
    if elder_id is not None:
        query = query.where(CallRecord.elder_id == elder_id)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(CallRecord.started_at.desc(), CallRecord.id.desc()).offset((page - 1) * page_size).limit(page_size))
    return {"items": [call_dict(r, tz) for r in rows], "total": total, "page": page, "page_size": page_size}


@router.get("/{call_id}")
def get_call(call_id: int, session: DbSession, services: ServicesDep, user: AgentUser):
    return call_dict(calls_service.get_or_raise(session=session, call_id=call_id), services.settings.tz)
