"""Calls: record what the tracker says happened, match callers to elders, read calls back.

The caller (the bridge) owns the transaction: these functions flush, never commit. The writers of
what the reports sum (a call's queue entry, answer, end, wrap-up, outcome, …; an agent's activity)
add what they touched to the caller's `Written` (calls/written.py), which the caller hands to the
rollup keeper in the same transaction.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import NamedTuple
from urllib.parse import urlparse

from sqlalchemy import func
from sqlmodel import Session, select

from callcenter import db
from callcenter.auth.models import User
from callcenter.auth import service as auth_service
from callcenter.calls import control
from callcenter.calls.control import WRAPUP_REASON
from callcenter.calls.models import DISPOSITIONS, AgentActivity, AgentStateLog, AgentStatus, CallLeg, CallRecord, CallState, Outcome
from callcenter.calls.tracker import AgentState, Call, Leg
from callcenter.calls.written import Stretch, Written
from callcenter.elders import service as elders_service
from callcenter.elders.models import Elder
from callcenter.elders.schemas import PhoneIn
from callcenter.errors import Conflict, FieldErrors
from callcenter.phones import try_parse_phone
from callcenter.timeutil import as_utc, day_start_utc, utcnow


_EXTENSION = re.compile(r"^(?:Local|PJSIP|SIP|IAX2)/(\d+)")
COPIED_FIELDS = (
    "direction", "context", "state", "outcome", "caller_number", "caller_name", "queue", "position", "priority", "ivr_route",
    "elder_ref", "survey_score", "agent_interface", "agent_name", "ring_attempts", "transfers", "started_at", "ivr_at",
    "queued_at", "offered_at", "answered_at", "abandoned_at", "agent_done_at", "ended_at", "wait_seconds", "talk_seconds",
    "hangup_by", "dial_status", "outage_from", "outage_to", "reconciled",
)

# Written by the IVR straight to the row too (ivr/service.py): a tracker that never saw the
# VarSet (filtered, or the bridge was away) must not blank them.
KEPT_FIELDS = frozenset({"survey_score"})


def extension_of(interface: str | None) -> str | None:
    """`Local/8001@agents`, `PJSIP/8001` → `8001`."""
    match = _EXTENSION.match(interface or "")
    return match.group(1) if match else None


def record_call(*, session: Session, call: Call, area_code: str, written: Written) -> CallRecord:
    """Insert or update the row of `call` (keyed by Linkedid) from the tracker's snapshot, noted
    in `written`. The elder is matched when the caller's number is first known."""
    record = session.exec(select(CallRecord).where(CallRecord.linkedid == call.linkedid)).first()
    if record is not None and call.reconciled and record.state == CallState.ENDED and record.outcome != Outcome.LOST_DURING_OUTAGE:
        return record  # recorded whole already (by this bridge before a restart, or by the other one)
    if record is None:
        record = CallRecord(linkedid=call.linkedid, direction=call.direction, state=call.state, started_at=call.started_at)
    number_before, queued_before = record.caller_number, record.queued_at
    for name in COPIED_FIELDS:
        value = getattr(call, name)
        if value is None and name in KEPT_FIELDS:
            continue
        setattr(record, name, value)
    record.channels = sorted(call.channels)
    if record.caller_number != number_before:
        _match_elder(session=session, record=record, area_code=area_code)
    if record.elder_id is None and call.elder_ref and call.elder_ref.isdigit():
        _take_elder_ref(session=session, record=record, elder_id=int(call.elder_ref))
    extension = extension_of(call.agent_interface)
    if extension != record.agent_extension:
        record.agent_extension = extension
        record.agent_user_id = _user_for_extension(session, extension)
    leg_agents = list(dict.fromkeys(ext for ext in (extension_of(leg.interface) for leg in call.legs) if ext))
    if leg_agents != record.leg_agents and (leg_agents or not record.leg_agents):
        record.leg_agents = leg_agents
    record.updated_at = utcnow()
    session.add(record)
    written.call(queued_before, record.queued_at)
    if call.legs:
        if record.id is None:
            session.flush()  # the legs need the call's id
        record_legs(session=session, record=record, legs=call.legs)
    return record


LEG_FIELDS = ("agent_name", "queue", "connected_at", "ended_at", "talk_seconds", "ended_by", "transfer")


