"""Work orders: the catalog, providers, orders and the state machine.

Every status change goes through `transition`, which refuses what TRANSITIONS does not allow (a
Conflict, HTTP 409, with both states named in Chinese) and writes a WorkOrderEvent. The caller
owns the transaction: these functions flush, never commit.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, select

from callcenter import db
from callcenter.areas import service as areas_service
from callcenter.auth import service as auth_service
from callcenter.auth.models import User
from callcenter.calls import service as calls_service
from callcenter.elders import service as elders_service
from callcenter.elders.models import Elder, ElderPhone
from callcenter.errors import Conflict, FieldErrors, PermissionDenied
from callcenter.notify import service as notify_service
from callcenter.phones import InvalidPhoneNumber, parse_phone
from callcenter.timeutil import as_utc, day_start_utc, utcnow
from workorders import routing, subsidy
from workorders import staff as staff_service
from workorders.models import (
    OPEN,
    ROUTABLE,
    TRANSITIONS,
    OrderStatus,
    ProviderStatus,
    Urgency,
    Provider,
    ProviderStaff,
    ServiceType,
    WorkOrder,
    WorkOrderEvent,
    WorkOrderNumber,
)

SYSTEM = "系统"


class IllegalTransition(Conflict):
    def __init__(self, order: WorkOrder, to: str):
        super().__init__(f"工单 {order.number} 当前状态为“{OrderStatus.label_of(order.status)}”，"
                         f"不能变更为“{OrderStatus.label_of(to)}”")


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
    if "status" in fields and fields["status"] not in ProviderStatus.labels():
        errors.append(("status", f"状态无效：{fields['status']}（可选：{ProviderStatus.choices()}）"))
    elif provider_id and fields.get("status", provider.status) not in ("active", provider.status) \
            and not (fields.get("status_reason") or "").strip():  # suspending or ending a working provider
        errors.append(("status_reason", f"请填写{ProviderStatus(fields['status']).label}的原因"))
    if fields.get("status") == "active":
        fields["status_reason"] = ""
    if fields.get("daily_capacity") is not None and fields["daily_capacity"] < 0:
        errors.append(("daily_capacity", "每日接单上限不能为负数"))
    start, end = fields.get("contract_start", provider.contract_start), fields.get("contract_end", provider.contract_end)
    if start and end and end < start:
        errors.append(("contract_end", "合同结束日期早于开始日期"))
    if (provider_id is None or fields.get("name") is not None) and not (fields.get("name") or "").strip():
        errors.append(("name", "服务商名称不能为空"))
    if errors:
        raise FieldErrors(errors)
    name = (fields.get("name") or provider.name).strip()
    if session.exec(select(Provider.id).where(Provider.name == name, Provider.id != provider.id)).first() is not None:
        raise Conflict(f"服务商名称已存在：{name}")
    for key, value in fields.items():
        setattr(provider, key, value.strip() if isinstance(value, str) else value)
    session.add(provider)
    session.flush()
    if provider_id is None:  # its dispatcher: the account the dispatch SMS's login link signs in
        staff_service.create_staff(session=session, provider_id=provider.id, name=provider.contact_name or provider.name,
                                   phone=provider.phone, area_code=area_code)
    return provider


SLA_FIELDS = {"accept_minutes": "接单时限", "arrive_minutes": "上门时限", "complete_minutes": "完成时限"}


def update_service_type(*, session: Session, code: str, fields: dict) -> ServiceType:
    """Change a service type's name, SLA minutes, cost, purchase flag or active flag; the SLA
    must run accept ≤ arrive ≤ complete. Orders already made keep their deadlines."""
    row = db.get_or_raise(session, ServiceType, code, "服务类型")
    errors = []
    if "name" in fields and not 1 <= len((fields["name"] or "").strip()) <= 40:
        errors.append(("name", "名称须为 1 到 40 个字"))
    for name, label in SLA_FIELDS.items():
        if name in fields and not 1 <= (fields[name] or 0) <= 30 * 24 * 60:
            errors.append((name, f"{label}须在 1 分钟到 30 天之间"))
    minutes = [fields.get(name, getattr(row, name)) for name in SLA_FIELDS]
    if not errors and not minutes[0] <= minutes[1] <= minutes[2]:
        errors.append(("complete_minutes", "时限应满足：接单 ≤ 上门 ≤ 完成"))
    if "unit_cost" in fields and (fields["unit_cost"] is None or not 0 <= fields["unit_cost"] < 100_000_000):
        errors.append(("unit_cost", "单价应在 0 至 99999999.99 元之间"))
    if errors:
        raise FieldErrors(errors)
    for key, value in fields.items():
        setattr(row, key, value.strip() if isinstance(value, str) else value)
    session.add(row)
    return row


def list_providers(*, session: Session) -> list[Provider]:
    return list(session.exec(select(Provider).order_by(Provider.name)))


# --- orders ----------------------------------------------------------------------------------------

def create_order(*, session: Session, user: User, service_type: str, elder_id: int | None = None, call_id: int | None = None,
                 urgency: str = "normal", description: str = "", window_start: datetime | None = None,
                 window_end: datetime | None = None, self_paid: bool = False, approve_overdraw: bool = False, tz) -> WorkOrder:
    """A new order for an elder, from a call (the agent who handled it) or from the elder's page.
    A subsidised service the elder's balance cannot pay for is refused unless a supervisor
    approves the overdraw (`approve_overdraw`) or the elder pays (`self_paid`)."""
    kind = service_type_or_raise(session=session, code=service_type)
    if urgency not in Urgency.labels():
        raise FieldErrors.single("urgency", f"紧急程度无效：{urgency}（可选：{Urgency.choices()}）")
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
    if approve_overdraw and not auth_service.has_role(user, "supervisor"):
        raise PermissionDenied("超额使用补贴须由班长批准")
    if subsidy.applies(kind, self_paid=self_paid):
        subsidy.check_new_order(session=session, elder=elder, kind=kind, approved=approve_overdraw)
    now = utcnow()
    order = WorkOrder(
        number="", elder_id=elder.id, call_id=call_id, service_type=kind.code, urgency=urgency, address=elder.address or "",
        community_id=elder.community_id, window_start=window_start, window_end=window_end, description=description.strip(),
        created_by=user.id, created_at=now, updated_at=now, self_paid=self_paid,
        overdraw_approved_by=user.id if approve_overdraw else None, **deadlines(kind, now),
    )
    _insert_recorded(session=session, order=order, tz=tz, actor=user.display_name or user.username, actor_user_id=user.id,
                     note="来电建单" if call_id else "建单")
    return order


def _insert_recorded(*, session: Session, order: WorkOrder, tz, actor: str, actor_user_id: int | None, note: str) -> None:
    """Number and insert a new order, with the event of its first status."""
    _insert_numbered(session=session, order=order, day=order.created_at.astimezone(tz).date())
    session.add(WorkOrderEvent(order_id=order.id, at=order.created_at, actor_user_id=actor_user_id, actor=actor,
                               from_status=None, to_status=order.status, note=note))
    session.flush()


def deadlines(kind: ServiceType, start: datetime) -> dict[str, datetime]:
    """The SLA's deadlines for an order that starts waiting at `start`."""
    return {"accept_due": start + timedelta(minutes=kind.accept_minutes),
            "arrive_due": start + timedelta(minutes=kind.arrive_minutes),
            "complete_due": start + timedelta(minutes=kind.complete_minutes)}


