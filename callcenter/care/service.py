"""Proactive care: the plans (who is due for a care call or a visit), the day's tasks and how they
are shared among the agents on duty, contacts from every source, attempts and escalation.

Plans and tasks are computed in bulk, in SQL (a city has millions of elders: `scripts/bench/care.py`
measures a day's plan for a million on PostgreSQL); the per-task steps (an attempt's outcome, a
check, an escalation) are small transactions. The caller owns every transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Date, Text, and_, case, cast, delete, exists, func, insert, literal, not_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from callcenter.auth.models import User
from callcenter.calls.models import AgentActivity, AgentStatus, CallRecord
from callcenter.care import sqldays
from callcenter.care.models import (
    AttemptOutcome,
    CareAttempt,
    CareCheck,
    CareContact,
    CareOverride,
    CarePlan,
    CareRule,
    CareSettings,
    CareTask,
    ContactKind,
    OverrideReason,
    RiskLevel,
    TaskKind,
    TaskSource,
    TaskStatus,
)
from callcenter.elders.models import Elder, EmergencyContact
from callcenter.errors import Conflict, FieldErrors, NotFound
from callcenter.timeutil import as_utc, utcnow

ON_DUTY = (AgentActivity.READY, AgentActivity.RINGING, AgentActivity.IN_CALL, AgentActivity.WRAPUP, AgentActivity.PAUSED)
BULK = {"synchronize_session": False}  # set-based statements: the session holds none of those rows
DEFAULT_SCRIPT = ("您好，{name}，我是12349养老服务热线的{agent}。今天打电话来问候您：最近身体怎么样？吃饭、睡觉还好吗？"
                  "家里有没有什么需要帮忙的？如有需要，随时拨打12349。")


# ---- rules ---------------------------------------------------------------------------------------

def _rule_condition(rule: CareRule, today: date):
    """SQL: the rule holds for an elder (all its non-empty conditions)."""
    parts = []
    if rule.living_situations:
        parts.append(Elder.living_situation.in_(rule.living_situations))
    if rule.ability_levels:
        parts.append(Elder.ability_level.in_(rule.ability_levels))
    if rule.economic_statuses:
        parts.append(Elder.economic_status.in_(rule.economic_statuses))
    if rule.risk_flags:
        flags = cast(Elder.risk_flags, Text)  # JSON as text, on SQLite and PostgreSQL alike
        parts.append(or_(*[flags.like(f'%"{flag}"%') for flag in rule.risk_flags]))
    if rule.min_age:
        parts.append(Elder.birth_date <= _years_before(today, rule.min_age))
    return and_(*parts) if parts else literal(True)


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def active_rules(*, session: Session) -> list[CareRule]:
    """The active rules in the order they are tried."""
    return list(session.execute(select(CareRule).where(CareRule.active).order_by(CareRule.position, CareRule.id)).scalars())


def check_rule(rule: CareRule) -> None:
    """Refuse a rule that contacts nobody or names unknown values (Chinese messages)."""
    from callcenter.elders import models as elders_models

    errors = {}
    known = {"living_situations": elders_models.LIVING_SITUATIONS, "ability_levels": elders_models.ABILITY_LEVELS,
             "economic_statuses": elders_models.ECONOMIC_STATUSES, "risk_flags": elders_models.RISK_FLAGS}
    for field, values in known.items():
        unknown = [value for value in getattr(rule, field) if value not in values]
        if unknown:
            errors[field] = f"未知的取值：{'、'.join(unknown)}"
    for field in ("call_every_days", "visit_every_days"):
        value = getattr(rule, field)
        if value is not None and not 1 <= value <= 366:
            errors[field] = "间隔天数应在 1 到 366 之间"
    if rule.call_every_days is None and rule.visit_every_days is None:
        errors["call_every_days"] = "关怀电话与上门巡访至少设置一项"
    if rule.min_age is not None and not 50 <= rule.min_age <= 120:
        errors["min_age"] = "年龄应在 50 到 120 之间"
    if rule.risk_level not in RiskLevel.labels():
        errors["risk_level"] = f"风险等级应为 {RiskLevel.choices()}"
    if not rule.name.strip():
        errors["name"] = "请填写规则名称"
    if not 0 <= rule.position <= 1000:
        errors["position"] = "顺序应在 0 到 1000 之间"
    if errors:
        raise FieldErrors(list(errors.items()))


def save_rule(*, session: Session, rule_id: int | None, fields: dict, user_id: int) -> CareRule:
    """Create (rule_id None) or change a rule after `check_rule`; raises NotFound for no such rule."""
    rule = CareRule() if rule_id is None else session.get(CareRule, rule_id)
    if rule is None:
        raise NotFound("该规则不存在")
    for key, value in fields.items():
        setattr(rule, key, value)
    rule.updated_by, rule.updated_at = user_id, utcnow()
    check_rule(rule)
    session.add(rule)
    session.flush()
    return rule


def save_policy(*, session: Session, fields: dict, user_id: int) -> CareSettings:
    """Change the retry and escalation policy and the script, checked (Chinese messages)."""
    if fields["work_starts"] >= fields["work_ends"]:
        raise FieldErrors.single("work_ends", "结束时间应晚于开始时间")
    if not fields["retry_after_hours"] or any(not 1 <= hours <= 72 for hours in fields["retry_after_hours"]):
        raise FieldErrors.single("retry_after_hours", "重拨间隔应在 1 到 72 小时之间")
    row = care_settings(session=session)
    for key, value in fields.items():
        setattr(row, key, value)
    row.updated_by, row.updated_at = user_id, utcnow()
    session.add(row)
    return row


# ---- settings ------------------------------------------------------------------------------------

def care_settings(*, session: Session) -> CareSettings:
    """The policy row, made with the defaults the first time."""
    row = session.get(CareSettings, 1)
    if row is None:
        row = CareSettings(id=1)
        session.add(row)
        session.flush()
    return row


def script_for(*, settings_row: CareSettings, elder_name: str, agent_name: str) -> str:
    """The care-call script (关怀话术) with the elder's and the agent's names filled in."""
    template = settings_row.script or DEFAULT_SCRIPT
    return template.replace("{name}", elder_name).replace("{agent}", agent_name)


# ---- contacts ------------------------------------------------------------------------------------

def _upsert_ignore(session: Session, table, rows_select, columns: list[str]) -> int:
    """INSERT … SELECT, skipping rows already there; how many were new."""
    dialect = sqldays.dialect_of(session)
    module = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(table).from_select(columns, rows_select).on_conflict_do_nothing().returning(table.c.id)
    return len(session.execute(statement).all())


def ingest_contacts(*, session: Session, since: datetime) -> int:
    """Record the contacts that came since `since` from calls (an answered inbound call from a
    known elder; an answered care call) and work orders (completed and confirmed by the elder's
    code): once each, whatever the overlap of runs. Returns how many were new."""
    inbound = (select(CallRecord.elder_id, literal(ContactKind.INBOUND_CALL.value), CallRecord.id,
                      func.coalesce(CallRecord.answered_at, CallRecord.started_at))
               .where(CallRecord.elder_id.is_not(None), CallRecord.direction == "inbound",
                      CallRecord.answered_at.is_not(None), CallRecord.started_at >= since))
    care_calls = (select(CallRecord.elder_id, literal(ContactKind.CARE_CALL.value), CallRecord.id, CallRecord.answered_at)
                  .where(CallRecord.elder_id.is_not(None), CallRecord.direction == "outbound",
                         CallRecord.answered_at.is_not(None), CallRecord.started_at >= since))
    new = 0
    columns = ["elder_id", "kind", "source_id", "at"]
    for rows in (inbound, care_calls, _confirmed_orders(since)):
        new += _upsert_ignore(session, CareContact.__table__, rows, columns)
    return new


def _confirmed_orders(since: datetime):
    from workorders.models import WorkOrder

    return (select(WorkOrder.elder_id, literal(ContactKind.WORK_ORDER.value), WorkOrder.id, WorkOrder.completed_at)
            .where(WorkOrder.completed_at.is_not(None), WorkOrder.completed_at >= since, WorkOrder.confirm_failures == 0,
                   WorkOrder.status.in_(("completed", "closed"))))


INGEST_OVERLAP = timedelta(days=2)  # calls recorded late (rebuilt from Asterisk's records after an outage)
FIRST_INGEST = timedelta(days=400)


def ingest_since(*, session: Session, now: datetime) -> datetime:
    """Where the morning's ingest starts: two days before the newest contact it ever took in (the
    sweep keeps up in between; the overlap catches calls recorded late; a worker down for a week
    is caught up from there), or 400 days back the first time. Visits are recorded, not ingested."""
    newest = session.execute(select(func.max(CareContact.at)).where(CareContact.kind != ContactKind.VISIT)).scalar()
    return as_utc(newest) - INGEST_OVERLAP if newest is not None else now - FIRST_INGEST


def record_visit_contact(*, session: Session, task: CareTask, at: datetime) -> None:
    """A visit made: a contact of its own kind (it also moves the visit clock)."""
    session.add(CareContact(elder_id=task.elder_id, kind=ContactKind.VISIT, source_id=task.id, at=at))


# ---- plans ---------------------------------------------------------------------------------------

def compute_plans(*, session: Session, today: date, tz: ZoneInfo) -> int:
    """Every active elder's plan from the rules and overrides, with the day each contact is due
    (never contacted: today), in one INSERT … SELECT; elders no rule covers lose their plan.
    Returns the number of elders in a plan."""
    dialect = sqldays.dialect_of(session)
    rules = active_rules(session=session)
    now = utcnow()
    if not rules:
        session.execute(delete(CarePlan), execution_options=BULK)
        return 0
    rule_id = case(*[(_rule_condition(rule, today), literal(rule.id)) for rule in rules], else_=None)
    matched = (select(Elder.id.label("elder_id"), rule_id.label("rule_id")).where(Elder.active).subquery("matched"))
    override = (select(CareOverride).where(CareOverride.ended_at.is_(None),
                                           or_(CareOverride.until.is_(None), CareOverride.until >= today))
                .subquery("override"))
    last = (select(CareContact.elder_id, func.max(CareContact.at).label("last_contact_at"),
                   func.max(case((CareContact.kind == ContactKind.VISIT, CareContact.at))).label("last_visit_at"))
            .group_by(CareContact.elder_id).subquery("last"))
    adjusted = override.c.reason == OverrideReason.ADJUSTED
    paused = and_(override.c.id.is_not(None), not_(adjusted))
    call_every = case((paused, None), (adjusted, override.c.call_every_days), else_=CareRule.call_every_days)
    visit_every = case((paused, None), (adjusted, override.c.visit_every_days), else_=CareRule.visit_every_days)
    today_literal = literal(today, Date)

    def due(last_at, every):
        return case((every.is_(None), None), (last_at.is_(None), today_literal),
                    else_=sqldays.shift_days(sqldays.local_date(last_at, tz, dialect), every, dialect))

    rows = (select(matched.c.elder_id, matched.c.rule_id, override.c.id, CareRule.risk_level, call_every, visit_every,
                   last.c.last_contact_at, last.c.last_visit_at, due(last.c.last_contact_at, call_every),
                   due(last.c.last_visit_at, visit_every), literal(now))
            .select_from(matched)
            .join(CareRule, CareRule.id == matched.c.rule_id)
            .outerjoin(override, override.c.elder_id == matched.c.elder_id)
            .outerjoin(last, last.c.elder_id == matched.c.elder_id))
    columns = ["elder_id", "rule_id", "override_id", "risk_level", "call_every_days", "visit_every_days", "last_contact_at",
               "last_visit_at", "call_due_on", "visit_due_on", "computed_at"]
    module = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(CarePlan.__table__).from_select(columns, rows)
    statement = statement.on_conflict_do_update(index_elements=["elder_id"], set_={
        name: getattr(statement.excluded, name) for name in columns if name != "elder_id"})
    session.execute(statement)
    session.execute(delete(CarePlan).where(CarePlan.computed_at < now), execution_options=BULK)
    return session.execute(select(func.count()).select_from(CarePlan)).scalar_one()


# ---- the day's tasks -----------------------------------------------------------------------------

@dataclass
class DayMade:
    calls: int
    visits: int
    assigned: int


def make_day(*, session: Session, today: date, tz: ZoneInfo, now: datetime | None = None) -> DayMade:
    """The morning's work: contacts ingested, plans recomputed, a task for each contact due by
    today that has no open task yet, then today's care calls shared among the agents on duty."""
    now = now or utcnow()
    ingest_contacts(session=session, since=ingest_since(session=session, now=now))
    close_tasks_met_by_contacts(session=session)
    compute_plans(session=session, today=today, tz=tz)
    calls = _open_tasks_for_due(session=session, kind=TaskKind.CALL, due_column=CarePlan.call_due_on, today=today)
    visits = _open_tasks_for_due(session=session, kind=TaskKind.VISIT, due_column=CarePlan.visit_due_on, today=today)
    assigned = share_calls(session=session, today=today)
    return DayMade(calls=calls, visits=visits, assigned=assigned)


