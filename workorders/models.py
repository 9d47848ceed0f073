"""Work orders (工单): the service catalog, contracted providers, orders and their transitions
(DESIGN.md, "Work order model")."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import JSON, Column, DateTime, Index, Numeric, or_
from sqlmodel import Field, SQLModel, select

from callcenter.areas import scope as areas_scope
from callcenter.elders.models import elders_within

from callcenter.notify.models import OutboxMessage as SmsMessage  # noqa: F401  (the outbox moved to callcenter/notify)
from callcenter.timeutil import utcnow
from callcenter.vocabulary import Vocabulary


class OrderStatus(Vocabulary):
    """Where a work order is (DESIGN.md, "Work order model")."""

    DRAFT = "draft", "待确认"
    NEW = "new", "待派单"
    DISPATCHED = "dispatched", "已派单"
    REJECTED = "rejected", "服务商拒单"
    ACCEPTED = "accepted", "已接单"
    IN_SERVICE = "in_service", "服务中"
    COMPLETED = "completed", "已完成"
    ESCALATED = "escalated", "已升级督办"
    CLOSED = "closed", "已回访办结"
    CANCELLED = "cancelled", "已取消"


S = OrderStatus
# Who may move an order where. Routing (#5's RQ jobs) and the provider pages use the same table.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.DRAFT: frozenset({S.NEW, S.CANCELLED}),  # the IVR's emergency draft: an agent confirms or cancels it
    S.NEW: frozenset({S.DISPATCHED, S.CANCELLED, S.ESCALATED}),
    S.DISPATCHED: frozenset({S.ACCEPTED, S.REJECTED, S.CANCELLED, S.ESCALATED}),
    S.REJECTED: frozenset({S.DISPATCHED, S.CANCELLED, S.ESCALATED}),
    S.ACCEPTED: frozenset({S.IN_SERVICE, S.CANCELLED, S.ESCALATED}),
    S.IN_SERVICE: frozenset({S.COMPLETED, S.ESCALATED}),
    S.COMPLETED: frozenset({S.CLOSED, S.ESCALATED}),
    S.ESCALATED: frozenset({S.DISPATCHED, S.CANCELLED, S.CLOSED}),
    S.CLOSED: frozenset(),
    S.CANCELLED: frozenset(),
}
FINAL = frozenset(status for status, onward in TRANSITIONS.items() if not onward)  # closed, cancelled
OPEN = tuple(status for status in OrderStatus if status not in FINAL)  # still somebody's work, in the enum's order
ROUTABLE = (S.NEW, S.REJECTED)  # routing gives these to a provider
# The order has committed its cost (subsidy) but not drawn it yet: confirmed and not completed.
COMMITTED = tuple(status for status in OPEN if status not in (S.DRAFT, S.COMPLETED))
# The provider's phone pages: (tab, its title, the statuses it lists).
MOBILE_TABS = (("todo", "待接单", (S.DISPATCHED,)), ("accepted", "待上门", (S.ACCEPTED,)), ("serving", "服务中", (S.IN_SERVICE,)),
               ("done", "已完成", (S.COMPLETED, S.CLOSED)))
del S


class Urgency(Vocabulary):
    NORMAL = "normal", "普通"
    URGENT = "urgent", "加急"
    EMERGENCY = "emergency", "紧急"


class ProviderStatus(Vocabulary):
    ACTIVE = "active", "合作中"
    SUSPENDED = "suspended", "暂停派单"
    EXITED = "exited", "已退出"


def _ts(**kwargs):
    return Field(default=None, sa_column=Column(DateTime(timezone=True), **kwargs))


class ServiceType(SQLModel, table=True):
    """One service of the catalog (助餐, 助浴 …) with its SLA in minutes from order creation."""

    __tablename__ = "service_types"

    code: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=40)
    accept_minutes: int
    arrive_minutes: int
    complete_minutes: int
    government_purchased: bool = False
    unit_cost: Decimal = Field(default=Decimal("0"), sa_column=Column(Numeric(10, 2), nullable=False))
    active: bool = True


class Provider(SQLModel, table=True):
    __tablename__ = "providers"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    contact_name: str = Field(default="", max_length=50)
    phone: str = Field(max_length=20, description="E.164; SMS notifications go here")
    service_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    coverage: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False),
                                description="area ids (streets or communities) it serves")
    daily_capacity: int = 20
    contract_start: date | None = None
    contract_end: date | None = None
    rating: Decimal = Field(default=Decimal("5.0"), sa_column=Column(Numeric(3, 2), nullable=False))
    status: str = Field(default="active", max_length=16)
    status_reason: str = Field(default="", max_length=200, description="why it was suspended or exited")
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class WorkOrderNumber(SQLModel, table=True):
    """The last order number handed out each local day (GD<day>-<last>): an atomic counter, so
    orders created at the same moment (the IVR's emergency drafts, a burst of agents) never
    compete for a number."""

    __tablename__ = "work_order_numbers"

    day: date = Field(primary_key=True)
    last: int


class WorkOrder(SQLModel, table=True):
    __tablename__ = "work_orders"
    __table_args__ = (Index("ix_work_orders_status_created", "status", "created_at"),
                      Index("ix_work_orders_created", "created_at", "service_type", "completed_at"))  # the wallboard's day: index only

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=20, unique=True, description="GD20261122-0007")
    elder_id: int = Field(foreign_key="elders.id", index=True)
    call_id: int | None = Field(default=None, foreign_key="calls.id", index=True)
    service_type: str = Field(foreign_key="service_types.code", max_length=32)
    urgency: str = Field(default="normal", max_length=16)
    status: str = Field(default="new", max_length=16)
    provider_id: int | None = Field(default=None, foreign_key="providers.id", index=True)
    address: str = Field(default="", max_length=255)
    community_id: int | None = Field(default=None, foreign_key="areas.id")
    window_start: datetime | None = _ts()
    window_end: datetime | None = _ts()
    description: str = Field(default="", max_length=2000)
    created_by: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    dispatched_at: datetime | None = _ts()
    accept_due: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    arrive_due: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    complete_due: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    # The provider's side (its mobile pages): accepted, checked in on arrival, completed.
    accepted_at: datetime | None = _ts()
    arrived_at: datetime | None = _ts()
    completed_at: datetime | None = _ts()
    confirm_code: str | None = Field(default=None, max_length=8, description="told to the elder at dispatch, asked at completion")
    confirm_failures: int = 0
    service_notes: str = Field(default="", max_length=2000)
    service_minutes: int | None = None
    photo: str | None = Field(default=None, max_length=255, description="file name under DATA_DIR/uploads/orders")
    # The callback (回访) and the subsidy.
    satisfaction: int | None = None
    callback_comment: str = Field(default="", max_length=1000)
    complaint: bool = False
    callback_by: int | None = Field(default=None, foreign_key="users.id")
    closed_at: datetime | None = _ts()
    self_paid: bool = Field(default=False, description="the elder pays: no subsidy is checked or drawn")
    subsidy_amount: Decimal | None = Field(default=None, sa_column=Column(Numeric(10, 2)))
    overdraw_approved_by: int | None = Field(default=None, foreign_key="users.id")


class ProviderStaff(SQLModel, table=True):
    """A provider's account on the mobile pages: signs in by phone and password, or by the signed
    link in a dispatch SMS. Sees only its provider's orders."""

    __tablename__ = "provider_staff"

    id: int | None = Field(default=None, primary_key=True)
    provider_id: int = Field(foreign_key="providers.id", index=True)
    name: str = Field(max_length=50)
    phone: str = Field(max_length=20, unique=True, description="E.164; the login name")
    password_hash: str | None = Field(default=None, max_length=255, description="None: link login only")
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class SubsidyLedger(SQLModel, table=True):
    """Every change of an elder's subsidy balance by a service: amount (negative: drawn), the
    balance after it, the order, and who approved an overdraw."""

    __tablename__ = "subsidy_ledger"

    id: int | None = Field(default=None, primary_key=True)
    elder_id: int = Field(foreign_key="elders.id", index=True)
    order_id: int | None = Field(default=None, foreign_key="work_orders.id", index=True)
    service_type: str | None = Field(default=None, max_length=32)
    amount: Decimal = Field(sa_column=Column(Numeric(12, 2), nullable=False))
    balance_after: Decimal = Field(sa_column=Column(Numeric(12, 2), nullable=False))
    overdraw_approved_by: int | None = Field(default=None, foreign_key="users.id")
    note: str = Field(default="", max_length=200)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


class WorkOrderEvent(SQLModel, table=True):
    """Every transition: who, when, from, to, note."""

    __tablename__ = "work_order_events"
    __table_args__ = (Index("ix_work_order_events_load", "to_status", "at", "provider_id"),)  # routing: today's load

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="work_orders.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    actor_user_id: int | None = Field(default=None, foreign_key="users.id")
    actor: str = Field(max_length=80, description="who, as shown: a user's name, a provider, 系统")
    from_status: str | None = Field(default=None, max_length=16)
    to_status: str = Field(max_length=16)
    provider_id: int | None = Field(default=None, foreign_key="providers.id")
    note: str = Field(default="", max_length=1000)


def orders_within(scope: areas_scope.Scope):
    """The orders `scope` sees: of elders living there or on the line with its agent and, for a
    street office, of the providers serving the street wherever they work."""
    condition = or_(areas_scope.any_of(WorkOrder.community_id, scope.communities), areas_scope.any_of(WorkOrder.elder_id, scope.callers))
    if scope.providers_work and scope.providers:
        condition = or_(condition, WorkOrder.provider_id.in_(sorted(scope.providers)))
    return condition


def _coverage(session) -> list[tuple[int, list[int]]]:
    return [tuple(row) for row in session.execute(select(Provider.id, Provider.coverage))]


areas_scope.register_coverage(_coverage)
areas_scope.register(WorkOrder, orders_within)
areas_scope.register(WorkOrderEvent, lambda scope: WorkOrderEvent.order_id.in_(select(WorkOrder.id).where(orders_within(scope))))
areas_scope.register(SmsMessage, lambda scope: SmsMessage.order_id.in_(select(WorkOrder.id).where(orders_within(scope))))
areas_scope.register(SubsidyLedger, lambda scope: SubsidyLedger.elder_id.in_(elders_within(scope)))
areas_scope.register(Provider, lambda scope: areas_scope.any_of(Provider.id, scope.providers))
areas_scope.register(ProviderStaff, lambda scope: areas_scope.any_of(ProviderStaff.provider_id, scope.providers))