def create_draft(*, session: Session, elder: Elder, service_type: str, call_id: int | None, description: str, actor: str,
                 tz) -> WorkOrder:
    """A draft order nobody has confirmed yet (the IVR's emergency draft for a call): it is not
    routed until an agent confirms it (`confirm_draft`) or cancels it as a false alarm."""
    kind = service_type_or_raise(session=session, code=service_type)
    now = utcnow()
    order = WorkOrder(number="", elder_id=elder.id, call_id=call_id, service_type=kind.code, urgency=Urgency.EMERGENCY, status=OrderStatus.DRAFT,
                      address=elder.address or "", community_id=elder.community_id, description=description.strip(),
                      created_at=now, updated_at=now, **deadlines(kind, now))
    _insert_recorded(session=session, order=order, tz=tz, actor=actor, actor_user_id=None, note=description)
    return order


def confirm_draft(*, session: Session, order: WorkOrder, user: User, description: str | None = None) -> WorkOrderEvent:
    """An agent confirms a draft: it becomes a new order, routed from now, with deadlines from now."""
    if order.status != OrderStatus.DRAFT:
        raise IllegalTransition(order, OrderStatus.NEW)
    changes = {**deadlines(service_type_or_raise(session=session, code=order.service_type), utcnow()), "created_by": user.id}
    if description is not None and description.strip():
        changes["description"] = description.strip()
    return transition(session=session, order=order, to=OrderStatus.NEW, actor=user.display_name or user.username,
                      actor_user_id=user.id, note="坐席确认紧急工单", changes=changes)