def _open_tasks_for_due(*, session: Session, kind: str, due_column, today: date) -> int:
    dialect = sqldays.dialect_of(session)
    today_literal = literal(today, Date)
    overdue = sqldays.days_between(today_literal, due_column, dialect)
    already = exists().where(CareTask.elder_id == CarePlan.elder_id, CareTask.kind == kind,
                             CareTask.status == TaskStatus.OPEN)
    rows = (select(CarePlan.elder_id, literal(kind), literal(TaskSource.PLAN.value), literal(TaskStatus.OPEN.value),
                   today_literal, CarePlan.risk_level, overdue, Elder.community_id, literal(0), literal(utcnow()))
            .join(Elder, Elder.id == CarePlan.elder_id)
            .where(due_column <= today_literal, not_(already))
            .order_by(CarePlan.elder_id))
    columns = ["elder_id", "kind", "source", "status", "due_on", "risk_level", "overdue_days", "community_id", "attempts",
               "created_at"]
    table = CareTask.__table__
    return len(session.execute(insert(table).from_select(columns, rows).returning(table.c.id)).all())


def agents_on_duty(*, session: Session) -> list[User]:
    """Agents signed into a queue now (ready, talking, in wrap-up or paused)."""
    return list(session.execute(
        select(User).where(User.role == "agent", User.active,
                           User.sip_extension.in_(select(AgentStatus.extension).where(AgentStatus.state.in_(ON_DUTY))))
        .order_by(User.id)).scalars())


