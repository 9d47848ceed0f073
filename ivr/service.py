"""The IVR's domain: its settings (file defaults, database over them), who is calling, the
emergency draft, callback requests and the survey score. No sockets here: `ivr/scripts.py`
speaks AGI and calls these in a worker thread; the caller owns the transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from callcenter import db
from callcenter.auth.models import User
from callcenter.calls.models import CallRecord
from callcenter.elders import service as elders_service
from callcenter.elders.models import Elder
from callcenter.errors import Conflict, FieldErrors, NotFound
from callcenter.phones import try_parse_phone
from callcenter.timeutil import as_utc, utcnow
from ivr import menu
from ivr.models import FINISHED_CALLBACKS, CallbackRequest, CallbackStatus, IvrSetting
from workorders import service as orders_service
from workorders.models import OrderStatus, WorkOrder

SETTING_KEYS = ("menu", "hours", "prompts")
STALE_SETTINGS = "语音导航设置已被他人修改，请刷新页面后重新编辑"
EMERGENCY_SERVICE = "emergency"  # 助急: the service type of the IVR's emergency draft
IVR_ACTOR = "语音导航"


# --- settings ----------------------------------------------------------------------------------

def load_config(*, session: Session, menu_file: Path | None = None) -> menu.IvrConfig:
    """The menu file's values with what supervisors saved over them."""
    return menu.parse(_merged(session=session, menu_file=menu_file))


def _merged(*, session: Session, menu_file: Path | None) -> dict:
    data = menu.read_file(menu_file)
    for row in session.exec(select(IvrSetting)):
        if row.key in data:
            data[row.key] = {**data[row.key], **row.value}
    return data


def setting_versions(*, session: Session) -> dict[str, int]:
    return {row.key: row.version for row in session.exec(select(IvrSetting))}


def settings_view(*, session: Session, now: datetime, menu_file: Path | None = None) -> dict:
    """What supervisors see (the page and GET /api/ivr/settings): the settings in force, the
    version of each saved part, and whether the centre is open at `now` (local)."""
    config = load_config(session=session, menu_file=menu_file)
    open_now = config.hours.is_open(now)
    return {**menu.to_data(config), "versions": setting_versions(session=session), "open_now": open_now,
            "hours_text": config.hours.describe(), "next_opening": None if open_now else config.hours.next_opening(now),
            "callbacks_waiting": callbacks_waiting(session=session)}


def save_config(*, session: Session, data: dict, user: User, versions: dict[str, int], menu_file: Path | None = None
                ) -> menu.IvrConfig:
    """Store a supervisor's settings (validated as a whole first; a field left out keeps its value).
    `versions` are the ones the page was built from: a part someone saved meanwhile is refused,
    not silently overwritten."""
    db.write_lock(session)  # SQLite: read the versions under the write lock (PostgreSQL: FOR UPDATE below)
    merged = _merged(session=session, menu_file=menu_file)
    config = menu.parse({key: {**merged[key], **data.get(key, {})} for key in SETTING_KEYS})
    stored = menu.to_data(config)
    for key in SETTING_KEYS:
        if key not in data:
            continue
        row = session.get(IvrSetting, key, with_for_update=True)
        if (row.version if row else 0) != versions.get(key, 0):
            raise Conflict(STALE_SETTINGS)
        if row is None:
            row = IvrSetting(key=key, version=0)
        row.value, row.version, row.updated_by, row.updated_at = stored[key], row.version + 1, user.id, utcnow()
        session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:  # two first saves of a part at once: the later one is the stale one
        raise Conflict(STALE_SETTINGS) from exc
    return config


# --- who is calling ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Caller:
    number: str | None
    e164: str | None = None
    elder_id: int | None = None
    elder_name: str | None = None  # as hotline staff address the elder: 张大爷, 李奶奶
    own_phone: bool = False  # the number is on the elder's own phones (not a relative's)
    high_risk: bool = False

    @property
    def known(self) -> bool:
        return self.elder_id is not None


def is_high_risk(elder: Elder) -> bool:
    """Lives alone with moderate or severe dependency, or carries a risk flag."""
    alone_and_dependent = elder.living_situation == "lives_alone" and elder.ability_level in ("moderate", "severe")
    return alone_and_dependent or bool(elder.risk_flags)


def honorific(elder: Elder) -> str:
    """张大爷 / 李奶奶: how hotline staff address an elder (full name when the gender is unknown)."""
    suffix = {"male": "大爷", "female": "奶奶"}.get(elder.gender or "")
    return elder.name[0] + suffix if suffix and len(elder.name) >= 2 else elder.name


def identify_caller(*, session: Session, number: str | None, area_code: str) -> Caller:
    """The elder behind a caller's number when exactly one active profile carries it. High risk
    counts only when the number is the elder's own: a relative calling is not the elder in need."""
    phone = try_parse_phone(number, default_area_code=area_code) if number else None
    if phone is None:
        return Caller(number=number)
    matches = elders_service.matches_for_number(session=session, e164=phone.e164)
    if len(matches) != 1:
        return Caller(number=number, e164=phone.e164)
    match = matches[0]
    own = match.source == "phone" and match.relation == "self"
    return Caller(number=number, e164=phone.e164, elder_id=match.elder.id, elder_name=honorific(match.elder),
                  own_phone=own, high_risk=own and is_high_risk(match.elder))


