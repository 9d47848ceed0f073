"""Calls: record what the tracker says happened, match callers to elders, read calls back.

The caller (the bridge) owns the transaction: these functions flush, never commit.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import func
from sqlmodel import Session, select

from callcenter import db
from callcenter.auth.models import User
from callcenter.calls.models import AgentStatus, CallRecord
from callcenter.calls.tracker import AgentState, Call
from callcenter.elders import service as elders_service
from callcenter.phones import try_parse_phone
from callcenter.timeutil import as_utc, utcnow

# Redis channels the bridge publishes on (README, "Live events").
CALLS_CHANNEL = "hotline:calls"
AGENTS_CHANNEL = "hotline:agents"
_EXTENSION = re.compile(r"^(?:Local|PJSIP|SIP|IAX2)/(\d+)")
COPIED_FIELDS = (
    "direction", "context", "state", "outcome", "caller_number", "caller_name", "queue", "position", "priority", "ivr_route",
    "elder_ref", "survey_score", "agent_interface", "agent_name", "ring_attempts", "transfers", "started_at", "ivr_at",
    "queued_at", "offered_at", "answered_at", "abandoned_at", "agent_done_at", "ended_at", "wait_seconds", "talk_seconds",
    "hangup_by", "outage_from", "outage_to",
)


def extension_of(interface: str | None) -> str | None:
    """`Local/8001@agents`, `PJSIP/8001` → `8001`."""
    match = _EXTENSION.match(interface or "")
    return match.group(1) if match else None


def record_call(*, session: Session, call: Call, area_code: str) -> CallRecord:
    """Insert or update the row of `call` (keyed by Linkedid) from the tracker's snapshot.
    The elder is matched when the caller's number is first known."""
    record = session.exec(select(CallRecord).where(CallRecord.linkedid == call.linkedid)).first()
    if record is None:
        record = CallRecord(linkedid=call.linkedid, direction=call.direction, state=call.state, started_at=call.started_at)
    number_before = record.caller_number
    for name in COPIED_FIELDS:
        setattr(record, name, getattr(call, name))
    record.channels = sorted(call.channels)
    if record.caller_number != number_before:
        _match_elder(session=session, record=record, area_code=area_code)
    extension = extension_of(call.agent_interface)
    if extension != record.agent_extension:
        record.agent_extension = extension
        record.agent_user_id = _user_for_extension(session, extension)
    record.updated_at = utcnow()
    session.add(record)
    return record


def _match_elder(*, session: Session, record: CallRecord, area_code: str) -> None:
    phone = try_parse_phone(record.caller_number, default_area_code=area_code)
    record.caller_e164 = phone.e164 if phone else None
    matches = elders_service.matches_for_number(session=session, e164=phone.e164) if phone else []
    record.elder_candidates = [m.elder.id for m in matches]
    record.elder_id = matches[0].elder.id if len(matches) == 1 else None


def _user_for_extension(session: Session, extension: str | None) -> int | None:
    if not extension:
        return None
    return session.exec(select(User.id).where(User.sip_extension == extension)).first()


def record_agent(*, session: Session, agent: AgentState) -> AgentStatus:
    row = session.get(AgentStatus, agent.interface) or AgentStatus(interface=agent.interface, state=agent.state, status=agent.status)
    row.name = agent.name
    row.extension = extension_of(agent.interface)
    row.state = agent.state
    row.status = agent.status
    row.paused = agent.paused
    row.pause_reason = agent.pause_reason
    row.queues = sorted(agent.queues)
    row.since = agent.since
    row.updated_at = utcnow()
    session.add(row)
    return row


def open_calls(*, session: Session) -> list[Call]:
    """Calls not ended in the database, as tracker calls (the bridge restores them on start)."""
    rows = session.exec(select(CallRecord).where(CallRecord.state != "ended"))
    calls = []
    for row in rows:
        values = {name: getattr(row, name) for name in COPIED_FIELDS}
        for name, value in values.items():
            if isinstance(value, datetime):
                values[name] = as_utc(value)
        calls.append(Call(linkedid=row.linkedid, channels=set(row.channels), **values))
    return calls


def get_or_raise(*, session: Session, call_id: int) -> CallRecord:
    return db.get_or_raise(session, CallRecord, call_id, "通话")


def search(*, session: Session, tz, date_from: date | None = None, date_to: date | None = None, agent: str | None = None,
           outcome: str | None = None, elder_id: int | None = None, page: int = 1, page_size: int = 50) -> tuple[list[CallRecord], int]:
    """Calls newest first, filtered; `date_from` / `date_to` are days in `tz`, inclusive."""
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
    return list(rows), total


def _day_start_utc(day: date, tz) -> datetime:
    """Midnight of `day` in the centre's time zone, in UTC (what is stored; SQLite keeps no zone)."""
    return datetime.combine(day, time.min, tz).astimezone(timezone.utc)


def event_payload(*, kind: str, call: Call, record: CallRecord) -> dict:
    """The JSON event published for a call change (DESIGN.md: type, call_id, agent, caller …):
    the call as it was at this change, with what the database added (id, elder match)."""
    return {
        "type": kind,
        "call_id": call.linkedid,
        "id": record.id,
        "state": call.state,
        "outcome": call.outcome,
        "direction": call.direction,
        "caller": record.caller_e164 or call.caller_number,
        "caller_name": call.caller_name,
        "elder_id": record.elder_id,
        "elder_candidates": record.elder_candidates,
        "queue": call.queue,
        "priority": call.priority,
        "ivr_route": call.ivr_route,
        "agent": extension_of(call.agent_interface),
        "agent_interface": call.agent_interface,
        "wait_seconds": call.wait_seconds,
        "talk_seconds": call.talk_seconds,
        "survey_score": call.survey_score,
        "at": _iso(utcnow()),
    }


def agent_payload(agent: AgentState) -> dict:
    return {
        "type": "agent.state",
        "interface": agent.interface,
        "agent": extension_of(agent.interface),
        "name": agent.name,
        "state": agent.state,
        "paused": agent.paused,
        "pause_reason": agent.pause_reason,
        "queues": sorted(agent.queues),
        "since": _iso(agent.since),
    }


def agent_payload_from_row(row: AgentStatus) -> dict:
    """The same shape as `agent_payload`, from the stored state."""
    return {"type": "agent.state", "interface": row.interface, "agent": row.extension, "name": row.name, "state": row.state,
            "paused": row.paused, "pause_reason": row.pause_reason, "queues": row.queues, "since": _iso(row.since)}


def _iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat() if value else None