def _work_order():
    """Today's open call tasks in the order they are worked: highest risk, most overdue, oldest."""
    return (CareTask.risk_level.desc(), CareTask.overdue_days.desc(), CareTask.due_on, CareTask.elder_id, CareTask.id)


def share_calls(*, session: Session, today: date) -> int:
    """Deal today's unassigned care calls to the agents on duty in turn (highest risk first, so
    each agent gets a fair share of the urgent ones). Returns how many were assigned."""
    agents = agents_on_duty(session=session)
    if not agents:
        return 0
    ids = list(session.execute(select(CareTask.id).where(CareTask.status == TaskStatus.OPEN, CareTask.assigned_to.is_(None),
                                                      CareTask.kind.in_((TaskKind.CALL, TaskKind.CONTACT_CALL)),
                                                      CareTask.due_on <= today)
                            .order_by(*_work_order())).scalars())
    for index, agent in enumerate(agents):
        mine = ids[index::len(agents)]
        for start in range(0, len(mine), 1000):
            session.execute(update(CareTask).where(CareTask.id.in_(mine[start:start + 1000])).values(assigned_to=agent.id),
                            execution_options=BULK)
    return len(ids)


def work_list(*, session: Session, user_id: int, today: date, now: datetime, limit: int = 100) -> list[CareTask]:
    """An agent's care calls for today in working order; a retry waits for its time."""
    return list(session.execute(
        select(CareTask).where(CareTask.assigned_to == user_id, CareTask.status == TaskStatus.OPEN,
                               CareTask.kind.in_((TaskKind.CALL, TaskKind.CONTACT_CALL)), CareTask.due_on <= today,
                               or_(CareTask.next_attempt_at.is_(None), CareTask.next_attempt_at <= now))
        .order_by(*_work_order()).limit(limit)).scalars())


