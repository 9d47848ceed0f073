"""Care outcomes in numbers (主动关怀统计): coverage, the overdue list, escalations and the care-call
reach rate, for a period (a calendar month by default), and the wallboard's care tile.

Every query goes through registered models (`CareTask`, `CarePlan`, `CareContact`, `Elder`), so a
scoped account (a district, street or community official, a district supervisor) counts only the
elders of its area (areas/scope.py) without a filter here.

Definitions (the README's "Care reports" repeats them; days are the centre's local days):

- **A contact due** (应联系) is a day on which an elder's care-call or visit interval ran out. Each is
  recorded by the care task made for it (`source` plan): its due day is the task's `due_on` minus
  the `overdue_days` it was made with (a task made late still remembers the day the contact was
  due). Tasks repeated for the same due day (a call task made again the day after an escalation)
  are one due; a due whose tasks were all cancelled (in hospital, moved, declined, deceased) is
  not counted. A due is in the period when its due day is.
- **Met** (联系上): a care call is met by any contact (an answered inbound call, an answered care
  call, a visit, a confirmed work order: `CareContact`), a visit only by a visit; counted from the
  first such contact at or after the due's first task was made, or the task's own completion if
  earlier (a care call answered and checked today, whose contact is ingested tomorrow).
- Each due is **on time** (按期) when met on or before its due day plus `grace_days` (0 by
  default: on the due day itself), **late** (逾期联系) when met after that, **missing** (未联系)
  when not met and that day has passed, **pending** (期限内待联系) when not met and that day is
  today or later.
- **An elder due in the period** (应联系老人) has at least one due in it; the elder counts by
  their worst due: missing, then late, then pending, then on time. **Coverage** (按期联系率) =
  elders on time / (elders due − elders pending): the share of the elders whose outcome is known
  that were contacted on time every time. The same per kind: care-call coverage and visit
  coverage (巡访按期率), over the elders with a due of that kind.
- By **district, street and community**: the elder's community now (`elders.community_id`), and
  its street and district (the area tree). By **risk level**: the highest risk level of the
  elder's dues in the period.
- **Overdue** (逾期未联系, now, not for a period): an elder whose plan has a care call due before
  today and no contact since the plan's last contact, or a visit due before today and no visit
  since its last visit; days overdue = today − the earliest such due day. Most overdue first.
- **Escalations** (未接通升级): care-call tasks escalated (every attempt missed) in the period; the
  visit each one raised, done or still open, within its deadline or not; the time from the
  escalation to that visit done, median and p90 (nearest rank: 90 % of the visits were done
  within it), in hours.
- **Reach rate** (关怀电话接通率) = answered attempts / attempts, over the attempts of care calls to
  elders (not the calls to emergency contacts) made in the period whose outcome is known,
  agent-missed attempts excluded (the agent's phone did not answer: the elder was never dialled).
  Per agent: the agent who dialled.
- The wallboard's **today** tile: care calls done today / care calls due today, where due today =
  open care-call tasks due by today + care-call tasks closed today as done or escalated; open
  escalations = visits raised by misses still open (red on the wallboard).
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Date, and_, case, exists, func, literal, not_, or_, select
from sqlalchemy.orm import aliased
from sqlmodel import Session

from callcenter.areas.models import Area
from callcenter.auth.models import User
from callcenter.care import sqldays
from callcenter.care.models import (
    AttemptOutcome,
    CareAttempt,
    CareContact,
    CarePlan,
    CareTask,
    ContactKind,
    RiskLevel,
    TaskKind,
    TaskSource,
    TaskStatus,
)
from callcenter.elders.models import Elder
from callcenter.errors import FieldErrors
from callcenter.inputs import FIRST_DAY, LAST_DAY
from callcenter.reporting import count_where, rate, table_rows
from callcenter.timeutil import as_utc, day_start_utc, local_iso, utcnow

GRACE_DAYS = 0
ON_TIME, PENDING, LATE, MISSING = 0, 1, 2, 3  # a due's outcome, in order of worse: an elder counts by the worst
NO_AREA = "（未登记社区）"


# ---- the period ----------------------------------------------------------------------------------

def month_range(*, month: str | None, today: date) -> tuple[date, date]:
    """The first and last day of `month` (YYYY-MM; None: this month); a malformed or future month is
    refused in Chinese."""
    if not month:
        first = today.replace(day=1)
    else:
        match = re.fullmatch(r"(\d{4})-(\d{2})", month.strip())
        if match is None or not 1 <= int(match[2]) <= 12:
            raise FieldErrors.single("month", "月份格式应为 YYYY-MM，例如 2026-03")
        first = date(int(match[1]), int(match[2]), 1)
        if not FIRST_DAY <= first <= LAST_DAY:
            raise FieldErrors.single("month", f"月份应在 {FIRST_DAY:%Y-%m} 至 {LAST_DAY:%Y-%m} 之间")
        if first > today:
            raise FieldErrors.single("month", "不能统计尚未开始的月份")
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return first, last


# ---- coverage ------------------------------------------------------------------------------------

@dataclass
class CoverageTally:
    """Elders due and their outcomes (one GROUP BY per community and risk level, added up in Python)."""

    due: int = 0
    on_time: int = 0
    late: int = 0
    missing: int = 0
    pending: int = 0
    call_due: int = 0
    call_on_time: int = 0
    call_pending: int = 0
    visit_due: int = 0
    visit_on_time: int = 0
    visit_pending: int = 0

    def add(self, other: "CoverageTally") -> None:
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    def figures(self) -> dict:
        return {
            "due": self.due, "on_time": self.on_time, "late": self.late, "missing": self.missing, "pending": self.pending,
            "coverage_rate": rate(self.on_time, self.due - self.pending),
            "call_due": self.call_due, "call_coverage_rate": rate(self.call_on_time, self.call_due - self.call_pending),
            "visit_due": self.visit_due, "visit_coverage_rate": rate(self.visit_on_time, self.visit_due - self.visit_pending),
        }


def _dues(*, session: Session, date_from: date, date_to: date):
    """SQL: one row per contact due in the period (elder, kind, due day), with when its first task
    was made, its highest risk and the earliest completion of its tasks."""
    dialect = sqldays.dialect_of(session)
    due_day = sqldays.shift_days(CareTask.due_on, -CareTask.overdue_days, dialect)
    return (select(CareTask.elder_id, CareTask.kind, due_day.label("due_day"), func.min(CareTask.created_at).label("since"),
                   func.max(CareTask.risk_level).label("risk_level"),
                   func.min(case((CareTask.status == TaskStatus.DONE, CareTask.closed_at))).label("done_at"))
            .where(CareTask.source == TaskSource.PLAN, CareTask.kind.in_((TaskKind.CALL, TaskKind.VISIT)),
                   CareTask.status.in_((TaskStatus.OPEN, TaskStatus.DONE, TaskStatus.ESCALATED)),
                   CareTask.due_on >= date_from,  # a task is never made before its due day: lets the index narrow
                   due_day >= date_from, due_day <= date_to)
            .group_by(CareTask.elder_id, CareTask.kind, due_day)
            .subquery("dues"))


def coverage_tallies(*, session: Session, tz: ZoneInfo, date_from: date, date_to: date, today: date,
                     grace_days: int = GRACE_DAYS) -> dict[tuple[int | None, str], CoverageTally]:
    """Elders due in the period and their outcomes, per (community, risk level) (see the module's
    definitions)."""
    dialect = sqldays.dialect_of(session)
    dues = _dues(session=session, date_from=date_from, date_to=date_to)
    first_contact = (select(func.min(CareContact.at))
                     .where(CareContact.elder_id == dues.c.elder_id, CareContact.at >= dues.c.since,
                            or_(dues.c.kind == TaskKind.CALL, CareContact.kind == ContactKind.VISIT))
                     .scalar_subquery())
    # A due whose task was done by its deadline is on time whatever contact came before: the
    # contacts are looked up only for the others (most dues, once the work is kept up).
    done_in_time = and_(dues.c.done_at.is_not(None),
                        sqldays.local_date(dues.c.done_at, tz, dialect) <= sqldays.shift_days(dues.c.due_day, grace_days, dialect))
    # OFFSET 0 keeps PostgreSQL from pulling the subquery up and evaluating the contact's
    # sub-select once per mention of its result below.
    contacted = (select(dues.c.elder_id, dues.c.kind, dues.c.due_day, dues.c.risk_level, dues.c.done_at,
                        case((done_in_time, None), else_=first_contact).label("contact_at"))
                 .offset(0).subquery("contacted"))
    met_at = sqldays.earlier_of(contacted.c.contact_at, contacted.c.done_at, dialect)
    deadline = sqldays.shift_days(contacted.c.due_day, grace_days, dialect)
    outcome = case((and_(met_at.is_not(None), sqldays.local_date(met_at, tz, dialect) <= deadline), ON_TIME),
                   (met_at.is_not(None), LATE),
                   (deadline >= literal(today, Date), PENDING), else_=MISSING)
    per_due = (select(contacted.c.elder_id, contacted.c.kind, contacted.c.risk_level, outcome.label("outcome"))
               .subquery("per_due"))
    per_elder = (select(per_due.c.elder_id, func.max(per_due.c.risk_level).label("risk_level"),
                        func.max(per_due.c.outcome).label("outcome"),
                        func.max(case((per_due.c.kind == TaskKind.CALL, per_due.c.outcome))).label("call"),
                        func.max(case((per_due.c.kind == TaskKind.VISIT, per_due.c.outcome))).label("visit"))
                 .group_by(per_due.c.elder_id).subquery("per_elder"))
    worst, call, visit = per_elder.c.outcome, per_elder.c.call, per_elder.c.visit
    rows = session.execute(
        select(Elder.community_id, per_elder.c.risk_level, func.count().label("due"), count_where(worst == ON_TIME).label("on_time"),
               count_where(worst == LATE).label("late"), count_where(worst == MISSING).label("missing"),
               count_where(worst == PENDING).label("pending"), count_where(call.is_not(None)).label("call_due"),
               count_where(call == ON_TIME).label("call_on_time"), count_where(call == PENDING).label("call_pending"),
               count_where(visit.is_not(None)).label("visit_due"), count_where(visit == ON_TIME).label("visit_on_time"),
               count_where(visit == PENDING).label("visit_pending"))
        .join(Elder, Elder.id == per_elder.c.elder_id)
        .group_by(Elder.community_id, per_elder.c.risk_level)).all()
    names = [field.name for field in fields(CoverageTally)]
    return {(row.community_id, row.risk_level): CoverageTally(**{name: int(row._mapping[name]) for name in names}) for row in rows}


def _area_tree(session: Session) -> dict[int, Area]:
    return {area.id: area for area in session.execute(select(Area)).scalars()}


def _path(areas: dict[int, Area], community_id: int | None) -> list[Area]:
    """District, street, community of a community (as far as the tree goes), top first."""
    path, area = [], areas.get(community_id) if community_id is not None else None
    while area is not None and len(path) < 5:
        path.insert(0, area)
        area = areas.get(area.parent_id) if area.parent_id is not None else None
    return path


def coverage(*, session: Session, tz: ZoneInfo, date_from: date, date_to: date, today: date,
             grace_days: int = GRACE_DAYS) -> dict:
    """Coverage in total, by district, street, community and risk level."""
    tallies = coverage_tallies(session=session, tz=tz, date_from=date_from, date_to=date_to, today=today, grace_days=grace_days)
    areas = _area_tree(session)
    total = CoverageTally()
    by_level: dict[str, dict] = {"district": {}, "street": {}, "community": {}}
    by_risk: dict[str, CoverageTally] = defaultdict(CoverageTally)
    for (community_id, risk_level), tally in tallies.items():
        total.add(tally)
        by_risk[risk_level].add(tally)
        path = _path(areas, community_id)
        for depth, level in enumerate(("district", "street", "community")):
            area = path[depth] if depth < len(path) else None
            key = area.id if area is not None else None
            if key not in by_level[level]:
                names = [a.name for a in path[:depth + 1]] if area is not None else [NO_AREA]
                by_level[level][key] = {"area_id": key, "name": names[-1], "path": " / ".join(names), "tally": CoverageTally()}
            by_level[level][key]["tally"].add(tally)

    def listed(level: str) -> list[dict]:
        rows = sorted(by_level[level].values(), key=lambda row: (row["area_id"] is None, row["path"]))
        return [{key: value for key, value in row.items() if key != "tally"} | row["tally"].figures() for row in rows]

    return {
        "total": total.figures(),
        "by_district": listed("district"), "by_street": listed("street"), "by_community": listed("community"),
        "by_risk": [{"risk_level": level, "risk_label": label} | by_risk[level].figures()
                    for level, label in sorted(RiskLevel.labels().items(), reverse=True) if level in by_risk],
    }


# ---- overdue -------------------------------------------------------------------------------------

def _overdue(today: date):
    """SQL: a plan overdue for a care call or a visit. The first condition alone (read from the
    due-date indexes) lets PostgreSQL estimate how few plans these are and start from them."""
    call_late, visit_late = _overdue_conditions(today)
    today_literal = literal(today, Date)
    return and_(or_(CarePlan.call_due_on < today_literal, CarePlan.visit_due_on < today_literal), or_(call_late, visit_late))


def _overdue_conditions(today: date):
    """SQL: (the plan's care call is overdue, its visit is overdue) — due before today and no
    contact (of that kind) since the plan's last one."""
    today_literal = literal(today, Date)
    contacted_since = exists().where(CareContact.elder_id == CarePlan.elder_id,
                                     or_(CarePlan.last_contact_at.is_(None), CareContact.at > CarePlan.last_contact_at))
    visited_since = exists().where(CareContact.elder_id == CarePlan.elder_id, CareContact.kind == ContactKind.VISIT,
                                   or_(CarePlan.last_visit_at.is_(None), CareContact.at > CarePlan.last_visit_at))
    return (and_(CarePlan.call_due_on < today_literal, not_(contacted_since)),
            and_(CarePlan.visit_due_on < today_literal, not_(visited_since)))


def overdue_summary(*, session: Session, today: date) -> dict:
    """How many elders are overdue now, for a care call and for a visit, and the longest delay."""
    call_late, visit_late = _overdue_conditions(today)
    row = session.execute(
        select(func.count(), count_where(call_late), count_where(visit_late),
               func.min(case((call_late, CarePlan.call_due_on))), func.min(case((visit_late, CarePlan.visit_due_on))))
        .join(Elder, Elder.id == CarePlan.elder_id)
        .where(Elder.active, _overdue(today))).one()
    earliest = [_as_date(day) for day in row[3:] if day is not None]
    return {"elders": int(row[0]), "calls": int(row[1]), "visits": int(row[2]),
            "longest_days": (today - min(earliest)).days if earliest else None}


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def overdue(*, session: Session, tz: ZoneInfo, today: date, limit: int = 50, offset: int = 0) -> dict:
    """The elders overdue now, most overdue first: `total` and one page of `items`."""
    call_late, visit_late = _overdue_conditions(today)
    call_due = case((call_late, CarePlan.call_due_on))
    visit_due = case((visit_late, CarePlan.visit_due_on))
    earliest = case((CarePlan.call_due_on.is_(None), CarePlan.visit_due_on), (CarePlan.visit_due_on.is_(None), CarePlan.call_due_on),
                    (CarePlan.call_due_on <= CarePlan.visit_due_on, CarePlan.call_due_on), else_=CarePlan.visit_due_on)
    rows = session.execute(  # the count over all of them with the page: one pass over the overdue plans
        select(CarePlan, Elder.name, Elder.community_id, call_due.label("call_overdue_on"), visit_due.label("visit_overdue_on"),
               func.count().over().label("total"))
        .join(Elder, Elder.id == CarePlan.elder_id)
        .where(Elder.active, _overdue(today))
        .order_by(earliest, CarePlan.risk_level.desc(), CarePlan.elder_id).limit(limit).offset(offset)).all()
    if rows:
        total = rows[0].total
    else:  # a page past the end
        total = overdue_summary(session=session, today=today)["elders"] if offset else 0
    open_tasks = _open_tasks_of(session, [row[0].elder_id for row in rows])
    areas = _area_tree(session) if rows else {}
    items = []
    for plan, name, community_id, call_on, visit_on, _total in rows:
        call_on, visit_on = (_as_date(day) if day is not None else None for day in (call_on, visit_on))
        days = [(today - day).days for day in (call_on, visit_on) if day is not None]
        path = _path(areas, community_id)
        items.append({
            "elder_id": plan.elder_id, "name": name, "area": " / ".join(area.name for area in path) or NO_AREA,
            "risk_level": plan.risk_level, "risk_label": RiskLevel.label_of(plan.risk_level),
            "call_due_on": call_on.isoformat() if call_on else None, "visit_due_on": visit_on.isoformat() if visit_on else None,
            "due_on": min(day for day in (call_on, visit_on) if day is not None).isoformat(), "overdue_days": max(days),
            "overdue_label": "、".join(label for label, day in (("关怀电话", call_on), ("上门巡访", visit_on)) if day),
            "last_contact_at": local_iso(plan.last_contact_at, tz), "last_visit_at": local_iso(plan.last_visit_at, tz),
            "open_tasks": open_tasks.get(plan.elder_id, []),
        })
    return {"today": today.isoformat(), "total": total, "items": items}


def _open_tasks_of(session: Session, elder_ids: list[int]) -> dict[int, list[dict]]:
    """What is being done about each elder: their open care tasks."""
    if not elder_ids:
        return {}
    found: dict[int, list[dict]] = defaultdict(list)
    for task in session.execute(select(CareTask).where(CareTask.elder_id.in_(elder_ids), CareTask.status == TaskStatus.OPEN)
                                .order_by(CareTask.id)).scalars():
        found[task.elder_id].append({"id": task.id, "kind": task.kind, "kind_label": TaskKind.label_of(task.kind),
                                     "source_label": TaskSource.label_of(task.source), "attempts": task.attempts,
                                     "assigned_to": task.assigned_to})
    return found


# ---- escalations ---------------------------------------------------------------------------------

def _nearest_rank(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def escalations(*, session: Session, start: datetime, end: datetime, now: datetime) -> dict:
    """Care calls escalated in [start, end) and the visits they raised: how many, done (within the
    deadline or not), open (overdue or not), hours from the escalation to the visit done."""
    visit = aliased(CareTask)
    rows = session.execute(
        select(CareTask.closed_at, Elder.community_id, visit.status, visit.closed_at, visit.deadline_at)
        .join(Elder, Elder.id == CareTask.elder_id)
        .outerjoin(visit, and_(visit.parent_id == CareTask.id, visit.kind == TaskKind.VISIT))
        .where(CareTask.kind == TaskKind.CALL, CareTask.status == TaskStatus.ESCALATED,
               CareTask.closed_at >= start, CareTask.closed_at < end)).all()
    areas = _area_tree(session) if rows else {}
    total, by_district = _EscalationTally(), defaultdict(_EscalationTally)
    for escalated_at, community_id, status, closed_at, deadline_at in rows:
        path = _path(areas, community_id)
        for tally in (total, by_district[path[0].name if path else NO_AREA]):
            tally.count(escalated_at, status, closed_at, deadline_at, now)
    return total.figures() | {"by_district": [{"name": name} | tally.figures() for name, tally in sorted(by_district.items())]}


class _EscalationTally:
    def __init__(self):
        self.escalated = self.visits_done = self.visits_done_in_time = self.visits_open = self.visits_open_late = 0
        self.hours: list[float] = []

    def count(self, escalated_at, status, closed_at, deadline_at, now: datetime) -> None:
        self.escalated += 1
        if status == TaskStatus.DONE and closed_at is not None:
            self.visits_done += 1
            self.visits_done_in_time += deadline_at is None or as_utc(closed_at) <= as_utc(deadline_at)
            self.hours.append((as_utc(closed_at) - as_utc(escalated_at)).total_seconds() / 3600)
        elif status == TaskStatus.OPEN:
            self.visits_open += 1
            self.visits_open_late += deadline_at is not None and as_utc(deadline_at) < now

    def figures(self) -> dict:
        def hours(value):
            return None if value is None else round(value, 1)

        return {"escalated": self.escalated, "visits_done": self.visits_done,
                "visits_done_in_time_rate": rate(self.visits_done_in_time, self.visits_done),
                "visits_open": self.visits_open, "visits_open_late": self.visits_open_late,
                "median_hours": hours(statistics.median(self.hours)) if self.hours else None,
                "p90_hours": hours(_nearest_rank(self.hours, 0.9))}


# ---- reach ---------------------------------------------------------------------------------------

REACH_OUTCOMES = (AttemptOutcome.ANSWERED, AttemptOutcome.NO_ANSWER, AttemptOutcome.BUSY, AttemptOutcome.FAILED)


def reach(*, session: Session, start: datetime, end: datetime) -> dict:
    """Care-call attempts to elders in [start, end) with a known outcome (agent-missed ones
    excluded), answered and reach rate, in total and per agent."""
    outcome = CareAttempt.outcome
    rows = session.execute(
        select(CareAttempt.user_id, func.count().label("attempts"),
               *[count_where(outcome == value).label(value.value) for value in REACH_OUTCOMES])
        .join(CareTask, CareTask.id == CareAttempt.task_id)
        .where(CareTask.kind == TaskKind.CALL, CareAttempt.at >= start, CareAttempt.at < end,
               outcome.in_(REACH_OUTCOMES))
        .group_by(CareAttempt.user_id)).all()
    users = {user.id: user for user in session.execute(
        select(User).where(User.id.in_([row.user_id for row in rows if row.user_id is not None]))).scalars()} if rows else {}

    def figures(counts: dict) -> dict:
        return counts | {"reach_rate": rate(counts["answered"], counts["attempts"])}

    total = dict.fromkeys(["attempts", *[value.value for value in REACH_OUTCOMES]], 0)
    by_agent = []
    for row in rows:
        counts = {key: int(row._mapping[key]) for key in total}
        for key, value in counts.items():
            total[key] += value
        user = users.get(row.user_id)
        by_agent.append({"user_id": row.user_id, "agent_name": (user.display_name or user.username) if user else "（未知）",
                         "extension": user.sip_extension if user else None} | figures(counts))
    by_agent.sort(key=lambda item: (-item["attempts"], item["agent_name"]))
    return {"total": figures(total), "by_agent": by_agent}


# ---- the report ----------------------------------------------------------------------------------

def report(*, session: Session, tz: ZoneInfo, date_from: date, date_to: date, today: date, now: datetime | None = None,
           grace_days: int = GRACE_DAYS) -> dict:
    """The care report of a period: coverage (total, by area and risk level), the overdue now,
    escalations and reach (see the module's definitions)."""
    now = now or utcnow()
    start, end = day_start_utc(date_from, tz), day_start_utc(date_to + timedelta(days=1), tz)
    return {
        "from": date_from.isoformat(), "to": date_to.isoformat(), "as_of": local_iso(now, tz), "grace_days": grace_days,
        "coverage": coverage(session=session, tz=tz, date_from=date_from, date_to=date_to, today=today, grace_days=grace_days),
        "overdue": overdue_summary(session=session, today=today),
        "escalations": escalations(session=session, start=start, end=end, now=now),
        "reach": reach(session=session, start=start, end=end),
    }


COVERAGE_COLUMNS = {
    "due": "应联系老人", "on_time": "按期联系", "late": "逾期联系", "missing": "未联系", "pending": "期限内待联系",
    "coverage_rate": "按期联系率", "call_due": "应电话关怀", "call_coverage_rate": "电话关怀按期率",
    "visit_due": "应上门巡访", "visit_coverage_rate": "巡访按期率",
}
ESCALATION_COLUMNS = {
    "escalated": "未接通升级", "visits_done": "已上门", "visits_done_in_time_rate": "按时上门率", "visits_open": "待上门",
    "visits_open_late": "超时未上门", "median_hours": "升级至上门中位数（小时）", "p90_hours": "升级至上门P90（小时）",
}
REACH_COLUMNS = {"attempts": "外呼次数", "answered": "接通", "no_answer": "无人接听", "busy": "占线", "failed": "呼叫失败或空号",
                 "reach_rate": "接通率"}


def report_tables(report_: dict) -> list[tuple[str, list[list]]]:
    """The report as titled tables (a header row, then rows): what the printed page and the
    spreadsheet both show, so they agree."""
    cover = report_["coverage"]
    overdue_ = report_["overdue"]
    return [
        ("合计", table_rows([{"name": "合计"} | cover["total"]], {"name": "范围"} | COVERAGE_COLUMNS)),
        ("按区", table_rows(cover["by_district"], {"name": "区"} | COVERAGE_COLUMNS)),
        ("按街道", table_rows(cover["by_street"], {"path": "街道"} | COVERAGE_COLUMNS)),
        ("按社区", table_rows(cover["by_community"], {"path": "社区"} | COVERAGE_COLUMNS)),
        ("按风险等级", table_rows(cover["by_risk"], {"risk_label": "风险等级"} | COVERAGE_COLUMNS)),
        ("逾期未联系（截至统计时）", table_rows([overdue_], {"elders": "逾期老人", "calls": "电话关怀逾期", "visits": "上门巡访逾期",
                                                 "longest_days": "最长逾期（天）"})),
        ("未接通升级与上门处置", table_rows([{"name": "合计"} | report_["escalations"]] + report_["escalations"]["by_district"],
                                    {"name": "范围"} | ESCALATION_COLUMNS)),
        ("关怀电话接通率", table_rows([{"agent_name": "合计"} | report_["reach"]["total"]] + report_["reach"]["by_agent"],
                               {"agent_name": "坐席"} | REACH_COLUMNS)),
    ]


def sheet_rows(report_: dict, *, title: str) -> list[list]:
    """The whole report as one sheet: a title, then each table under its own heading."""
    rows: list[list] = [[title], [f"统计期间：{report_['from']} 至 {report_['to']}", f"统计时间：{report_['as_of'][:16].replace('T', ' ')}"]]
    for heading, table in report_tables(report_):
        rows += [[], [heading], *table]
    return rows


# ---- the wallboard's tile ------------------------------------------------------------------------

def today_tile(*, session: Session, tz: ZoneInfo, now: datetime) -> dict:
    """Care calls done today / due today, and the escalation visits still open (see the module's
    definitions)."""
    today = as_utc(now).astimezone(tz).date()
    start = day_start_utc(today, tz)
    row = session.execute(
        select(count_where(and_(CareTask.kind == TaskKind.CALL, CareTask.status == TaskStatus.OPEN, CareTask.due_on <= today)),
               count_where(and_(CareTask.kind == TaskKind.CALL, CareTask.status == TaskStatus.DONE, CareTask.closed_at >= start)),
               count_where(and_(CareTask.kind == TaskKind.CALL, CareTask.status == TaskStatus.ESCALATED, CareTask.closed_at >= start)),
               count_where(and_(CareTask.kind == TaskKind.VISIT, CareTask.status == TaskStatus.OPEN,
                                CareTask.source == TaskSource.ESCALATION)))
        .where(or_(CareTask.status == TaskStatus.OPEN,
                   and_(CareTask.status.in_((TaskStatus.DONE, TaskStatus.ESCALATED)), CareTask.closed_at >= start)))).one()
    open_calls, done, escalated, open_escalations = (int(value) for value in row)
    return {"calls_done": done, "calls_due": open_calls + done + escalated, "escalations_open": open_escalations}
