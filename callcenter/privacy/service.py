"""An elder's own data, exported for them (PIPL art. 45), and erased on request by anonymisation
(art. 47). The caller owns the transaction: nothing here commits.

Anonymising keeps the elder's row and every call and order that refers to it, so the figures
(calls, orders, satisfaction, subsidy drawn) keep counting them; what identifies the person is
cleared: name, ID number, birth date, address, health and ability data, notes, steward; phones
and emergency contacts deleted; the caller's number and name and the agents' notes on the
elder's calls; the number on their callback requests; the address, descriptions and comments of
their orders, the photos, and the notifications sent about them; names and numbers in the audit
entries about them. Who did it, when and why is kept in `elder_erasures`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, update
from sqlmodel import Session, select

from callcenter.audit.models import AuditLog
from callcenter.auth.models import User
from callcenter.calls import presenter as calls_presenter
from callcenter.calls import service as calls_service
from callcenter.calls.models import CallRecord
from callcenter.care.models import CareCheck, CareOverride, CarePlan, CareTask
from callcenter.care.visit_models import VisitCheckIn
from callcenter.crypto import Sealer
from callcenter.elders import presenter as elders_presenter
from callcenter.elders import service as elders_service
from callcenter.elders.models import Elder, ElderPhone, EmergencyContact
from callcenter.errors import Conflict
from callcenter.notify.models import OutboxMessage, Recipient
from callcenter.privacy.models import ElderErasure
from callcenter.timeutil import local_iso, utcnow
from ivr.models import CallbackRequest, CallbackStatus
from workorders import presenter as orders_presenter
from workorders import purposes as order_purposes
from workorders import service as orders_service
from workorders import subsidy
from workorders.models import WorkOrder, WorkOrderEvent

ANONYMOUS_NAME = "已匿名"
ERASED_NOTE = "已按本人申请匿名化"
# detail keys that may name or number the person ("changes": a profile change's old and new values)
AUDIT_IDENTIFIERS = ("phone", "number", "name", "q", "changes")


def export(*, session: Session, elder_id: int, sealer: Sealer, tz, today, user: User, now: datetime | None = None) -> dict:
    """Everything held about one elder: the profile (ID number in full: it is their own), phones,
    contacts, calls, work orders with their history, subsidy ledger, callback requests, the audit
    of who viewed or changed the profile, any erasure, and proactive care's tasks and checks."""
    elder = elders_service.get_or_raise(session=session, elder_id=elder_id)
    calls = session.exec(select(CallRecord).where(CallRecord.elder_id == elder_id).order_by(CallRecord.started_at)).all()
    orders = session.exec(select(WorkOrder).where(WorkOrder.elder_id == elder_id).order_by(WorkOrder.created_at)).all()
    names = {row.code: row.name for row in orders_service.service_types(session=session, active_only=False)}
    callbacks = session.exec(select(CallbackRequest).where(CallbackRequest.elder_id == elder_id).order_by(CallbackRequest.id)).all()
    audit = session.exec(select(AuditLog).where(AuditLog.elder_id == elder_id).order_by(AuditLog.at, AuditLog.id)).all()
    erasures = session.exec(select(ElderErasure).where(ElderErasure.elder_id == elder_id).order_by(ElderErasure.id)).all()
    return {
        "generated_at": local_iso(now or utcnow(), tz),
        "generated_by": user.display_name or user.username,
        "elder": elders_presenter.profile(session=session, elder=elder, today=today, reveal_id=True, sealer=sealer),
        "calls": [calls_presenter.call_dict(row, tz, notes_visible=True)
                  | {"legs": [calls_presenter.leg_dict(leg, tz) for leg in calls_service.legs_of(session=session, call_id=row.id)]}
                  for row in calls],
        "work_orders": [orders_presenter.order_dict(row, tz, service_name=names.get(row.service_type, ""),
                                                    events=orders_service.events_of(session=session, order_id=row.id))
                        for row in orders],
        "subsidy_ledger": [orders_presenter.ledger_dict(row, tz) for row in subsidy.ledger_of(session=session, elder_id=elder_id)],
        "callback_requests": [_callback_dict(row, tz) for row in callbacks],
        "audit": [{"at": local_iso(row.at, tz), "user": row.username, "action": row.action, "detail": row.detail, "ip": row.ip}
                  for row in audit],
        "erasures": [erasure_dict(row, tz) for row in erasures],
        "care": _care_of(session, elder_id, tz),
    }


