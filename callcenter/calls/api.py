"""HTTP API for calls and the agent's console.

/api/calls                 search (date range, agent, outcome, elder, `mine`, `q`)
/api/calls/{id}            one call; notes only for the agent who handled it and supervisors
/api/calls/{id}/pop        the screen pop: the call, its elder (or the candidates), its last calls
/api/calls/{id}/summary    disposition and notes            (the handling agent, supervisors)
/api/calls/{id}/elder      which elder the call is about    (idem)
/api/calls/{id}/hangup     end the agent's leg              (idem)
/api/calls/{id}/transfer   redirect the caller              (idem)
/api/agent/state           ready / paused with a reason / offline, mirrored to the queue
/api/agent/callback        call an elder or an emergency contact back from the agent's phone
/api/agent/softphone       web softphone (JsSIP) settings, or desk-phone mode
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from callcenter.audit import service as audit_service
from callcenter.auth import service as auth_service
from callcenter.calls import control, presenter
from callcenter.calls import service as calls_service
from callcenter.calls.models import AgentRequest, CallRecord
from callcenter.auth.api import UserUpdate, user_dict
from callcenter.areas import scope as areas_scope
from callcenter.deps import AgentUser, CurrentScope, DbSession, ServicesDep, SupervisorUser, client_ip, release
from callcenter.elders import access as elders_access
from callcenter.elders import service as elders_service
from callcenter.elders.models import RELATIONS
from callcenter.errors import Conflict, FieldErrors, NotFound, PermissionDenied
from callcenter.phones import InvalidPhoneNumber, parse_phone, try_parse_phone
from callcenter.timeutil import today_in, utcnow
from callcenter.inputs import Id, Page, ReportDate

router = APIRouter(prefix="/api/calls", tags=["calls"])
agent_router = APIRouter(prefix="/api/agent", tags=["console"])
accounts_router = APIRouter(tags=["auth"])


def readable_call(call_id: Id, session: DbSession, user: AgentUser) -> CallRecord:
    """Dependency: a call the signed-in agent took part in, whatever the caller's area (a call can
    come from anywhere), or any other call within the user's scope (404 outside it)."""
    with areas_scope.city_wide(session):
        call = calls_service.get_or_raise(session=session, call_id=call_id)
    if not calls_service.took_part(user=user, call=call) and not areas_scope.visible(session, CallRecord, call.id):
        raise NotFound(f"通话 {call_id} 不存在")
    return call


ReadableCall = Annotated[CallRecord, Depends(readable_call)]


def own_call(call: ReadableCall, user: AgentUser) -> CallRecord:
    """Dependency: a call the signed-in agent handles (or any call in scope, for a supervisor)."""
    if not calls_service.handles(user=user, call=call):
        raise PermissionDenied("这不是您接听的通话，无法查看或操作")
    return call


OwnCall = Annotated[CallRecord, Depends(own_call)]


def held_call(call: OwnCall, user: AgentUser) -> CallRecord:
    """Dependency: a call the signed-in agent is on now (hang up, transfer): an agent who passed
    the caller on still reads the call and writes its notes, but no longer acts on the line."""
    if not calls_service.holds(user=user, call=call):
        raise PermissionDenied("该来电已转接给其他坐席，无法再操作")
    return call


HeldCall = Annotated[CallRecord, Depends(held_call)]


def _call_dict(call: CallRecord, tz, user) -> dict:
    return presenter.call_dict(call, tz, notes_visible=calls_service.handles(user=user, call=call))


@router.get("")
def list_calls(
    session: DbSession,
    services: ServicesDep,
    user: AgentUser,
    date_from: ReportDate | None = Query(None, alias="from"),
    date_to: ReportDate | None = Query(None, alias="to"),
    agent: str | None = None,
    outcome: str | None = None,
    elder_id: Id | None = None,
    disposition: str | None = None,
    mine: bool = False,
    q: str = Query("", max_length=50),
    page: Page = 1,
    page_size: int = Query(50, ge=1, le=500),
):
    """Newest first. `from` / `to` are days in the centre's time zone (inclusive); `mine`: the
    calls I handled; `q`: part of the caller's number or the start of the elder's name."""
    tz = services.settings.tz
    rows, total = calls_service.search(session=session, tz=tz, date_from=date_from, date_to=date_to, agent=agent,
                                       outcome=outcome, elder_id=elder_id, disposition=disposition,
                                       handled_by=user if mine else None, q=q, page=page, page_size=page_size)
    return {"items": [_call_dict(r, tz, user) for r in rows], "total": total, "page": page, "page_size": page_size}


@router.get("/recall")
def recall_list(session: DbSession, services: ServicesDep, user: AgentUser):
    """系统中断待回拨: callers the system cut off (PBX restart, bridge outage) who have not got
    through since; 回拨 is `POST /api/agent/callback {"call_id": …}`."""
    rows = calls_service.recall_list(session=session, now=utcnow())
    return {"items": [_call_dict(r, services.settings.tz, user) for r in rows], "total": len(rows)}