def _insert_numbered(*, session: Session, order: WorkOrder, day: date, attempts: int = 5) -> None:
    """Number the order `GD<day>-<n>` (n counts the day's orders, from the day's counter) and
    insert it. A number already taken (an order written behind the counter's back) is skipped."""
    prefix = f"GD{day:%Y%m%d}-"
    for _ in range(attempts):
        order.number = f"{prefix}{_next_number(session=session, day=day, prefix=prefix):04d}"
        try:
            with session.begin_nested():
                session.add(order)
                session.flush()
            return
        except IntegrityError:
            continue
    raise Conflict("工单编号分配冲突，请重试")


def _next_number(*, session: Session, day: date, prefix: str) -> int:
    """The day's next order number: the counter row goes up by one (locked until commit, so two
    transactions never get the same number); the day's first order starts it after any orders
    already numbered that day."""
    table = WorkOrderNumber.__table__
    bumped = session.connection().execute(update(table).where(table.c.day == day).values(last=table.c.last + 1)
                                          .returning(table.c.last)).scalar()
    if bumped is not None:
        return bumped
    numbers = session.exec(select(WorkOrder.number).where(WorkOrder.number.startswith(prefix))).all()
    start = max((int(number.rsplit("-", 1)[1]) for number in numbers), default=0) + 1
    statement = db.upsert_statement(session.connection().dialect.name, table, ["day"],
                                    lambda excluded: {"last": table.c.last + 1})
    return session.connection().execute(statement.values(day=day, last=start).returning(table.c.last)).scalar()


def get_or_raise(*, session: Session, order_id: int) -> WorkOrder:
    return db.get_or_raise(session, WorkOrder, order_id, "工单")


def transition(*, session: Session, order: WorkOrder, to: str, actor: str, actor_user_id: int | None = None,
               note: str = "", provider_id: int | None = None, changes: dict | None = None, flush: bool = True) -> WorkOrderEvent:
    """Move `order` to `to` if the state machine allows it, and record who, when, from, to, why.

    The move is a compare-and-set on the status read: when two workers (or a worker and a person)
    move the same order at once, one wins and the other gets IllegalTransition, so an order is
    never dispatched twice. With `flush=False` (routing in batches) the event row is written by
    the caller's next flush, together with the batch's others."""
    if to not in TRANSITIONS.get(order.status, frozenset()):
        raise IllegalTransition(order, to)
    now, before = utcnow(), order.status
    values = {"status": to, "updated_at": now, **(changes or {})}
    if flush:
        session.flush()
    table = WorkOrder.__table__
    moved = session.connection().execute(update(table).where(table.c.id == order.id, table.c.status == before).values(**values)).rowcount
    if moved != 1:
        session.refresh(order)  # what it has become meanwhile, for the message
        raise IllegalTransition(order, to)
    for key, value in values.items():  # what the row now holds, without reading it back
        set_committed_value(order, key, value)
    event = WorkOrderEvent(order_id=order.id, at=now, actor_user_id=actor_user_id, actor=actor, from_status=before,
                           to_status=to, provider_id=provider_id, note=note.strip())
    session.add(event)
    if flush:
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
        query = query.where(WorkOrder.status.in_(OPEN))
    if elder_id is not None:
        query = query.where(WorkOrder.elder_id == elder_id)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(WorkOrder.created_at.desc(), WorkOrder.id.desc()).offset((page - 1) * page_size).limit(page_size))
    return list(rows), total