def _care_of(session: Session, elder_id: int, tz) -> dict:
    """Proactive care held about the elder: the exceptions, the tasks and what each check found."""
    overrides = session.exec(select(CareOverride).where(CareOverride.elder_id == elder_id).order_by(CareOverride.id)).all()
    tasks = session.exec(select(CareTask).where(CareTask.elder_id == elder_id).order_by(CareTask.id)).all()
    checks = session.exec(select(CareCheck).where(CareCheck.elder_id == elder_id).order_by(CareCheck.id)).all()
    return {
        "overrides": [{"reason": row.reason, "note": row.note, "until": row.until.isoformat() if row.until else None,
                       "created_at": local_iso(row.created_at, tz), "ended_at": local_iso(row.ended_at, tz)} for row in overrides],
        "tasks": [{"id": row.id, "kind": row.kind, "status": row.status, "due_on": row.due_on.isoformat(), "attempts": row.attempts,
                   "note": row.note, "closed_at": local_iso(row.closed_at, tz)} for row in tasks],
        "checks": [{"task_id": row.task_id, "at": local_iso(row.at, tz), "answers": row.answers, "findings": row.findings,
                    "note": row.note, "work_order_id": row.work_order_id} for row in checks],
    }


def _callback_dict(row: CallbackRequest, tz) -> dict:
    return {"id": row.id, "caller_number": row.caller_number, "reason": row.reason, "requests": row.requests,
            "status": row.status, "status_label": CallbackStatus.label_of(row.status), "requested_at": local_iso(row.requested_at, tz),
            "due_at": local_iso(row.due_at, tz), "handled_at": local_iso(row.handled_at, tz), "note": row.note}


def erasure_dict(row: ElderErasure, tz) -> dict:
    return {"id": row.id, "elder_id": row.elder_id, "at": local_iso(row.at, tz), "user": row.username, "reason": row.reason,
            "request_ref": row.request_ref, "counts": row.counts}


def anonymise(*, session: Session, elder_id: int, user: User, reason: str, request_ref: str = "", photo_folder: Path) -> ElderErasure:
    """Erase what identifies the elder, keep what the figures count; refused (409) while an order
    on the elder is open, or when the elder was anonymised already. Returns the erasure's record."""
    elder = elders_service.get_or_raise(session=session, elder_id=elder_id)
    if session.exec(select(ElderErasure.id).where(ElderErasure.elder_id == elder_id)).first() is not None:
        raise Conflict("该老人档案已匿名化")
    open_orders = order_purposes.open_orders_of(session=session, elder_id=elder_id)
    if open_orders:
        numbers = "、".join(order.number for order in open_orders[:5])
        raise Conflict(f"该老人有 {len(open_orders)} 个未办结工单（{numbers}），请办结或取消后再匿名化")
    numbers = elders_service.numbers_of(session=session, elder=elder)
    counts = {"phones": _delete(session, ElderPhone, elder_id), "contacts": _delete(session, EmergencyContact, elder_id),
              "calls": _clear_calls(session, elder_id), "callback_requests": _clear_callbacks(session, elder_id),
              "work_orders": _clear_orders(session, elder_id, photo_folder, numbers), "audit_entries": _redact_audit(session, elder_id),
              "care_records": _clear_care(session, elder_id, photo_folder.parent / "visits")}
    _clear_profile(elder)
    session.add(elder)
    erasure = ElderErasure(elder_id=elder_id, user_id=user.id, username=user.username[:64], reason=reason.strip(),
                           request_ref=request_ref.strip(), counts=counts)
    session.add(erasure)
    session.flush()
    return erasure


def _clear_profile(elder: Elder) -> None:
    elder.name, elder.name_pinyin, elder.name_initials = ANONYMOUS_NAME, "", ""
    elder.id_number_hash = elder.id_number_enc = elder.id_number_masked = elder.id_last4 = None
    elder.birth_date, elder.address = None, ""
    elder.living_situation, elder.economic_status, elder.ability_level = "with_family", "normal", "intact"
    elder.chronic_conditions = elder.allergies = elder.notes = elder.steward_name = ""
    elder.steward_phone, elder.risk_flags = None, []
    elder.active, elder.deactivated_reason, elder.updated_at = False, ERASED_NOTE, utcnow()