def reassign(*, session: Session, task_id: int, user_id: int | None) -> CareTask:
    """A supervisor moves an open task to another agent (or back to the pool: None)."""
    task = task_or_raise(session=session, task_id=task_id)
    _require_open(task)
    if user_id is not None:
        user = session.get(User, user_id)
        if user is None or not user.active or user.role not in ("agent", "supervisor", "visitor"):
            raise FieldErrors.single("user_id", "只能分配给在职的坐席或巡访员")
    task.assigned_to = user_id
    session.add(task)
    return task


def hand_over(*, session: Session, from_user_id: int, to_user_id: int | None) -> int:
    """A supervisor moves all of an agent's open care calls to another agent (None: back to the
    pool, dealt again at the next sweep). Returns how many moved."""
    if to_user_id is not None and to_user_id == from_user_id:
        raise FieldErrors.single("to_user_id", "转交对象不能是同一位坐席")
    if to_user_id is not None:
        target = session.get(User, to_user_id)
        if target is None or not target.active or target.role != "agent":
            raise FieldErrors.single("to_user_id", "只能转交给在职的坐席")
    return session.execute(update(CareTask).where(CareTask.assigned_to == from_user_id, CareTask.status == TaskStatus.OPEN,
                                                  CareTask.kind.in_((TaskKind.CALL, TaskKind.CONTACT_CALL)))
                           .values(assigned_to=to_user_id), execution_options=BULK).rowcount or 0