def record_legs(*, session: Session, record: CallRecord, legs: list[Leg]) -> None:
    """Insert or update the call's agent legs (keyed by the agent's channel)."""
    rows = {row.channel: row for row in session.exec(select(CallLeg).where(CallLeg.call_id == record.id))}
    for seq, leg in enumerate(legs, start=1):
        row = rows.get(leg.channel)
        if row is None:
            extension = extension_of(leg.interface)
            row = CallLeg(call_id=record.id, seq=seq, channel=leg.channel, agent_interface=leg.interface, agent_extension=extension,
                          agent_user_id=_user_for_extension(session, extension), connected_at=leg.connected_at)
        for name in LEG_FIELDS:
            setattr(row, name, getattr(leg, name))
        if leg.wrapup_ended_at is not None:
            row.wrapup_ended_at = leg.wrapup_ended_at
        session.add(row)


def legs_of(*, session: Session, call_id: int) -> list[CallLeg]:
    return list(session.exec(select(CallLeg).where(CallLeg.call_id == call_id).order_by(CallLeg.seq)))


def _match_elder(*, session: Session, record: CallRecord, area_code: str) -> None:
    phone = try_parse_phone(record.caller_number, default_area_code=area_code)
    record.caller_e164 = phone.e164 if phone else None
    matches = elders_service.matches_for_number(session=session, e164=phone.e164) if phone else []
    record.elder_candidates = [m.elder.id for m in matches]
    record.elder_id = matches[0].elder.id if len(matches) == 1 else None


def _take_elder_ref(*, session: Session, record: CallRecord, elder_id: int) -> None:
    """ELDER_ID set on the channel (a callback from the console, or the IVR) names the elder."""
    if session.get(Elder, elder_id) is not None:
        record.elder_id = elder_id
        if elder_id not in record.elder_candidates:
            record.elder_candidates = [*record.elder_candidates, elder_id]


def record_wrapup_end(*, session: Session, linkedid: str, at: datetime, written: Written, interface: str | None = None) -> None:
    """The agent's wrap-up after their part of this call ended at `at` (ready again, or paused
    for another reason): on their leg, and on the call (noted in `written`) when they were its
    last agent."""
    record = session.exec(select(CallRecord).where(CallRecord.linkedid == linkedid)).first()
    if record is None:
        return
    leg = None
    if interface is not None:
        leg = session.exec(select(CallLeg).where(CallLeg.call_id == record.id, CallLeg.agent_interface == interface,
                                                 CallLeg.ended_at.is_not(None)).order_by(CallLeg.seq.desc())).first()
    if leg is not None and leg.wrapup_ended_at is None:
        leg.wrapup_ended_at = at
        session.add(leg)
    last_agent = interface is None or record.agent_interface == interface
    if last_agent and record.wrapup_ended_at is None:
        record.wrapup_ended_at = at
        session.add(record)
        written.call(record.queued_at)


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
    row.paused_in = {queue: reason for queue, reason in sorted(agent.paused_in.items())}
    row.since = agent.since
    row.updated_at = utcnow()
    session.add(row)
    return row


def activity_of(agent: AgentState) -> str:
    """What the agent is doing, as reports count it: the bridge's wrap-up pause is work, not a pause."""
    return AgentActivity.WRAPUP if agent.state == AgentActivity.PAUSED and agent.pause_reason == WRAPUP_REASON else agent.state


def log_agent_activities(*, session: Session, agents: list[AgentState], written: Written) -> None:
    """Close each agent's open stretch in `agent_state_log` and open the next, wherever the
    activity changed; `agents` are the batch's agent changes in the order they happened, so a
    short call inside one batch still leaves its stretch. Closed stretches go to `written` (the
    rollup keeper adds them to the agents' days, which occupancy reads)."""
    if not agents:
        return
    open_rows = {row.interface: row for row in session.exec(select(AgentStateLog).where(
        AgentStateLog.interface.in_({agent.interface for agent in agents}), AgentStateLog.ended_at.is_(None)))}
    for agent in agents:
        activity = activity_of(agent)
        reason = agent.pause_reason if activity == "paused" else None
        current = open_rows.get(agent.interface)
        if current is not None and (current.activity, current.pause_reason) == (activity, reason):
            continue
        at = as_utc(agent.since or utcnow())
        if current is not None:
            current.ended_at = max(at, as_utc(current.started_at))
            session.add(current)
            at = current.ended_at
            written.stretches.append(Stretch(current.extension or current.interface, current.activity, as_utc(current.started_at), at))
        row = AgentStateLog(interface=agent.interface, extension=extension_of(agent.interface), activity=activity,
                            pause_reason=reason, started_at=at)
        session.add(row)
        open_rows[agent.interface] = row


