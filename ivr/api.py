"""HTTP API of the IVR: the agents' callback list (/api/callback-requests) and the settings
supervisors edit (/api/ivr/settings; the page is /supervisor/ivr)."""

from __future__ import annotations


from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlmodel import select

from callcenter.audit import service as audit_service
from callcenter.calls import control
from callcenter.deps import AgentUser, CitySupervisorUser, DbSession, ServicesDep, SupervisorUser, client_ip, release
from callcenter.errors import Conflict
from callcenter.phones import try_parse_phone
from callcenter.elders.models import Elder
from callcenter.timeutil import local_iso, utcnow
from callcenter.inputs import Id
from ivr import service as ivr_service
from ivr.models import CALLBACK_REASONS, CallbackRequest, CallbackStatus

router = APIRouter(tags=["ivr"])


def callback_dict(row: CallbackRequest, tz, elder_names: dict[int, str]) -> dict:
    return {"id": row.id, "caller_number": row.caller_number, "caller_e164": row.caller_e164, "elder_id": row.elder_id,
            "elder_name": elder_names.get(row.elder_id) if row.elder_id else None, "call_id": row.call_linkedid,
            "reason": row.reason, "reason_label": CALLBACK_REASONS.get(row.reason, row.reason), "requests": row.requests,
            "status": row.status, "status_label": CallbackStatus.label_of(row.status),
            "requested_at": local_iso(row.requested_at, tz), "due_at": local_iso(row.due_at, tz),
            "handled_at": local_iso(row.handled_at, tz), "note": row.note}


def _elder_names(session, rows: list[CallbackRequest]) -> dict[int, str]:
    ids = {row.elder_id for row in rows if row.elder_id}
    return dict(session.exec(select(Elder.id, Elder.name).where(Elder.id.in_(ids))).all()) if ids else {}


@router.get("/api/callback-requests")
def callback_requests(session: DbSession, services: ServicesDep, user: AgentUser):
    """Callers who asked to be called back and are due now (the centre is open), oldest first."""
    rows = ivr_service.callbacks_due(session=session, now=utcnow())
    names = _elder_names(session, rows)
    return {"items": [callback_dict(row, services.settings.tz, names) for row in rows],
            "waiting": ivr_service.callbacks_waiting(session=session)}


class CallbackDone(BaseModel):
    status: str  # done, unreached or cancelled (FINISHED_CALLBACKS): checked by the service, in Chinese
    note: str = Field(default="", max_length=500)


@router.post("/api/callback-requests/{request_id}/finish")
def finish_callback_request(request_id: Id, body: CallbackDone, session: DbSession, services: ServicesDep, user: AgentUser):
    row = ivr_service.finish_callback(session=session, request_id=request_id, user=user, status=body.status, note=body.note)
    return callback_dict(row, services.settings.tz, _elder_names(session, [row]))


@router.post("/api/callback-requests/{request_id}/dial")
def dial_callback_request(request_id: Id, request: Request, session: DbSession, services: ServicesDep, user: AgentUser):
    """Ring the agent's phone, then the number that asked for the callback (a waiting request only)."""
    row = ivr_service.waiting_callback_or_raise(session=session, request_id=request_id)
    phone = try_parse_phone(row.caller_e164 or row.caller_number, default_area_code=services.settings.city_area_code)
    if phone is None:
        raise Conflict("该号码无法外呼")
    elder_id = row.elder_id
    if elder_id is not None:  # the attempt is on record even when the bridge then fails it
        audit_service.record(session=session, actor=user, action="callback", elder_id=elder_id,
                             detail={"number": phone.e164, "callback_request": row.id}, ip=client_ip(request))
    release(session)
    control.callback(redis=services.redis, settings=services.settings, extension=user.sip_extension, phone=phone,
                     elder_id=elder_id)
    return {"ok": True, "message": f"正在呼叫您的分机，接起后将拨打 {phone.display}"}


@router.get("/api/ivr/settings")
def ivr_settings(session: DbSession, services: ServicesDep, user: SupervisorUser):
    """The menu, business hours and prompt texts in force, and the version of each saved part."""
    return ivr_service.settings_view(session=session, now=utcnow().astimezone(services.settings.tz),
                                     menu_file=services.settings.ivr_menu_file)


class SettingsIn(BaseModel):
    menu: dict | None = None
    hours: dict | None = None
    prompts: dict[str, str] | None = None
    versions: dict[str, int] = Field(default_factory=dict, description="as read from GET: a part saved meanwhile is refused")


@router.put("/api/ivr/settings")
def save_ivr_settings(body: SettingsIn, session: DbSession, services: ServicesDep, user: CitySupervisorUser):
    data = body.model_dump(exclude={"versions"}, exclude_none=True)
    ivr_service.save_config(session=session, data=data, user=user, versions=body.versions,
                            menu_file=services.settings.ivr_menu_file)
    return ivr_settings(session, services, user)
