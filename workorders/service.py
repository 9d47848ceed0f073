"""Work orders: the catalog, providers, orders and the state machine.

Every status change goes through `transition`, which refuses what TRANSITIONS does not allow (a
Conflict, HTTP 409, with both states named in Chinese) and writes a WorkOrderEvent. The caller
owns the transaction: these functions flush, never commit.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from callcenter import db
from callcenter.auth.models import User
from callcenter.calls import service as calls_service
from callcenter.elders import service as elders_service
from callcenter.errors import Conflict, FieldErrors, PermissionDenied
from callcenter.phones import InvalidPhoneNumber, parse_phone
from callcenter.timeutil import utcnow
from workorders.models import (
    PROVIDER_STATUSES,
    STATUSES,
    TRANSITIONS,
    URGENCIES,
    Provider,
    ServiceType,
    WorkOrder,
    WorkOrderEvent,
)

OPEN_STATUSES = frozenset(STATUSES) - {"closed", "cancelled"}
SYSTEM = "系统"


class IllegalTransition(Conflict):
    def __init__(self, order: WorkOrder, to: str):
        super().__init__(f"工单 {order.number} 当前状态为“{STATUSES.get(order.status, order.status)}”，"
                         f"不能变更为“{STATUSES.get(to, to)}”")


# --- catalog and providers -------------------------------------------------------------------------

def service_types(*, session: Session, active_only: bool = True) -> list[ServiceType]:
    query = select(ServiceType).order_by(ServiceType.code)
    if active_only:
        query = query.where(ServiceType.active)
    return list(session.exec(query))


def service_type_or_raise(*, session: Session, code: str) -> ServiceType:
    row = session.get(ServiceType, code)
    if row is None or not row.active:
        names = "、".join(f"{t.code}（{t.name}）" for t in service_types(session=session))
        raise FieldErrors.single("service_type", f"服务类型无效：{code}（可选：{names}）")
    return row


def save_provider(*, session: Session, fields: dict, area_code: str, provider_id: int | None = None) -> Provider:
    """Create (no `provider_id`) or change a provider; every field is checked and named in Chinese."""
    provider = db.get_or_raise(session, Provider, provider_id, "服务商") if provider_id else Provider(name="", phone="")
    errors = []
    if "phone" in fields:
        try:
            fields["phone"] = parse_phone(fields["phone"] or "", default_area_code=area_code).e164
        except InvalidPhoneNumber as exc:
            errors.append(("phone", str(exc)))
    for code in fields.get("service_types") or []:
        if session.get(ServiceType, code) is None:
            errors.append(("service_types", f"服务类型无效：{code}"))
    if "status" in fields and fields["status"] not in PROVIDER_STATUSES:
        errors.append(("status", f"状态无效：{fields['status']}（可选：{'、'.join(PROVIDER_STATUSES)}）"))
    if fields.get("daily_capacity") is not None and fields["daily_capacity"] < 0:
        errors.append(("daily_capacity", "每日接单上限不能为负数"))
    start, end = fields.get("contract_start", provider.contract_start), fields.get("contract_end", provider.contract_end)
    if start and end and end < start:
        errors.append(("contract_end", "合同结束日期早于开始日期"))
    if provider_id is None and not (fields.get("name") or "").strip():
        errors.append(("name", "必填"))
    if errors:
        raise FieldErrors(errors)
    name = (fields.get("name") or provider.name).strip()
    if session.exec(select(Provider.id).where(Provider.name == name, Provider.id != provider.id)).first() is not None:
        raise Conflict(f"服务商名称已存在：{name}")
    for key, value in fields.items():
        setattr(provider, key, value.strip() if isinstance(value, str) else value)
    session.add(provider)
    session.flush()
    return provider


def list_providers(*, session: Session) -> list[Provider]:
    return list(session.exec(select(Provider).order_by(Provider.name)))


# --- orders ----------------------------------------------------------------------------------------

def create_order(*, session: Session, user: User, service_type: str, elder_id: int | None = None, call_id: int | None = None,
                 urgency: str = "normal", description: str = "", window_start: datetime | None = None,
                 window_end: datetime | None = None, tz) -> WorkOrder:
    """A new order for an elder, from a call (the agent who handled it) or from the elder's page."""
    kind = service_type_or_raise(session=session, code=service_type)
    if urgency not in URGENCIES:
        raise FieldErrors.single("urgency", f"紧急程度无效：{urgency}（可选：{'、'.join(URGENCIES)}）")
    if window_start and window_end and window_end <= window_start:
        raise FieldErrors.single("window_end", "服务时间段的结束须晚于开始")
    if call_id is not None:
        call = calls_service.get_or_raise(session=session, call_id=call_id)
        if not calls_service.handles(user=user, call=call):
            raise PermissionDenied("这不是您接听的通话，不能据此建单")
        if call.elder_id is None:
            raise Conflict("该通话尚未关联老人档案，请先确认来电老人")
        if elder_id is not None and elder_id != call.elder_id:
            raise Conflict("工单老人与通话关联的老人不一致")
        elder_id = call.elder_id
    if elder_id is None:
        raise FieldErrors.single("elder_id", "请指定老人（或从通话建单）")
    elder = elders_service.get_or_raise(session=session, elder_id=elder_id)
    if not elder.active:
        raise Conflict(f"该老人档案已停用：{elder.deactivated_reason or ''}")
    now = utcnow()
    order = WorkOrder(
        number="", elder_id=elder.id, call_id=call_id, service_type=kind.code, urgency=urgency, address=elder.address or "",
        community_id=elder.community_id, window_start=window_start, window_end=window_end, description=description.strip(),
        created_by=user.id, created_at=now, updated_at=now, accept_due=now + timedelta(minutes=kind.accept_minutes),
        arrive_due=now + timedelta(minutes=kind.arrive_minutes), complete_due=now + timedelta(minutes=kind.complete_minutes),
    )
    _insert_numbered(session=session, order=order, day=now.astimezone(tz).date())
    session.add(WorkOrderEvent(order_id=order.id, at=now, actor_user_id=user.id, actor=user.display_name or user.username,
                               from_status=None, to_status="new", note="来电建单" if call_id else "建单"))
    session.flush()
    return order