# --- routing -----------------------------------------------------------------------------------------

LoginLink = Callable[[Session, ProviderStaff], str]  # the link is recorded in the dispatch's transaction


class Router:
    """Dispatches orders within one transaction. What every order needs (the providers and
    their load today, service types, areas, dispatcher accounts) is read once and kept current
    in memory as orders are dispatched, so routing a batch costs a few statements per order."""

    def __init__(self, *, session: Session, tz, login_link: LoginLink | None = None):
        self.session, self.login_link = session, login_link
        self.today = utcnow().astimezone(tz).date()
        candidates, self.providers = _candidates(session=session, today_start=day_start_utc(self.today, tz))
        self.notifier = notify_service.Notifier(session=session)
        self.notifier.prefetch(provider.phone for provider in self.providers.values())
        self.candidates = {c.id: c for c in candidates}
        self.kinds = {row.code: row for row in service_types(session=session, active_only=False)}
        self.areas: dict[int | None, frozenset[int]] = {}
        self.dispatchers: dict[int, ProviderStaff | None] = {}
        self.mobiles: dict[int, str | None] = {}
        self.deadlines: list[tuple[int, WorkOrderEvent, int]] = []  # (order id, dispatch event, minutes to accept)

    def route(self, order: WorkOrder) -> WorkOrderEvent | None:
        """Dispatch a `new` or `rejected` order to the best eligible provider, or escalate it
        when nobody is eligible. The dispatch event (its id marks this dispatch for the
        acceptance deadline), or None: escalated, or nothing to do (already dispatched: running
        the same job twice assigns once)."""
        if order.status not in ROUTABLE:
            return None
        if order.community_id not in self.areas:
            self.areas[order.community_id] = _areas_of(session=self.session, community_id=order.community_id)
        refused = _refused_by(session=self.session, order_id=order.id) if order.status == OrderStatus.REJECTED else frozenset()
        chosen = routing.choose(list(self.candidates.values()), service_type=order.service_type, areas=self.areas[order.community_id],
                                today=self.today, excluded=refused)
        if chosen is None:
            transition(session=self.session, order=order, to=OrderStatus.ESCALATED, actor=SYSTEM,
                       note="没有可派单的服务商（服务类型、覆盖区域、接单上限）")
            return None
        return self.dispatch(order, self.providers[chosen.id], actor=SYSTEM)

    def dispatch(self, order: WorkOrder, provider: Provider, *, actor: str, actor_user_id: int | None = None) -> WorkOrderEvent:
        """Give the order to `provider`: the provider gets an SMS (with a login link for its
        dispatcher account), the elder a confirmation code, asked for at completion. The rows
        are written at the caller's next flush (one INSERT per table for a whole batch)."""
        kind = self.kinds[order.service_type]
        code = order.confirm_code or f"{secrets.randbelow(10**6):06d}"
        event = transition(session=self.session, order=order, to=OrderStatus.DISPATCHED, actor=actor, actor_user_id=actor_user_id,
                           provider_id=provider.id, note=f"派单给{provider.name}，{kind.accept_minutes} 分钟内须接单",
                           changes={"provider_id": provider.id, "dispatched_at": utcnow(), "confirm_code": code}, flush=False)
        self.deadlines.append((order.id, event, kind.accept_minutes))
        if provider.id in self.candidates:  # its load today, for the next order of this batch
            known = self.candidates[provider.id]
            self.candidates[provider.id] = replace(known, dispatched_today=known.dispatched_today + 1)
        if provider.id not in self.dispatchers:
            self.dispatchers[provider.id] = staff_service.dispatcher_of(session=self.session, provider=provider)
        dispatcher = self.dispatchers[provider.id]
        about = {"number": order.number, "service": kind.name, "minutes": kind.accept_minutes}
        if dispatcher and self.login_link:
            self.notifier.notify("order_dispatched_provider", to=provider.phone, order_id=order.id, provider_id=provider.id,
                                 values=about | {"link": self.login_link(self.session, dispatcher)})
        else:
            self.notifier.notify("order_dispatched_provider_nolink", to=provider.phone, order_id=order.id, provider_id=provider.id,
                                 values=about)
        if order.elder_id not in self.mobiles:
            self.prefetch_mobiles({order.elder_id})
        if mobile := self.mobiles[order.elder_id]:
            self.notifier.notify("order_dispatched_elder", to=mobile, order_id=order.id,
                                 values={"service": kind.name, "number": order.number, "provider": provider.name, "code": code})
        return event

    def prefetch_mobiles(self, elder_ids: set[int]) -> None:
        """The elders' first mobile numbers, in one query for a whole batch."""
        rows = self.session.exec(select(ElderPhone.elder_id, ElderPhone.number).where(
            ElderPhone.elder_id.in_(elder_ids), ElderPhone.kind == "mobile").order_by(ElderPhone.is_primary.desc(), ElderPhone.id))
        self.mobiles.update({elder_id: None for elder_id in elder_ids})
        for elder_id, number in rows:
            self.mobiles[elder_id] = self.mobiles[elder_id] or number
        self.notifier.prefetch(number for number in self.mobiles.values() if number)

    def due_deadlines(self) -> list[tuple[int, int, int]]:
        """(order id, dispatch event id, minutes to accept) of this router's dispatches, once flushed."""
        return [(order_id, event.id, minutes) for order_id, event, minutes in self.deadlines]