# --- emergency ---------------------------------------------------------------------------------

def call_id_for(*, session: Session, linkedid: str) -> int | None:
    return session.exec(select(CallRecord.id).where(CallRecord.linkedid == linkedid)).first()


def draft_emergency(*, session: Session, caller: Caller, call_id: int | None, reason: str, tz) -> WorkOrder | None:
    """The emergency draft for a known elder's call (one per call): an agent confirms or cancels
    it. None for an unknown caller: an order needs an elder, the alert and priority still stand."""
    if caller.elder_id is None:
        return None
    if call_id is not None:
        existing = session.exec(select(WorkOrder).where(WorkOrder.call_id == call_id, WorkOrder.status == OrderStatus.DRAFT)).first()
        if existing is not None:
            return existing
    elder = session.get(Elder, caller.elder_id)
    if elder is None or not elder.active:
        return None
    description = f"语音导航紧急求助（{reason}），来电号码 {caller.number or '未知'}，请坐席核实后确认派单或按误报取消"
    return orders_service.create_draft(session=session, elder=elder, service_type=EMERGENCY_SERVICE, call_id=call_id,
                                       description=description, actor=IVR_ACTOR, tz=tz)


# --- callback requests -------------------------------------------------------------------------

def request_callback(*, session: Session, caller: Caller, linkedid: str, reason: str, due_at: datetime) -> CallbackRequest:
    """Record (or repeat) a caller's callback request; due when the centre next opens."""
    if not caller.number:
        raise FieldErrors.single("caller_number", "来电号码未知，无法回电")
    due_at = due_at.astimezone(timezone.utc)  # stored as UTC (SQLite keeps no zone)
    key = CallbackRequest.caller_e164 == caller.e164 if caller.e164 else CallbackRequest.caller_number == caller.number
    waiting = session.exec(select(CallbackRequest).where(key, CallbackRequest.status == CallbackStatus.WAITING)).first()
    if waiting is not None:
        waiting.requests += 1
        waiting.call_linkedid = linkedid
        waiting.due_at = min(as_utc(waiting.due_at), due_at)
        session.add(waiting)
        session.flush()
        return waiting
    request = CallbackRequest(caller_number=caller.number, caller_e164=caller.e164, elder_id=caller.elder_id,
                              call_linkedid=linkedid, reason=reason, due_at=due_at)
    session.add(request)
    session.flush()
    return request


def callbacks_due(*, session: Session, now: datetime, limit: int = 100) -> list[CallbackRequest]:
    """The agents' callback list: waiting requests that are due, the oldest first."""
    return list(session.exec(select(CallbackRequest).where(CallbackRequest.status == CallbackStatus.WAITING, CallbackRequest.due_at <= now)
                             .order_by(CallbackRequest.due_at, CallbackRequest.id).limit(limit)))


def callbacks_waiting(*, session: Session) -> int:
    return session.exec(select(func.count()).select_from(CallbackRequest).where(CallbackRequest.status == CallbackStatus.WAITING)).one()


def waiting_callback_or_raise(*, session: Session, request_id: int) -> CallbackRequest:
    """A callback request nobody has handled yet (404 unknown, 409 handled)."""
    request = session.get(CallbackRequest, request_id)
    if request is None:
        raise NotFound("没有这个回电请求")
    if request.status != CallbackStatus.WAITING:
        raise Conflict(f"该回电请求已处理（{CallbackStatus.label_of(request.status)}）")
    return request


def finish_callback(*, session: Session, request_id: int, user: User, status: str, note: str) -> CallbackRequest:
    """An agent called back: reached (done), not reached, or the request was void (cancelled)."""
    if status not in FINISHED_CALLBACKS:
        choices = "、".join(finished.label for finished in FINISHED_CALLBACKS)
        raise FieldErrors.single("status", f"处理结果无效：{status}（可选：{choices}）")
    request = waiting_callback_or_raise(session=session, request_id=request_id)
    moved = session.connection().execute(
        update(CallbackRequest.__table__).where(CallbackRequest.__table__.c.id == request_id,
                                                CallbackRequest.__table__.c.status == CallbackStatus.WAITING)
        .values(status=status, handled_by=user.id, handled_at=utcnow(), note=note.strip())).rowcount
    if moved != 1:
        raise Conflict("该回电请求刚被其他坐席处理")
    session.refresh(request)
    return request


# --- survey ------------------------------------------------------------------------------------

def save_survey(*, session: Session, linkedid: str, score: int) -> bool:
    """The caller's 1–5 on the call; False when the call is not on record (yet)."""
    if not 1 <= score <= 5:
        raise FieldErrors.single("score", "评分应为 1–5")
    table = CallRecord.__table__
    return session.connection().execute(update(table).where(table.c.linkedid == linkedid)
                                        .values(survey_score=score)).rowcount == 1