def _insert_numbered(*, session: Session, order: WorkOrder, day: date, attempts: int = 5) -> None:
    """Number the order `GD<day>-<n>` (n counts the day's orders) and insert it; two orders
    numbered at once collide on the unique number, and the later one takes the next."""
    prefix = f"GD{day:%Y%m%d}-"
    for _ in range(attempts):
        last = session.exec(select(func.max(WorkOrder.number)).where(WorkOrder.number.startswith(prefix))).one()
        order.number = f"{prefix}{int(last.rsplit('-', 1)[1]) + 1 if last else 1:04d}"
        try:
            with session.begin_nested():
                session.add(order)
                session.flush()
            return
        except IntegrityError:
            continue
    raise Conflict("工单编号分配冲突，请重试")


def get_or_raise(*, session: Session, order_id: int) -> WorkOrder:
    return db.get_or_raise(session, WorkOrder, order_id, "工单")


def transition(*, session: Session, order: WorkOrder, to: str, actor: str, actor_user_id: int | None = None,
               note: str = "", provider_id: int | None = None) -> WorkOrder:
    """Move `order` to `to` if the state machine allows it, and record who, when, from, to, why."""
    if to not in TRANSITIONS.get(order.status, set()):
        raise IllegalTransition(order, to)
    now = utcnow()
    session.add(WorkOrderEvent(order_id=order.id, at=now, actor_user_id=actor_user_id, actor=actor, from_status=order.status,
                               to_status=to, provider_id=provider_id, note=note.strip()))
    order.status, order.updated_at = to, now
    session.add(order)
    session.flush()
    return order


def events_of(*, session: Session, order_id: int) -> list[WorkOrderEvent]:
    return list(session.exec(select(WorkOrderEvent).where(WorkOrderEvent.order_id == order_id).order_by(WorkOrderEvent.id)))


def search(*, session: Session, status: str | None = None, elder_id: int | None = None, open_only: bool = False,
           page: int = 1, page_size: int = 50) -> tuple[list[WorkOrder], int]:
    query = select(WorkOrder)
    if status:
        query = query.where(WorkOrder.status == status)
    if open_only:
        query = query.where(WorkOrder.status.in_(OPEN_STATUSES))
    if elder_id is not None:
        query = query.where(WorkOrder.elder_id == elder_id)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(WorkOrder.created_at.desc(), WorkOrder.id.desc()).offset((page - 1) * page_size).limit(page_size))
    return list(rows), total