def dispatch_next(*, session: Session, order_id: int, tz, login_link: LoginLink | None = None) -> list[tuple[int, int, int]]:
    """Route one order (see Router.route); the acceptance deadline to schedule, if dispatched."""
    db.write_lock(session)
    router = Router(session=session, tz=tz, login_link=login_link)
    router.route(get_or_raise(session=session, order_id=order_id))
    session.flush()
    return router.due_deadlines()


class RoutingFailed(Exception):
    """Routing one order of a batch failed; the batch is rolled back and retried without it."""

    def __init__(self, order_id: int, cause: Exception):
        super().__init__(f"order {order_id}: {type(cause).__name__}: {cause}")
        self.order_id, self.cause = order_id, cause


def route_waiting(*, session: Session, tz, login_link: LoginLink | None = None, limit: int = 100,
                  exclude: set[int] = frozenset()) -> tuple[list[tuple[int, int, int]], int]:
    """Route up to `limit` orders waiting in `new` / `rejected`, oldest first, in the caller's
    transaction; returns the acceptance deadlines to schedule (order id, dispatch event id,
    minutes) and how many orders were looked at. An order that
    fails raises RoutingFailed naming it (the caller rolls back and goes on without it). The
    rows are locked and locked rows skipped (PostgreSQL), so two workers share the waiting
    orders between them; SQLite has one writer at a time anyway."""
    db.write_lock(session)
    query = select(WorkOrder).where(WorkOrder.status.in_(ROUTABLE))
    if exclude:
        query = query.where(WorkOrder.id.not_in(exclude))
    orders = list(session.exec(query.order_by(WorkOrder.id).limit(limit).with_for_update(skip_locked=True)))
    router = Router(session=session, tz=tz, login_link=login_link)
    router.prefetch_mobiles({order.elder_id for order in orders})
    for order in orders:
        try:
            router.route(order)
        except Exception as exc:
            raise RoutingFailed(order.id, exc) from exc
    session.flush()  # the batch's events and messages, a few INSERTs in all
    return router.due_deadlines(), len(orders)