def task_or_raise(*, session: Session, task_id: int) -> CareTask:
    task = session.get(CareTask, task_id)
    if task is None:
        raise NotFound("关怀任务不存在")
    return task


def _require_open(task: CareTask) -> None:
    if task.status != TaskStatus.OPEN:
        raise Conflict(f"该任务{TaskStatus.label_of(task.status)}，不能再处理")


def close_tasks_met_by_contacts(*, session: Session) -> int:
    """Open care calls whose elder was reached after the task was made (the elder called us, a
    care call or a visit reached them) are done: any contact counts."""
    met = exists().where(CareContact.elder_id == CareTask.elder_id, CareContact.at >= CareTask.created_at)
    return session.execute(update(CareTask).where(CareTask.status == TaskStatus.OPEN, CareTask.kind == TaskKind.CALL, met)
                        .values(status=TaskStatus.DONE, closed_at=utcnow(), note="已通过其他方式联系上"),
                        execution_options=BULK).rowcount or 0


# ---- attempts and escalation ---------------------------------------------------------------------

# Asterisk's DIALSTATUS of the elder's leg → the attempt's outcome.
OUTCOME_OF_DIAL = {"ANSWER": AttemptOutcome.ANSWERED, "NOANSWER": AttemptOutcome.NO_ANSWER, "CANCEL": AttemptOutcome.NO_ANSWER,
                   "BUSY": AttemptOutcome.BUSY}
UNDIALLED_AFTER = timedelta(minutes=2)  # an attempt with no call by then never rang the agent's phone


