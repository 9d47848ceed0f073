"""Proactive care (主动关怀) and regular visits (定期巡访).

- `CareRule`: which elders are contacted how often. Rules are tried in `position` order; the first
  active one whose conditions all hold for an elder (living situation, ability, economic status,
  any of the risk flags, minimum age; an empty condition holds for everyone) gives the elder's
  care call interval, visit interval (None: no such contact) and risk level (3 高, 2 中, 1 低).
- `CareOverride`: one elder's exception, with a reason and an optional end date: in hospital,
  moved away, declined, deceased (no contact while it runs), or adjusted intervals.
- `CarePlan`: one row per elder in a plan, recomputed in bulk (`service.compute_plans`): the
  intervals in force, the last contact of any kind and the last visit, and the day each is due.
- `CareContact`: every contact that counts, once (unique per source): an answered inbound call
  from the elder, an answered care call, a visit, a completed work order the elder confirmed.
- `CareTask`: a care call for the hotline or a visit for a community's visitors, due on a day,
  assigned to someone, attempted, then done, or escalated (misses), or cancelled (a contact
  came by another way, an override). `CareAttempt`: each dial of a care call and its outcome.
- `CareCheck`: the structured record of a care call answered or a visit made, and its findings.
- `TimeBankEntry`: a volunteer's hours (时间银行), credited when a supervisor confirms a visit.
- `CareSettings`: the retry and escalation policy and the care-call script (one row).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import JSON, Column, DateTime, Index, Numeric, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from callcenter.areas import scope as areas_scope
from callcenter.elders.models import elders_within
from callcenter.timeutil import utcnow
from callcenter.vocabulary import Vocabulary


def _when(**kwargs) -> Column:
    return Column(DateTime(timezone=True), **kwargs)


class RiskLevel(Vocabulary):
    HIGH = "3", "高"
    MEDIUM = "2", "中"
    LOW = "1", "低"


class OverrideReason(Vocabulary):
    IN_HOSPITAL = "in_hospital", "住院"
    MOVED_AWAY = "moved_away", "外出或迁居"
    DECLINED = "declined", "本人拒绝"
    DECEASED = "deceased", "已故"
    ADJUSTED = "adjusted", "调整频次"


class ContactKind(Vocabulary):
    INBOUND_CALL = "inbound_call", "老人来电"
    CARE_CALL = "care_call", "关怀电话"
    VISIT = "visit", "上门巡访"
    WORK_ORDER = "work_order", "服务工单"


class TaskKind(Vocabulary):
    CALL = "call", "关怀电话"
    CONTACT_CALL = "contact_call", "联系紧急联系人"
    VISIT = "visit", "上门巡访"


class TaskStatus(Vocabulary):
    OPEN = "open", "待办"
    DONE = "done", "已完成"
    ESCALATED = "escalated", "未联系上，已升级"
    CANCELLED = "cancelled", "已取消"


class AttemptOutcome(Vocabulary):
    ANSWERED = "answered", "已接通"
    NO_ANSWER = "no_answer", "无人接听"
    BUSY = "busy", "占线"
    FAILED = "failed", "呼叫失败或空号"
    AGENT_MISSED = "agent_missed", "坐席未接起（不计次数）"


class TaskSource(Vocabulary):
    PLAN = "plan", "关怀计划"
    ESCALATION = "escalation", "未接通升级"
    FINDING = "finding", "关怀发现"
    MANUAL = "manual", "人工安排"


class CareRule(SQLModel, table=True):
    __tablename__ = "care_rules"

    id: int | None = Field(default=None, primary_key=True)
    position: int = Field(default=0, index=True)
    name: str = Field(max_length=50)
    living_situations: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    ability_levels: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    economic_statuses: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    risk_flags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    min_age: int | None = None
    call_every_days: int | None = None
    visit_every_days: int | None = None
    risk_level: str = Field(default=RiskLevel.LOW, max_length=1)
    active: bool = True
    updated_by: int | None = Field(default=None, foreign_key="users.id")
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class CareOverride(SQLModel, table=True):
    __tablename__ = "care_overrides"

    id: int | None = Field(default=None, primary_key=True)
    elder_id: int = Field(foreign_key="elders.id", index=True, ondelete="CASCADE")
    reason: str = Field(max_length=16)
    call_every_days: int | None = None  # for `adjusted` only
    visit_every_days: int | None = None
    note: str = Field(default="", max_length=200)
    until: date | None = None  # the last day it holds; None: until removed
    created_by: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    ended_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))


class CarePlan(SQLModel, table=True):
    __tablename__ = "care_plans"
    __table_args__ = (
        Index("ix_care_plans_call_due", "call_due_on"),
        Index("ix_care_plans_visit_due", "visit_due_on"),
    )

    elder_id: int = Field(foreign_key="elders.id", primary_key=True, ondelete="CASCADE")
    rule_id: int | None = Field(default=None, foreign_key="care_rules.id", ondelete="SET NULL")
    override_id: int | None = Field(default=None, foreign_key="care_overrides.id", ondelete="SET NULL")
    risk_level: str = Field(default=RiskLevel.LOW, max_length=1)
    call_every_days: int | None = None
    visit_every_days: int | None = None
    last_contact_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    last_visit_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    call_due_on: date | None = None
    visit_due_on: date | None = None
    computed_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class CareContact(SQLModel, table=True):
    __tablename__ = "care_contacts"
    __table_args__ = (
        UniqueConstraint("kind", "source_id", name="uq_care_contacts_source"),
        # with kind: the plans' last contact and last visit per elder read the index alone (compute_plans)
        Index("ix_care_contacts_elder_at", "elder_id", "at", "kind"),
    )

    id: int | None = Field(default=None, primary_key=True)
    elder_id: int = Field(foreign_key="elders.id", ondelete="CASCADE")
    kind: str = Field(max_length=16)
    source_id: int
    at: datetime = Field(sa_column=_when(nullable=False))


class CareTask(SQLModel, table=True):
    __tablename__ = "care_tasks"
    __table_args__ = (
        Index("ix_care_tasks_status_due", "status", "due_on"),
        Index("ix_care_tasks_assignee", "assigned_to", "status"),
        Index("ix_care_tasks_elder", "elder_id", "status"),
        # what was done or escalated on a day (reports, the wallboard); open tasks stay out of it
        Index("ix_care_tasks_closed", "closed_at", postgresql_where=text("closed_at IS NOT NULL"),
              sqlite_where=text("closed_at IS NOT NULL")),
        Index("ix_care_tasks_parent", "parent_id", postgresql_where=text("parent_id IS NOT NULL"),
              sqlite_where=text("parent_id IS NOT NULL")),  # the visit an escalation raised
    )

    id: int | None = Field(default=None, primary_key=True)
    elder_id: int = Field(foreign_key="elders.id", ondelete="CASCADE")
    kind: str = Field(max_length=16)
    source: str = Field(default=TaskSource.PLAN, max_length=16)
    parent_id: int | None = Field(default=None, foreign_key="care_tasks.id", ondelete="SET NULL")
    status: str = Field(default=TaskStatus.OPEN, max_length=16)
    due_on: date
    risk_level: str = Field(default=RiskLevel.LOW, max_length=1)
    overdue_days: int = 0  # on the day the task was made: how late the contact already was
    community_id: int | None = Field(default=None, foreign_key="areas.id", index=True)
    assigned_to: int | None = Field(default=None, foreign_key="users.id")
    phone: str | None = Field(default=None, max_length=20)  # a contact call: whom to call (E.164)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    deadline_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    note: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))
    closed_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))


class CareAttempt(SQLModel, table=True):
    __tablename__ = "care_attempts"
    __table_args__ = (
        # an agent's attempts whose outcome is not known yet (each fetch of the work list settles them)
        Index("ix_care_attempts_unsettled", "user_id", postgresql_where=text("outcome IS NULL"), sqlite_where=text("outcome IS NULL")),
        Index("ix_care_attempts_at", "at"),  # the attempts of a period (reach)
    )

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="care_tasks.id", index=True, ondelete="CASCADE")
    user_id: int | None = Field(default=None, foreign_key="users.id")
    linkedid: str = Field(max_length=64, unique=True)  # the call's id, given to Asterisk when the attempt dials
    call_id: int | None = Field(default=None, foreign_key="calls.id", ondelete="SET NULL")
    outcome: str | None = Field(default=None, max_length=16)  # None: dialled, outcome not known yet
    talk_seconds: int | None = None
    at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class CareCheck(SQLModel, table=True):
    """What an agent or a visitor found: each topic a short choice and a note."""

    __tablename__ = "care_checks"
    __table_args__ = (Index("ix_care_checks_action", "needs_action", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="care_tasks.id", index=True, ondelete="CASCADE")
    elder_id: int = Field(foreign_key="elders.id", index=True, ondelete="CASCADE")
    user_id: int | None = Field(default=None, foreign_key="users.id")
    answers: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    findings: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    needs_action: bool = False  # findings were made: followed until their work order is closed
    note: str = Field(default="", max_length=2000)
    photo: str | None = Field(default=None, max_length=255)
    checked_in_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    work_order_id: int | None = None
    at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class TimeBankEntry(SQLModel, table=True):
    __tablename__ = "time_bank_entries"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    task_id: int = Field(foreign_key="care_tasks.id", unique=True)
    hours: Decimal = Field(sa_column=Column(Numeric(6, 2), nullable=False))
    confirmed_by: int | None = Field(default=None, foreign_key="users.id")
    at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


class CareSettings(SQLModel, table=True):
    """One row (id 1): the policy a supervisor edits."""

    __tablename__ = "care_settings"

    id: int = Field(default=1, primary_key=True)
    call_attempts: int = 3  # care-call attempts before the task escalates
    retry_after_hours: list[int] = Field(default_factory=lambda: [4, 20], sa_column=Column(JSON, nullable=False))
    visit_deadline_hours: int = 24
    work_starts: str = Field(default="09:00", max_length=5)  # when care calls are placed (Shanghai time)
    work_ends: str = Field(default="17:30", max_length=5)
    script: str = Field(default="", max_length=2000)  # 关怀话术; empty: the built-in one
    updated_by: int | None = Field(default=None, foreign_key="users.id")
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_when(nullable=False))


for _model in (CareOverride, CarePlan, CareContact, CareTask, CareCheck):
    areas_scope.register(_model, lambda scope, model=_model: model.elder_id.in_(elders_within(scope)))