@router.get("/{call_id}")
def get_call(call: ReadableCall, session: DbSession, services: ServicesDep, user: AgentUser):
    """The call, with each agent's part of it (`legs`: who talked, how long, how it ended)."""
    return _call_dict(call, services.settings.tz, user) | {
        "transfers": call.transfers, "reconciled": call.reconciled,
        "legs": [presenter.leg_dict(leg, services.settings.tz) for leg in calls_service.legs_of(session=session, call_id=call.id)]}


@router.get("/{call_id}/pop")
def screen_pop(call: OwnCall, request: Request, session: DbSession, services: ServicesDep, user: AgentUser):
    """Everything the console shows when a call is offered: the call; the elder as the agent may
    see them now (elders/access.py: the full profile while they hold the call or wrap it up, the
    view audited with the call as its reason) or, when several elders share the number, who they are; the elder's last
    calls. (Open work orders come from /api/workorders?elder_id=&open=true.) The caller's elder
    is found whatever the agent's scope: a call can come from anywhere."""
    with areas_scope.city_wide(session):
        return _screen_pop(call, request, session, services, user)


def _screen_pop(call: CallRecord, request: Request, session, services, user) -> dict:
    tz, today = services.settings.tz, today_in(services.settings.tz)
    elder = candidates = None
    if call.elder_id is not None:
        record = elders_service.get_or_raise(session=session, elder_id=call.elder_id)
        elder = elders_access.show(session=session, access=services.elder_access, user=user, elder=record, today=today,
                                   sealer=services.sealer, via="screen_pop", ip=client_ip(request))
    elif call.elder_candidates:
        candidates = _candidates(session, call, today)
        for candidate in candidates:
            audit_service.record(session=session, actor=user, action="view_summary", elder_id=candidate["id"],
                                 detail={"via": "screen_pop", "call_id": call.id}, ip=client_ip(request))
    full = elder is not None and elder["access"]["level"] == "full"
    recent = calls_service.recent_for_elder(session=session, elder_id=call.elder_id, exclude_id=call.id) if full else []
    return {
        "call": _call_dict(call, tz, user),
        "elder": elder,
        "candidates": candidates,
        "recent_calls": [_call_dict(row, tz, user) for row in recent],
    }


def _candidates(session, call: CallRecord, today) -> list[dict]:
    """The elders sharing the caller's number, each with whose number it is."""
    matches = {m.elder.id: m for m in elders_service.matches_for_number(session=session, e164=call.caller_e164)} \
        if call.caller_e164 else {}
    rows = []
    for elder_id in call.elder_candidates:
        match = matches.get(elder_id)
        elder = match.elder if match else elders_service.get_or_raise(session=session, elder_id=elder_id)
        row = elders_access.card(session=session, elder=elder, today=today)
        if match is not None:
            row |= {"relation": match.relation, "relation_label": RELATIONS.get(match.relation, match.relation),
                    "owner_name": match.owner_name}
        rows.append(row)
    return rows


class SummaryIn(BaseModel):
    disposition: str | None = None
    notes: str | None = Field(default=None, max_length=4000)


@router.put("/{call_id}/summary")
def save_summary(body: SummaryIn, call: OwnCall, session: DbSession, services: ServicesDep, user: AgentUser):
    calls_service.record_summary(session=session, call=call, user=user, disposition=body.disposition, notes=body.notes)
    return _call_dict(call, services.settings.tz, user)


class ElderChoiceIn(BaseModel):
    elder_id: Id
    phone_relation: str | None = Field(default=None, description="add the caller's number to this elder's phones as …")
    owner_name: str = Field(default="", max_length=50)


@router.post("/{call_id}/elder")
def choose_elder(body: ElderChoiceIn, call: OwnCall, request: Request, session: DbSession, services: ServicesDep,
                 user: AgentUser):
    with areas_scope.city_wide(session):  # the caller may live anywhere
        calls_service.set_elder(session=session, call=call, elder_id=body.elder_id, phone_relation=body.phone_relation,
                                owner_name=body.owner_name, area_code=services.settings.city_area_code)
    detail = {"call_id": call.id, "linked_phone": body.phone_relation is not None}
    audit_service.record(session=session, actor=user, action="link_call", elder_id=body.elder_id, detail=detail, ip=client_ip(request))
    return _call_dict(call, services.settings.tz, user)


@router.post("/{call_id}/hangup")
def hang_up(call: HeldCall, session: DbSession, services: ServicesDep):
    release(session)  # nothing to write: no connection held while the bridge answers
    control.hangup(redis=services.redis, settings=services.settings, call=call)
    return {"ok": True, "message": "已挂断"}