def start_attempt(*, session: Session, task: CareTask, user_id: int) -> CareAttempt:
    """The agent dials: an attempt whose outcome the call will tell; its `linkedid` is given to
    Asterisk as the call's id (Originate's ChannelId), which is how the call is found again."""
    _require_open(task)
    pending = session.execute(select(CareAttempt.id).where(CareAttempt.task_id == task.id, CareAttempt.outcome.is_(None),
                                                           CareAttempt.at > utcnow() - UNDIALLED_AFTER)).first()
    if pending is not None:
        raise Conflict("该任务正在呼叫中，请等待本次呼叫结束")
    attempt = CareAttempt(task_id=task.id, user_id=user_id, linkedid=f"care-{uuid.uuid4().hex}")
    session.add(attempt)
    session.flush()
    return attempt


def outcome_of(call: CallRecord) -> str:
    """An ended outbound call's outcome for the elder: not dialled at all (the agent's phone did
    not answer) does not count as a miss."""
    if call.dial_status is None:
        return AttemptOutcome.AGENT_MISSED
    return OUTCOME_OF_DIAL.get(call.dial_status.upper(), AttemptOutcome.FAILED)


def apply_call_outcomes(*, session: Session, tz: ZoneInfo, user_id: int | None = None, now: datetime | None = None) -> int:
    """Attempts whose call has ended get its outcome (and an attempt whose call never came, its
    agent-missed outcome); `user_id`: only that agent's. Returns how many were settled."""
    now = now or utcnow()
    pending = (select(CareAttempt, CallRecord).outerjoin(CallRecord, CallRecord.linkedid == CareAttempt.linkedid)
               .where(CareAttempt.outcome.is_(None)))
    if user_id is not None:
        pending = pending.where(CareAttempt.user_id == user_id)
    settled = 0
    for attempt, call in session.execute(pending.order_by(CareAttempt.id)).all():
        if call is not None and call.state == "ended":
            attempt.call_id = call.id
            record_outcome(session=session, attempt=attempt, outcome=outcome_of(call), talk_seconds=call.talk_seconds, tz=tz,
                           now=now)
        elif call is None and as_utc(attempt.at) < now - UNDIALLED_AFTER:
            record_outcome(session=session, attempt=attempt, outcome=AttemptOutcome.AGENT_MISSED, talk_seconds=None, tz=tz,
                           now=now)
        else:
            continue
        settled += 1
    return settled


def next_working_time(*, after: datetime, settings_row: CareSettings, tz: ZoneInfo) -> datetime:
    """`after`, moved into the care-call hours (work_starts–work_ends, the centre's zone)."""
    local = as_utc(after).astimezone(tz)
    starts = time.fromisoformat(settings_row.work_starts)
    ends = time.fromisoformat(settings_row.work_ends)
    if local.time() < starts:
        local = datetime.combine(local.date(), starts, tz)
    elif local.time() >= ends:
        local = datetime.combine(local.date() + timedelta(days=1), starts, tz)
    return local.astimezone(as_utc(after).tzinfo)


def record_outcome(*, session: Session, attempt: CareAttempt, outcome: str, talk_seconds: int | None, tz: ZoneInfo,
                   now: datetime | None = None) -> CareTask:
    """An attempt's outcome: answered leaves the task for the agent's check; a miss schedules the
    next attempt (other times of day, in the care-call hours) or, the last one, escalates."""
    now = now or utcnow()
    task = task_or_raise(session=session, task_id=attempt.task_id)
    if attempt.outcome is not None:
        return task  # told twice (the call's end is read again): nothing more to do
    attempt.outcome, attempt.talk_seconds = outcome, talk_seconds
    session.add(attempt)
    if task.status != TaskStatus.OPEN or outcome in (AttemptOutcome.ANSWERED, AttemptOutcome.AGENT_MISSED):
        return task
    task.attempts += 1
    policy = care_settings(session=session)
    if task.kind == TaskKind.CONTACT_CALL or task.attempts >= policy.call_attempts:
        escalate(session=session, task=task, now=now, tz=tz)
        return task
    hours = policy.retry_after_hours[min(task.attempts - 1, len(policy.retry_after_hours) - 1)]
    task.next_attempt_at = next_working_time(after=now + timedelta(hours=hours), settings_row=policy, tz=tz)
    session.add(task)
    return task