def lapse_dispatch(*, session: Session, order_id: int, dispatch_event_id: int) -> bool:
    """The acceptance deadline of one dispatch has passed: if that dispatch still stands (not
    accepted, not re-dispatched), it counts as a refusal by the provider. True when it lapsed."""
    db.write_lock(session)
    order = get_or_raise(session=session, order_id=order_id)
    latest = session.exec(select(WorkOrderEvent.id).where(WorkOrderEvent.order_id == order.id, WorkOrderEvent.to_status == OrderStatus.DISPATCHED)
                          .order_by(WorkOrderEvent.id.desc())).first()
    if order.status != OrderStatus.DISPATCHED or latest != dispatch_event_id:
        return False
    transition(session=session, order=order, to=OrderStatus.REJECTED, actor=SYSTEM, provider_id=order.provider_id, note="超时未接单")
    return True


def orders_waiting_for_routing(*, session: Session, older_than) -> list[int]:
    """Orders still `new` (or `rejected`) since before `older_than`: their routing job was lost
    (e.g. Redis was down when they were created)."""
    rows = session.exec(select(WorkOrder.id).where(WorkOrder.status.in_(ROUTABLE), WorkOrder.updated_at < older_than))
    return list(rows)


def dispatches_overdue(*, session: Session, now: datetime, grace: timedelta) -> list[tuple[int, int]]:
    """(order id, dispatch event id) of dispatches not accepted by their deadline plus `grace`:
    their deadline job was lost (Redis down when it was due to be scheduled)."""
    accept_minutes = {row.code: row.accept_minutes for row in service_types(session=session, active_only=False)}
    rows = session.exec(select(WorkOrder.id, WorkOrder.service_type, WorkOrder.dispatched_at)
                        .where(WorkOrder.status == OrderStatus.DISPATCHED, WorkOrder.dispatched_at < now - grace)).all()
    overdue = [order_id for order_id, kind, at in rows if as_utc(at) + timedelta(minutes=accept_minutes[kind]) + grace < now]
    out = []
    for order_id in overdue:
        latest = session.exec(select(WorkOrderEvent.id).where(WorkOrderEvent.order_id == order_id, WorkOrderEvent.to_status == OrderStatus.DISPATCHED)
                              .order_by(WorkOrderEvent.id.desc())).first()
        out.append((order_id, latest))
    return out


def _candidates(*, session: Session, today_start) -> tuple[list[routing.Candidate], dict[int, Provider]]:
    """The active providers as routing sees them (with today's dispatch count), and the rows
    themselves (kept, so the session's weak identity map does not let them go)."""
    load = dict(session.exec(select(WorkOrderEvent.provider_id, func.count()).where(
        WorkOrderEvent.to_status == OrderStatus.DISPATCHED, WorkOrderEvent.at >= today_start).group_by(WorkOrderEvent.provider_id)).all())
    providers = {p.id: p for p in session.exec(select(Provider).where(Provider.status == "active"))}
    return [routing.Candidate(id=p.id, status=p.status, service_types=tuple(p.service_types), coverage=frozenset(p.coverage),
                              daily_capacity=p.daily_capacity, dispatched_today=load.get(p.id, 0), rating=p.rating,
                              contract_start=p.contract_start, contract_end=p.contract_end)
            for p in providers.values()], providers


def _areas_of(*, session: Session, community_id: int | None) -> frozenset[int]:
    """The community and the street and district above it: coverage may name any of them."""
    if community_id is None:
        return frozenset()
    return frozenset(area.id for area in areas_service.path_of(session=session, area_id=community_id))


def _refused_by(*, session: Session, order_id: int) -> frozenset[int]:
    rows = session.exec(select(WorkOrderEvent.provider_id).where(WorkOrderEvent.order_id == order_id,
                                                                 WorkOrderEvent.to_status == OrderStatus.REJECTED))
    return frozenset(row for row in rows if row is not None)