class TransferIn(BaseModel):
    target: str = Field(min_length=1, max_length=40, description="an agent's extension or a queue name")


@router.post("/{call_id}/transfer")
def transfer(body: TransferIn, call: HeldCall, session: DbSession, services: ServicesDep):
    release(session)
    control.transfer(redis=services.redis, settings=services.settings, call=call, target=body.target)
    return {"ok": True, "message": f"已转接至 {body.target}"}


# --- the agent's own state and outbound calls ----------------------------------------------------------

class StateIn(BaseModel):
    state: str
    reason: str | None = None


@agent_router.post("/state")
def set_state(body: StateIn, session: DbSession, services: ServicesDep, user: AgentUser):
    release(session)
    control.set_agent_state(redis=services.redis, settings=services.settings, extension=user.sip_extension,
                            state=body.state, reason=body.reason, queues=user.queues, penalty=user.queue_penalty,
                            name=user.display_name or user.username)
    label = control.PAUSE_REASONS.get(body.reason or "", "") if body.state == "paused" else ""
    return {"ok": True, "state": body.state, "reason": body.reason,
            "message": f"已切换为：{AgentRequest(body.state).label}{('（' + label + '）') if label else ''}"}


class CallbackIn(BaseModel):
    elder_id: Id | None = None
    number: str | None = Field(default=None, max_length=40)
    call_id: Id | None = Field(default=None, description="call back the caller of this call")


@agent_router.post("/callback")
def call_back(body: CallbackIn, request: Request, session: DbSession, services: ServicesDep, user: AgentUser):
    """Only numbers the hotline has reason to dial: the caller of one of my calls, or a phone,
    emergency contact or steward in the elder's profile."""
    area_code = services.settings.city_area_code
    if body.call_id is not None:
        call = own_call(readable_call(body.call_id, session, user), user)
        phone = try_parse_phone(call.caller_e164, default_area_code=area_code)
        if phone is None:
            raise Conflict("该来电未显示号码，无法回拨")
        elder_id = call.elder_id
    elif body.elder_id is not None and body.number:
        try:
            phone = parse_phone(body.number, default_area_code=area_code)
        except InvalidPhoneNumber as exc:
            raise FieldErrors.single("number", str(exc)) from exc
        elder = elders_service.get_or_raise(session=session, elder_id=body.elder_id)
        if phone.e164 not in elders_service.numbers_of(session=session, elder=elder):
            raise FieldErrors.single("number", "该号码不在老人档案的电话、紧急联系人或管家中，不能外呼")
        elder_id = elder.id
    else:
        raise FieldErrors.single("number", "请指定要回拨的通话，或老人档案及其中的号码")
    if elder_id is not None:  # the attempt is on record even when the bridge then fails it
        audit_service.record(session=session, actor=user, action="callback", elder_id=elder_id,
                             detail={"number": phone.e164}, ip=client_ip(request))
    release(session)
    control.callback(redis=services.redis, settings=services.settings, extension=user.sip_extension, phone=phone, elder_id=elder_id)
    return {"ok": True, "message": f"正在呼叫您的分机，接起后将拨打 {phone.display}"}


@agent_router.get("/softphone")
def softphone(services: ServicesDep, user: AgentUser):
    """`webrtc` with what JsSIP needs to register, when SIP_WS_URL is set and this agent has an
    extension and a SIP secret; otherwise `desk` (the agent answers on the desk phone)."""
    return calls_service.softphone_settings(settings=services.settings, user=user, sealer=services.sealer)


# --- accounts: an agent's queues and penalty are Asterisk's queue membership ----------------------

@accounts_router.patch("/api/users/{user_id}")
def update_user(user_id: Id, body: UserUpdate, session: DbSession, services: ServicesDep, user: SupervisorUser,
                scope: CurrentScope):
    """An account within the manager's scope (404 outside it); a new role or area must be one the
    manager may give."""
    target = auth_service.get_user_within_or_raise(session=session, user_id=user_id, scope=scope)
    auth_service.check_may_manage(user, target.role, area_id=target.area_id, scope=scope)
    changes = body.model_dump(exclude_unset=True)
    if "role" in changes or "area_id" in changes:
        auth_service.check_may_manage(user, changes.get("role", target.role), area_id=changes.get("area_id", target.area_id),
                                      scope=scope)
    if "sip_secret" in changes:
        auth_service.set_sip_secret(user=target, secret=changes.pop("sip_secret"), sealer=services.sealer)
    updated, membership = calls_service.update_agent(session=session, settings=services.settings, user_id=user_id,
                                                     changes=changes)
    answer = user_dict(updated)
    release(session)  # committed before Asterisk is told, and no connection held while the bridge answers
    if membership is not None:
        calls_service.apply_membership(database=services.db, redis=services.redis, settings=services.settings,
                                       change=membership)
    return answer

