"""Calls as shown to a person: Chinese labels, times in the centre's time zone."""

from __future__ import annotations

from callcenter.calls.models import DISPOSITIONS, IVR_ROUTES, CallLeg, CallRecord, CallState, Outcome
from callcenter.calls.tracker import LEG_ENDS, TRANSFER_KINDS
from callcenter.elders import presenter as elders_presenter
from callcenter.timeutil import local_iso

def display_number(e164: str | None, raw: str | None) -> str | None:
    """As an agent reads it: `138 0013 8000`, `0411 8765 4321`; the raw caller ID when unparsable."""
    return elders_presenter.display_phone(e164) if e164 else raw


def call_dict(record: CallRecord, tz, *, notes_visible: bool) -> dict:
    """`notes_visible`: the viewer handled the call or supervises (calls_service.handles); an
    agent never reads another agent's notes."""
    local = lambda value: local_iso(value, tz)  # noqa: E731
    return {
        "id": record.id,
        "call_id": record.linkedid,
        "direction": record.direction,
        "state": record.state,
        "state_label": CallState.label_of(record.state),
        "outcome": record.outcome,
        "outcome_label": Outcome.label_of(record.outcome),
        "caller": record.caller_e164 or record.caller_number,
        "caller_display": display_number(record.caller_e164, record.caller_number),
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
        "wrapup_ended_at": local(record.wrapup_ended_at),
        "disposition": record.disposition,
        "disposition_label": DISPOSITIONS.get(record.disposition, "") if record.disposition else "",
        "notes": record.notes if notes_visible else None,
        "notes_hidden": not notes_visible,
    }


def leg_dict(leg: CallLeg, tz) -> dict:
    """One agent's part of a call, as the call's detail shows it."""
    return {
        "seq": leg.seq,
        "agent": leg.agent_extension,
        "agent_name": leg.agent_name,
        "agent_user_id": leg.agent_user_id,
        "queue": leg.queue,
        "connected_at": local_iso(leg.connected_at, tz),
        "ended_at": local_iso(leg.ended_at, tz),
        "talk_seconds": leg.talk_seconds,
        "ended_by": leg.ended_by,
        "ended_by_label": LEG_ENDS.get(leg.ended_by, "") if leg.ended_by else "",
        "transfer": leg.transfer,
        "transfer_label": TRANSFER_KINDS.get(leg.transfer, "") if leg.transfer else "",
        "wrapup_ended_at": local_iso(leg.wrapup_ended_at, tz),
    }