# --- the provider's side (mobile pages) ------------------------------------------------------------

MAX_CODE_FAILURES = 5


class WrongConfirmCode(Conflict):
    pass


def _staff_label(session: Session, staff: ProviderStaff) -> str:
    provider = session.get(Provider, staff.provider_id)
    return f"{provider.name}·{staff.name}"[:80]


def accept(*, session: Session, order: WorkOrder, staff: ProviderStaff) -> WorkOrderEvent:
    return transition(session=session, order=order, to=OrderStatus.ACCEPTED, actor=_staff_label(session, staff), provider_id=staff.provider_id,
                      note="服务商接单", changes={"accepted_at": utcnow()})


def reject(*, session: Session, order: WorkOrder, staff: ProviderStaff, reason: str) -> WorkOrderEvent:
    """Refuse with a reason; routing then offers the order to the next provider (never this one)."""
    if not reason.strip():
        raise FieldErrors.single("reason", "请填写拒单原因")
    return transition(session=session, order=order, to=OrderStatus.REJECTED, actor=_staff_label(session, staff), provider_id=staff.provider_id,
                      note=f"拒单：{reason.strip()}")


def check_in(*, session: Session, order: WorkOrder, staff: ProviderStaff) -> WorkOrderEvent:
    now = utcnow()
    late = "（晚于约定到达时间）" if now > as_utc(order.arrive_due) else ""
    return transition(session=session, order=order, to=OrderStatus.IN_SERVICE, actor=_staff_label(session, staff), provider_id=staff.provider_id,
                      note=f"上门签到{late}", changes={"arrived_at": now})


def check_confirm_code(*, order: WorkOrder, code: str) -> None:
    """WrongConfirmCode unless `code` is the elder's; the caller counts a failure in its own
    transaction (count_code_failure) so the refused completion's rollback keeps it."""
    if order.confirm_failures >= MAX_CODE_FAILURES:
        raise WrongConfirmCode("确认码错误次数过多，已锁定；请联系 12349 热线核实后处理")
    if not order.confirm_code or not secrets.compare_digest(code.strip(), order.confirm_code):
        left = MAX_CODE_FAILURES - order.confirm_failures - 1
        raise WrongConfirmCode(f"确认码不正确，请向老人核对（还可尝试 {left} 次）" if left > 0 else
                               "确认码不正确，已锁定；请联系 12349 热线核实后处理")


def count_code_failure(*, session: Session, order_id: int) -> None:
    session.execute(update(WorkOrder).where(WorkOrder.id == order_id).values(confirm_failures=WorkOrder.confirm_failures + 1))


def complete(*, session: Session, order: WorkOrder, staff: ProviderStaff, code: str, notes: str, minutes: int,
             photo: str | None = None) -> WorkOrderEvent:
    """The service is done: the elder's confirmation code proves it, the subsidy is drawn."""
    errors = []
    if not notes.strip():
        errors.append(("notes", "请填写服务记录"))
    if not 1 <= minutes <= 24 * 60:
        errors.append(("minutes", "实际服务时长应为 1 到 1440 分钟"))
    if errors:
        raise FieldErrors(errors)
    if order.status != OrderStatus.IN_SERVICE:
        raise IllegalTransition(order, OrderStatus.COMPLETED)
    check_confirm_code(order=order, code=code)
    event = transition(session=session, order=order, to=OrderStatus.COMPLETED, actor=_staff_label(session, staff), provider_id=staff.provider_id,
                       note=f"服务完成，用时 {minutes} 分钟", changes={"completed_at": utcnow(), "service_notes": notes.strip(),
                                                                "service_minutes": minutes, "photo": photo})
    subsidy.draw(session=session, order=order, kind=session.get(ServiceType, order.service_type))
    return event