class MembershipChange(NamedTuple):
    """An agent's queues or penalty changed while they are logged into queues: what Asterisk must
    be told once the change is committed (apply_membership)."""

    user_id: int
    extension: str
    name: str
    live_queues: list[str]
    paused: bool
    queues: list[str]
    penalty: int
    old_queues: list[str]
    old_penalty: int


def update_agent(*, session: Session, settings, user_id: int, changes: dict) -> tuple[User, MembershipChange | None]:
    """Change an account (auth_service.update_user). When an agent's queues or penalty changed
    and the agent is logged into queues now, returns what Asterisk must be told: the caller
    commits first, then calls apply_membership (Asterisk is never changed for a write that may
    still fail to commit)."""
    before = auth_service.get_user_or_raise(session=session, user_id=user_id)
    old_queues, old_penalty = list(before.queues), before.queue_penalty
    if "queues" in changes:
        changes = changes | {"queues": control.check_queue_names(changes["queues"] or [])}
    user = auth_service.update_user(session=session, user_id=user_id, changes=changes)
    if (user.queues, user.queue_penalty) == (old_queues, old_penalty) or not user.sip_extension:
        return user, None
    live = session.get(AgentStatus, control.agent_interface(settings, user.sip_extension))
    if live is None or not live.queues:
        return user, None  # logged out: the new queues are taken when the agent is next ready
    session.flush()
    return user, MembershipChange(user_id=user.id, extension=user.sip_extension, name=user.display_name or user.username,
                                  live_queues=list(live.queues), paused=bool(live.paused), queues=list(user.queues),
                                  penalty=user.queue_penalty, old_queues=old_queues, old_penalty=old_penalty)


def apply_membership(*, database, redis, settings, change: MembershipChange) -> None:
    """After the commit: tell Asterisk (through the bridge). If it refuses or the bridge does not
    answer, the account's queues and penalty are put back as they were, unless someone changed
    them again meanwhile, and the error is raised: the account never claims queues the agent is
    not in."""
    try:
        control.change_membership(redis=redis, settings=settings, extension=change.extension, live_queues=change.live_queues,
                                  paused=change.paused, queues=change.queues, penalty=change.penalty,
                                  old_penalty=change.old_penalty, name=change.name)
    except Exception:
        with database.session_scope() as session:
            user = session.get(User, change.user_id)
            if user is not None and (list(user.queues), user.queue_penalty) == (change.queues, change.penalty):
                user.queues, user.queue_penalty = change.old_queues, change.old_penalty
                session.add(user)
        raise


def last_recorded_at(*, session: Session) -> datetime | None:
    """The latest moment any call on record reached (its end, or its start while open): where
    a bridge that was away reads Asterisk's records from."""
    ended = session.exec(select(func.max(CallRecord.ended_at))).one()
    started = session.exec(select(func.max(CallRecord.started_at))).one()
    moments = [as_utc(value) for value in (ended, started) if value is not None]
    return max(moments) if moments else None


def known_agents(*, session: Session) -> list[AgentState]:
    """Agents as last recorded (the bridge restores them on start, keeping how long each has
    been in their state)."""
    return [AgentState(interface=row.interface, name=row.name, status=row.status, paused=row.paused,
                       pause_reason=row.pause_reason, in_call=row.state == AgentActivity.IN_CALL, queues=set(row.queues),
                       since=as_utc(row.since) if row.since else None, paused_in=dict(row.paused_in or {}))
            for row in session.exec(select(AgentStatus))]


def open_calls(*, session: Session) -> list[Call]:
    """Calls not ended in the database, as tracker calls (the bridge restores them on start)."""
    rows = session.exec(select(CallRecord).where(CallRecord.state != CallState.ENDED))
    calls = []
    for row in rows:
        values = {name: getattr(row, name) for name in COPIED_FIELDS}
        for name, value in values.items():
            if isinstance(value, datetime):
                values[name] = as_utc(value)
        utc = lambda value: as_utc(value) if value is not None else None  # noqa: E731
        legs = [Leg(channel=leg.channel, interface=leg.agent_interface, connected_at=as_utc(leg.connected_at),
                    agent_name=leg.agent_name, queue=leg.queue, ended_at=utc(leg.ended_at), talk_seconds=leg.talk_seconds,
                    ended_by=leg.ended_by, transfer=leg.transfer, wrapup_ended_at=utc(leg.wrapup_ended_at))
                for leg in legs_of(session=session, call_id=row.id)]
        calls.append(Call(linkedid=row.linkedid, channels=set(row.channels), legs=legs, **values))
    return calls