def _delete(session: Session, model, elder_id: int) -> int:
    return session.connection().execute(delete(model.__table__).where(model.__table__.c.elder_id == elder_id)).rowcount


def _clear_calls(session: Session, elder_id: int) -> int:
    """The caller's number and name and the agents' notes; outcome, times, disposition stay (the KPIs)."""
    table = CallRecord.__table__
    return session.connection().execute(update(table).where(table.c.elder_id == elder_id)
                                        .values(caller_number=None, caller_e164=None, caller_name=None, notes="")).rowcount


def _clear_care(session: Session, elder_id: int, visit_photos: Path) -> int:
    """Proactive care: the checks' answers, notes and photos, the visitors' positions at the door,
    the tasks' notes and numbers, the exceptions' notes, the plan; what was done and when stays."""
    checks = session.exec(select(CareCheck).where(CareCheck.elder_id == elder_id)).all()
    for check in checks:
        if check.photo:
            (visit_photos / Path(check.photo).name).unlink(missing_ok=True)
        check.answers, check.findings, check.note, check.photo = {}, [], "", None
        session.add(check)
    tasks = select(CareTask.id).where(CareTask.elder_id == elder_id)
    session.connection().execute(update(VisitCheckIn.__table__).where(VisitCheckIn.__table__.c.task_id.in_(tasks))
                                 .values(latitude=None, longitude=None, accuracy_m=None))
    session.connection().execute(update(CareTask.__table__).where(CareTask.__table__.c.elder_id == elder_id)
                                 .values(note="", phone=None))
    session.connection().execute(update(CareOverride.__table__).where(CareOverride.__table__.c.elder_id == elder_id)
                                 .values(note=""))
    _delete(session, CarePlan, elder_id)
    return len(checks)


def _clear_callbacks(session: Session, elder_id: int) -> int:
    table = CallbackRequest.__table__
    return session.connection().execute(update(table).where(table.c.elder_id == elder_id)
                                        .values(caller_number="", caller_e164=None, note="")).rowcount


def _clear_orders(session: Session, elder_id: int, photo_folder: Path, numbers: set[str]) -> int:
    """Address, descriptions, comments, photos of the elder's orders; the notifications about them
    (their text, and the elder's or relatives' numbers they went to)."""
    orders = session.exec(select(WorkOrder).where(WorkOrder.elder_id == elder_id)).all()
    for order in orders:
        if order.photo:
            (photo_folder / Path(order.photo).name).unlink(missing_ok=True)
        order.address = order.description = order.service_notes = order.callback_comment = ""
        order.photo = order.confirm_code = None
        session.add(order)
    ids = [order.id for order in orders]
    if ids:  # the history's notes (an IVR draft's description, staff's cancel, escalation and rejection notes)
        events = WorkOrderEvent.__table__
        session.connection().execute(update(events).where(events.c.order_id.in_(ids)).values(note=""))
    if numbers:  # how those numbers wanted notifications (a WeChat openid names a person too)
        recipients = Recipient.__table__
        session.connection().execute(delete(recipients).where(recipients.c.phone.in_(sorted(numbers))))
    if ids:
        table = OutboxMessage.__table__
        session.connection().execute(update(table).where(table.c.order_id.in_(ids))
                                     .values(text=f"（{ERASED_NOTE}）", params={}))
        if numbers:
            session.connection().execute(update(table).where(table.c.order_id.in_(ids), table.c.to.in_(numbers))
                                         .values(to="", address=""))
    return len(orders)


def _redact_audit(session: Session, elder_id: int) -> int:
    """Names and numbers in the audit entries about the elder (who did what, when stays)."""
    count = 0
    for entry in session.exec(select(AuditLog).where(AuditLog.elder_id == elder_id)):
        if any(key in entry.detail for key in AUDIT_IDENTIFIERS):
            entry.detail = {key: ("***" if key in AUDIT_IDENTIFIERS else value) for key, value in entry.detail.items()}
            session.add(entry)
            count += 1
    return count


def erasures(*, session: Session, limit: int = 200) -> list[ElderErasure]:
    return list(session.exec(select(ElderErasure).order_by(ElderErasure.id.desc()).limit(limit)))