def escalate(*, session: Session, task: CareTask, now: datetime, tz: ZoneInfo) -> list[CareTask]:
    """Every attempt missed: the elder's emergency contacts are called (a task each, in their
    order, for the same agent), and the elder's community gets a visit task with a deadline; the
    supervisors see it among the alerts. A contact call missed adds nothing more (the visit is
    already on its way). Returns the tasks made."""
    task.status, task.closed_at = TaskStatus.ESCALATED, now
    session.add(task)
    if task.kind == TaskKind.CONTACT_CALL:
        return []
    policy = care_settings(session=session)
    elder = session.get(Elder, task.elder_id)
    today = as_utc(now).astimezone(tz).date()
    made = [CareTask(elder_id=task.elder_id, kind=TaskKind.CONTACT_CALL, source=TaskSource.ESCALATION, parent_id=task.id,
                     due_on=today, risk_level=RiskLevel.HIGH, community_id=elder.community_id if elder else None,
                     assigned_to=task.assigned_to, phone=contact.phone, note=f"联系紧急联系人：{contact.name}")
            for contact in session.execute(select(EmergencyContact).where(EmergencyContact.elder_id == task.elder_id)
                                        .order_by(EmergencyContact.priority, EmergencyContact.id)).scalars()]
    visit = session.execute(select(CareTask).where(CareTask.elder_id == task.elder_id, CareTask.kind == TaskKind.VISIT,
                                                   CareTask.status == TaskStatus.OPEN)).scalars().first()
    if visit is None:  # a visit the plan already made is hurried on rather than doubled
        visit = CareTask(elder_id=task.elder_id, kind=TaskKind.VISIT, community_id=elder.community_id if elder else None)
    visit.source, visit.parent_id, visit.due_on, visit.risk_level = TaskSource.ESCALATION, task.id, today, RiskLevel.HIGH
    visit.deadline_at = now + timedelta(hours=policy.visit_deadline_hours)
    visit.note = f"关怀电话{task.attempts}次未接通，请尽快上门查看"
    made.append(visit)
    session.add_all(made)
    session.flush()
    return made


def alerts(*, session: Session) -> list[CareTask]:
    """What supervisors must see: visits raised by misses or findings still open (the overdue
    ones first), newest escalations included."""
    return list(session.execute(
        select(CareTask).where(CareTask.status == TaskStatus.OPEN, CareTask.kind == TaskKind.VISIT,
                               CareTask.source.in_((TaskSource.ESCALATION, TaskSource.FINDING)))
        .order_by(CareTask.deadline_at, CareTask.id)).scalars())


def open_findings(*, session: Session, since: datetime) -> list[tuple[CareCheck, str | None]]:
    """Findings of care calls and visits since `since` that are not dealt with yet: no work order
    was opened from them, or it is still open; each with its order's status (None: no order)."""
    from workorders.models import OPEN, WorkOrder

    rows = session.execute(
        select(CareCheck, WorkOrder.status).outerjoin(WorkOrder, WorkOrder.id == CareCheck.work_order_id)
        .where(CareCheck.needs_action, CareCheck.at >= since, or_(WorkOrder.id.is_(None), WorkOrder.status.in_(OPEN)))
        .order_by(CareCheck.at.desc()).limit(500)).all()
    return [(check, status) for check, status in rows]


def cancel_open_tasks(*, session: Session, elder_id: int, why: str) -> int:
    """An exception that stops contact (in hospital, moved, declined, deceased): the elder's open
    tasks are cancelled with the reason."""
    return session.execute(update(CareTask).where(CareTask.elder_id == elder_id, CareTask.status == TaskStatus.OPEN)
                           .values(status=TaskStatus.CANCELLED, closed_at=utcnow(), note=f"已取消：{why}"),
                           execution_options=BULK).rowcount or 0
