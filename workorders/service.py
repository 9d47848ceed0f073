"""Work orders: the catalog, providers, orders and the state machine.

Every status change goes through `transition`, which refuses what TRANSITIONS does not allow (a
Conflict, HTTP 409, with both states named in Chinese) and writes a WorkOrderEvent. The caller
owns the transaction: these functions flush, never commit.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from callcenter import db
from callcenter.areas import service as areas_service
from callcenter.auth.models import User
from callcenter.calls import service as calls_service
from callcenter.elders import service as elders_service
from callcenter.errors import Conflict, FieldErrors, PermissionDenied
from callcenter.phones import InvalidPhoneNumber, parse_phone
from callcenter.timeutil import day_start_utc, utcnow
from workorders import routing, sms
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
               note: str = "", provider_id: int | None = None, changes: dict | None = None) -> WorkOrderEvent:
    """Move `order` to `to` if the state machine allows it, and record who, when, from, to, why.

    The move is a compare-and-set on the status read: when two workers (or a worker and a person)
    move the same order at once, one wins and the other gets IllegalTransition, so an order is
    never dispatched twice."""
    if to not in TRANSITIONS.get(order.status, set()):
        raise IllegalTransition(order, to)
    now, before = utcnow(), order.status
    session.flush()
    moved = session.execute(update(WorkOrder).where(WorkOrder.id == order.id, WorkOrder.status == before)
                            .values(status=to, updated_at=now, **(changes or {}))).rowcount
    session.refresh(order)
    if moved != 1:
        raise IllegalTransition(order, to)
    event = WorkOrderEvent(order_id=order.id, at=now, actor_user_id=actor_user_id, actor=actor, from_status=before,
                           to_status=to, provider_id=provider_id, note=note.strip())
    session.add(event)
    session.flush()
    return event


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


# --- routing -----------------------------------------------------------------------------------------

def dispatch_next(*, session: Session, order_id: int, tz) -> WorkOrderEvent | None:
    """Dispatch a `new` or `rejected` order to the best eligible provider and queue its SMS, or
    escalate it when nobody is eligible. Returns the dispatch event (its id marks this dispatch
    for the acceptance deadline), None when there was nothing to do (already dispatched: running
    the same job twice assigns once) or it was escalated."""
    order = get_or_raise(session=session, order_id=order_id)
    if order.status not in ("new", "rejected"):
        return None
    now = utcnow()
    today = now.astimezone(tz).date()
    chosen = routing.choose(_candidates(session=session, today_start=day_start_utc(today, tz)), service_type=order.service_type,
                            areas=_areas_of(session=session, community_id=order.community_id), today=today,
                            excluded=_refused_by(session=session, order_id=order.id))
    if chosen is None:
        transition(session=session, order=order, to="escalated", actor=SYSTEM, note="没有可派单的服务商（服务类型、覆盖区域、接单上限）")
        return None
    kind = session.get(ServiceType, order.service_type)
    event = transition(session=session, order=order, to="dispatched", actor=SYSTEM, provider_id=chosen.id,
                       note=f"派单，{kind.accept_minutes} 分钟内须接单", changes={"provider_id": chosen.id, "dispatched_at": now})
    provider = session.get(Provider, chosen.id)
    sms.send(session=session, to=provider.phone, order_id=order.id, provider_id=provider.id,
             text=f"【12349】新工单 {order.number}（{kind.name}），请于 {kind.accept_minutes} 分钟内登录接单。")
    return event


def lapse_dispatch(*, session: Session, order_id: int, dispatch_event_id: int) -> bool:
    """The acceptance deadline of one dispatch has passed: if that dispatch still stands (not
    accepted, not re-dispatched), it counts as a refusal by the provider. True when it lapsed."""
    order = get_or_raise(session=session, order_id=order_id)
    latest = session.exec(select(WorkOrderEvent.id).where(WorkOrderEvent.order_id == order.id, WorkOrderEvent.to_status == "dispatched")
                          .order_by(WorkOrderEvent.id.desc())).first()
    if order.status != "dispatched" or latest != dispatch_event_id:
        return False
    transition(session=session, order=order, to="rejected", actor=SYSTEM, provider_id=order.provider_id, note="超时未接单")
    return True


def orders_waiting_for_routing(*, session: Session, older_than) -> list[int]:
    """Orders still `new` (or `rejected`) since before `older_than`: their routing job was lost
    (e.g. Redis was down when they were created)."""
    rows = session.exec(select(WorkOrder.id).where(WorkOrder.status.in_(("new", "rejected")), WorkOrder.updated_at < older_than))
    return list(rows)


def _candidates(*, session: Session, today_start) -> list[routing.Candidate]:
    load = dict(session.exec(select(WorkOrderEvent.provider_id, func.count()).where(
        WorkOrderEvent.to_status == "dispatched", WorkOrderEvent.at >= today_start).group_by(WorkOrderEvent.provider_id)).all())
    return [routing.Candidate(id=p.id, status=p.status, service_types=tuple(p.service_types), coverage=frozenset(p.coverage),
                              daily_capacity=p.daily_capacity, dispatched_today=load.get(p.id, 0), rating=p.rating,
                              contract_start=p.contract_start, contract_end=p.contract_end)
            for p in session.exec(select(Provider).where(Provider.status == "active"))]


def _areas_of(*, session: Session, community_id: int | None) -> frozenset[int]:
    """The community and the street and district above it: coverage may name any of them."""
    if community_id is None:
        return frozenset()
    return frozenset(area.id for area in areas_service.path_of(session=session, area_id=community_id))


def _refused_by(*, session: Session, order_id: int) -> frozenset[int]:
    rows = session.exec(select(WorkOrderEvent.provider_id).where(WorkOrderEvent.order_id == order_id,
                                                                 WorkOrderEvent.to_status == "rejected"))
    return frozenset(row for row in rows if row is not None)
