"""The bridge's live events, built from what the tracker says changed and what the database
added (ids, elder matches): one typed function per event (realtime/events.py holds the models)."""

from __future__ import annotations

from datetime import datetime

from callcenter.calls.models import AgentStatus, CallRecord
from callcenter.calls.presenter import display_number
from callcenter.calls.service import extension_of
from callcenter.calls.tracker import AgentState, Call, Change
from callcenter.realtime.events import AgentStateEvent, CallEvent, Event, Leg
from callcenter.timeutil import as_utc, utcnow


def call_changed(*, kind: str, call: Call, record: CallRecord) -> CallEvent:
    """The call as it was at this change, with what the database added (id, elder match)."""
    return CallEvent(
        type=kind, call_id=call.linkedid, id=record.id, state=call.state, outcome=call.outcome, direction=call.direction,
        caller=record.caller_e164 or call.caller_number, caller_display=display_number(record.caller_e164, call.caller_number),
        caller_name=call.caller_name, elder_id=record.elder_id, elder_candidates=record.elder_candidates or [],
        queue=call.queue, priority=call.priority, ivr_route=call.ivr_route, agent=extension_of(call.agent_interface),
        agent_interface=call.agent_interface,
        rang_agent=extension_of(call.rang_interface) if kind == "call.ring_no_answer" else None,
        agent_name=call.agent_name, queued_at=iso(call.queued_at), wait_seconds=call.wait_seconds, talk_seconds=call.talk_seconds,
        transfers=call.transfers,
        legs=[leg(one) for one in call.legs], survey_score=call.survey_score, at=iso(utcnow()))


def leg(one) -> Leg:
    """One agent's part of a call (a tracker Leg or a CallLeg row)."""
    interface = getattr(one, "interface", None) or getattr(one, "agent_interface", None)
    return Leg(agent=extension_of(interface), agent_name=one.agent_name, queue=one.queue, connected_at=iso(one.connected_at),
               ended_at=iso(one.ended_at), talk_seconds=one.talk_seconds, ended_by=one.ended_by, transfer=one.transfer)


def agent_changed(agent: AgentState | AgentStatus) -> AgentStateEvent:
    """An agent's state, as the tracker has it or as it was stored (the snapshot's agents)."""
    extension = agent.extension if isinstance(agent, AgentStatus) else extension_of(agent.interface)
    return AgentStateEvent(interface=agent.interface, agent=extension, name=agent.name, state=agent.state, paused=agent.paused,
                           pause_reason=agent.pause_reason, paused_queues=sorted(name for name in agent.paused_in if name),
                           queues=sorted(agent.queues), since=iso(agent.since))


def of_change(change: Change, records: dict[str, CallRecord]) -> Event:
    """The event one tracker change publishes (`records`: the calls' rows, by Linkedid)."""
    if change.call is not None:
        return call_changed(kind=change.kind, call=change.call, record=records[change.call.linkedid])
    return agent_changed(change.agent)


def iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat() if value else None