def provider_orders(*, session: Session, provider_id: int, statuses: tuple[str, ...], limit: int = 100) -> list[WorkOrder]:
    query = (select(WorkOrder).where(WorkOrder.provider_id == provider_id, WorkOrder.status.in_(statuses))
             .order_by(WorkOrder.accept_due, WorkOrder.id).limit(limit))
    return list(session.exec(query))


# --- callbacks (回访) and supervisors --------------------------------------------------------------

def callbacks_due(*, session: Session, limit: int = 100) -> list[WorkOrder]:
    """Completed orders waiting for their callback, the longest-waiting first."""
    return list(session.exec(select(WorkOrder).where(WorkOrder.status == OrderStatus.COMPLETED)
                             .order_by(WorkOrder.completed_at, WorkOrder.id).limit(limit)))


def callback_contact(*, session: Session, order: WorkOrder) -> dict:
    """Who the agent calls back: the elder's name and numbers (own phones first)."""
    elder = elders_service.get_or_raise(session=session, elder_id=order.elder_id)
    phones = elders_service.phones_of(session=session, elder_id=elder.id)
    return {"elder_name": elder.name, "phones": [p.number for p in phones], "provider_name": _provider_name(session, order)}


def _provider_name(session: Session, order: WorkOrder) -> str:
    provider = session.get(Provider, order.provider_id) if order.provider_id else None
    return provider.name if provider else ""


def record_callback(*, session: Session, order: WorkOrder, user: User, satisfaction: int, comment: str = "",
                    complaint: bool = False) -> WorkOrderEvent:
    """The elder's satisfaction (1–5) closes the order; 1–2 or a complaint escalates it to the
    supervisors instead, who close it once the complaint is handled."""
    if not 1 <= satisfaction <= 5:
        raise FieldErrors.single("satisfaction", "满意度为 1 到 5 分")
    if complaint and not comment.strip():
        raise FieldErrors.single("comment", "投诉须写明内容")
    unhappy = satisfaction <= 2 or complaint
    to = OrderStatus.ESCALATED if unhappy else OrderStatus.CLOSED
    note = f"回访：满意度 {satisfaction} 分" + ("，投诉" if complaint else "") + (f"；{comment.strip()}" if comment.strip() else "")
    changes = {"satisfaction": satisfaction, "callback_comment": comment.strip(), "complaint": complaint, "callback_by": user.id}
    if not unhappy:
        changes["closed_at"] = utcnow()
    if order.status != OrderStatus.COMPLETED:
        raise IllegalTransition(order, to)
    return transition(session=session, order=order, to=to, actor=user.display_name or user.username, actor_user_id=user.id,
                      note=note, changes=changes)


def close_escalated(*, session: Session, order: WorkOrder, user: User, note: str) -> WorkOrderEvent:
    """A supervisor has handled the escalation (complaint answered, service redone …)."""
    if order.status != OrderStatus.ESCALATED:
        raise IllegalTransition(order, OrderStatus.CLOSED)
    return transition(session=session, order=order, to=OrderStatus.CLOSED, actor=user.display_name or user.username, actor_user_id=user.id,
                      note=f"督办办结：{note.strip()}", changes={"closed_at": utcnow()})


def assign(*, session: Session, order: WorkOrder, provider_id: int, user: User, tz,
           login_link: LoginLink | None = None) -> tuple[int, int, int]:
    """A supervisor sends an escalated order to a provider of their choosing; the acceptance
    deadline to schedule."""
    provider = db.get_or_raise(session, Provider, provider_id, "服务商")
    if provider.status != "active":
        raise Conflict(f"服务商“{provider.name}”当前为{ProviderStatus.label_of(provider.status)}，不能派单")
    if order.service_type not in provider.service_types:
        raise Conflict(f"服务商“{provider.name}”未签约该服务类型")
    router = Router(session=session, tz=tz, login_link=login_link)
    router.dispatch(order, provider, actor=user.display_name or user.username, actor_user_id=user.id)
    session.flush()
    return router.due_deadlines()[0]