def get_or_raise(*, session: Session, call_id: int) -> CallRecord:
    return db.get_or_raise(session, CallRecord, call_id, "通话")


def search(*, session: Session, tz, date_from: date | None = None, date_to: date | None = None, agent: str | None = None,
           outcome: str | None = None, elder_id: int | None = None, handled_by: User | None = None, q: str = "",
           disposition: str | None = None, page: int = 1, page_size: int = 50) -> tuple[list[CallRecord], int]:
    """Calls newest first, filtered; `date_from` / `date_to` are days in `tz`, inclusive;
    `handled_by`: calls of that agent; `q`: digits of the caller's number, or the elder's name."""
    query = select(CallRecord)
    if handled_by is not None:
        mine = CallRecord.agent_user_id == handled_by.id
        if handled_by.sip_extension:  # and the calls they talked on before a transfer
            legs = select(CallLeg.call_id).where(CallLeg.agent_extension == handled_by.sip_extension)
            mine = mine | (CallRecord.agent_extension == handled_by.sip_extension) | CallRecord.id.in_(legs)
        query = query.where(mine)
    if q.strip():
        query = query.where(_text_condition(q.strip()))
    if disposition:
        query = query.where(CallRecord.disposition == disposition)
    if date_from:
        query = query.where(CallRecord.started_at >= day_start_utc(date_from, tz))
    if date_to:
        query = query.where(CallRecord.started_at < day_start_utc(date_to + timedelta(days=1), tz))
    if agent:
        query = query.where(CallRecord.agent_extension == agent)
    if outcome:
        query = query.where(CallRecord.outcome == outcome)
    if elder_id is not None:
        query = query.where(CallRecord.elder_id == elder_id)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(CallRecord.started_at.desc(), CallRecord.id.desc()).offset((page - 1) * page_size).limit(page_size))
    return list(rows), total


def _text_condition(q: str):
    if re.fullmatch(r"[\d\s+-]{3,}", q):
        digits = re.sub(r"\D", "", q)
        if len(digits) >= 9 and digits.startswith("0"):  # a landline with its trunk 0: E.164 has none
            digits = digits[1:]
        return CallRecord.caller_e164.contains(digits, autoescape=True)
    names = select(Elder.id).where(Elder.name.startswith(q, autoescape=True))
    return CallRecord.elder_id.in_(names)


# --- the console: who handles a call, its summary, its elder ------------------------------------------

NOTES_EDIT_HOURS = 12  # an agent may complete a call's summary this long after it ended; supervisors always


def holds(*, user: User, call: CallRecord) -> bool:
    """The agent the call is with now (or a supervisor): may hang it up or pass it on."""
    if user.role in ("supervisor", "admin"):
        return True
    return call.agent_user_id == user.id or (user.sip_extension is not None and call.agent_extension == user.sip_extension)


def handles(*, user: User, call: CallRecord) -> bool:
    """An agent the call was offered to or who talked with the caller (every leg's), or a
    supervisor: may read the call and its notes and write them."""
    if user.role in ("supervisor", "admin"):
        return True
    return took_part(user=user, call=call)


def took_part(*, user: User, call: CallRecord) -> bool:
    """The call is with the user now, or the user's extension had a leg of it (whatever the role)."""
    if call.agent_user_id == user.id:
        return True
    extension = user.sip_extension
    return extension is not None and (call.agent_extension == extension or extension in (call.leg_agents or []))


def record_summary(*, session: Session, call: CallRecord, user: User, disposition: str | None, notes: str | None) -> CallRecord:
    """Save the agent's disposition and notes (during the call, in wrap-up, or later in the shift)."""
    if disposition is not None and disposition not in DISPOSITIONS:
        raise FieldErrors.single("disposition", f"通话类型无效：{disposition}（可选：{'、'.join(DISPOSITIONS.values())}）")
    if notes is not None and len(notes) > 4000:
        raise FieldErrors.single("notes", "通话记录最多 4000 字")
    too_late = call.ended_at is not None and as_utc(call.ended_at) < utcnow() - timedelta(hours=NOTES_EDIT_HOURS)
    if too_late and user.role == "agent":
        raise Conflict(f"通话结束已超过 {NOTES_EDIT_HOURS} 小时，如需修改请联系班长")
    if disposition is not None:
        call.disposition = disposition
    if notes is not None:
        call.notes = notes.strip()
    call.notes_by, call.notes_at = user.id, utcnow()
    session.add(call)
    return call


def set_elder(*, session: Session, call: CallRecord, elder_id: int, phone_relation: str | None = None,
              owner_name: str = "", area_code: str) -> CallRecord:
    """Say which elder the call is about: one of several sharing the number, a profile just
    created, or an existing elder whose relative is calling (`phone_relation`: the caller's
    number is added to that elder's phones)."""
    elder = elders_service.get_or_raise(session=session, elder_id=elder_id)
    if not elder.active:
        raise Conflict(f"该老人档案已停用：{elder.deactivated_reason or ''}")
    if phone_relation is not None:
        if not call.caller_e164:
            raise Conflict("来电未显示号码，无法关联到老人档案")
        known = {row.number for row in elders_service.phones_of(session=session, elder_id=elder.id)}
        if call.caller_e164 not in known:
            elders_service.add_phone(session=session, elder_id=elder.id, area_code=area_code,
                                     phone_in=PhoneIn(number=call.caller_e164, relation=phone_relation, owner_name=owner_name))
    call.elder_id = elder.id
    if elder.id not in call.elder_candidates:
        call.elder_candidates = [*call.elder_candidates, elder.id]
    session.add(call)
    return call


RECALL_HOURS = 24  # a cut-off call older than this has left the recall list


def recall_list(*, session: Session, now: datetime, limit: int = 100) -> list[CallRecord]:
    """Inbound calls the system cut off (a PBX restart or stop, or lost in a bridge outage) in the
    last RECALL_HOURS whose caller has not got through since: elders to call back, oldest first.
    A later call from the number that an agent answered, or a callback to it that talked, takes it
    off."""
    cut = CallRecord.__table__.alias("cut")
    reached = (select(CallRecord.id)
               .where(CallRecord.caller_e164 == cut.c.caller_e164, CallRecord.started_at > cut.c.ended_at,
                      CallRecord.answered_at.is_not(None) | ((CallRecord.direction == "outbound") & (CallRecord.talk_seconds > 0)))
               .exists())
    rows = session.execute(
        select(cut.c.id)
        .where(cut.c.direction == "inbound", cut.c.state == CallState.ENDED, cut.c.caller_e164.is_not(None),
               cut.c.ended_at >= now - timedelta(hours=RECALL_HOURS),
               (cut.c.hangup_by == "pbx") | (cut.c.outcome == Outcome.LOST_DURING_OUTAGE), ~reached)
        .order_by(cut.c.ended_at).limit(limit)).scalars().all()
    if not rows:
        return []
    records = {r.id: r for r in session.exec(select(CallRecord).where(CallRecord.id.in_(rows)))}
    latest: dict[str, CallRecord] = {}
    for row_id in rows:  # one line per number: its latest cut-off call
        record = records[row_id]
        latest[record.caller_e164] = record
    return sorted(latest.values(), key=lambda r: r.ended_at)


def recent_for_elder(*, session: Session, elder_id: int, exclude_id: int | None = None, limit: int = 5) -> list[CallRecord]:
    query = select(CallRecord).where(CallRecord.elder_id == elder_id)
    if exclude_id is not None:
        query = query.where(CallRecord.id != exclude_id)
    return list(session.exec(query.order_by(CallRecord.started_at.desc()).limit(limit)))


def softphone_settings(*, settings, user: User, sealer) -> dict:
    """Web softphone settings for this agent (JsSIP registers with them), or desk-phone mode."""
    if not user.sip_extension:
        return {"mode": "none", "message": "您的账号未绑定分机号，无法接听电话，请联系管理员"}
    if not settings.sip_ws_url or not user.sip_secret_sealed:
        return {"mode": "desk", "extension": user.sip_extension, "message": f"话机模式：请使用分机 {user.sip_extension} 的座席话机接听"}
    domain = settings.sip_domain or urlparse(settings.sip_ws_url).hostname
    return {"mode": "webrtc", "extension": user.sip_extension, "ws_url": settings.sip_ws_url,
            "uri": f"sip:{user.sip_extension}@{domain}", "password": sealer.decrypt(user.sip_secret_sealed),
            "display_name": user.display_name, "message": "网页软电话模式"}
