"""Regular visits (定期巡访) as the visitors do them, and the visitors themselves (no HTTP here).

- Visitors (巡访员) are `users` accounts with the role `visitor`, attached to one community, a
  phone (their sign-in name; login links go to it) and a volunteer flag (志愿者, or 社区工作人员).
  Supervisors, street officials and community staff manage the visitors of their area.
- A visitor sees the open visit tasks of their community (nearest deadline first), takes one,
  checks in at the door (the time, and the position when the phone's browser gives it), then
  submits the structured record. Findings are read from the record's answers; one that needs
  action opens a work order (routed to a provider) or marks an emergency for the hotline (the
  emergency draft an agent confirms, as the IVR's), tracked on the record (`work_order_id`).
  Completing closes the task and, when the elder was met, records the visit as a contact.
- A volunteer's visit earns time-bank hours (时间银行) once a supervisor, a street official or
  community staff confirms it: once per visit (`time_bank_entries.task_id` is unique).

The caller owns every transaction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from callcenter.areas import scope as areas_scope
from callcenter.areas import service as areas_service
from callcenter.areas.models import Area
from callcenter.auth import service as auth_service
from callcenter.auth.models import VISITOR, User
from callcenter.care import service as care_service
from callcenter.care.models import CareCheck, CarePlan, CareTask, TaskKind, TaskSource, TaskStatus, TimeBankEntry
from callcenter.care.visit_models import VisitCheckIn
from callcenter.elders.models import Elder
from callcenter.errors import Conflict, FieldErrors, NotFound, PermissionDenied
from callcenter.notify import service as notify_service
from callcenter.phones import InvalidPhoneNumber, parse_phone
from callcenter.timeutil import as_utc, utcnow
from workorders import service as orders_service
from workorders.models import OrderStatus, WorkOrder

VISITOR_KINDS = {True: "志愿者", False: "社区工作人员"}
MANAGERS = ("street_official", "community_staff")  # besides supervisors and admins

# The record: each topic one choice. `met` first: an elder not found at home answers nothing else.
TOPICS: dict[str, tuple[str, dict[str, str]]] = {
    "met": ("见面情况", {"yes": "见到老人", "absent": "未见到老人"}),
    "living": ("居住环境", {"tidy": "整洁", "fair": "一般", "poor": "脏乱或破损"}),
    "care": ("照料情况", {"self": "能自理", "family": "家人照料", "paid": "护工或保姆照料", "none": "失能无人照料"}),
    "health": ("健康变化", {"stable": "无明显变化", "better": "好转", "worse": "变差", "ill": "生病或受伤"}),
    "mood": ("精神情绪", {"good": "良好", "low": "低落", "confused": "糊涂"}),
    "safety": ("安全隐患", {"none": "无", "gas": "燃气", "electric": "用电", "fall": "防滑防跌", "building": "房屋"}),
    "needs": ("服务需求", {"none": "无", "meal": "助餐", "cleaning": "助洁", "bathing": "助浴", "medical": "就医",
                       "company": "陪伴", "repair": "维修"}),
}
FINDINGS = {"absent": "未见到老人", "no_carer": "失能无人照料", "illness": "身体不适", "hazard": "安全隐患",
            "needs_service": "需要服务", "emotional": "情绪异常"}
# Findings that need action: a work order or an emergency for the hotline.
ESCALATING = ("absent", "no_carer", "illness", "hazard", "needs_service")
ACTIONS = {"order": "转服务工单", "emergency": "紧急上报热线"}
# The service a finding suggests for its work order (the visitor may choose another).
NEED_SERVICES = {"meal": "meal", "cleaning": "cleaning", "bathing": "bathing", "medical": "medical_escort",
                 "company": "companionship", "repair": "repair"}
FINDING_SERVICES = {"no_carer": "nursing", "illness": "medical_escort", "hazard": "repair"}
EMERGENCY_SERVICE = "emergency"  # 助急: the hotline's emergency draft (as the IVR's)
HOURS_STEP, MIN_HOURS, MAX_HOURS = Decimal("0.5"), Decimal("0.5"), Decimal("8")


# ---- visitors ------------------------------------------------------------------------------------

def may_manage_visitors(user: User) -> bool:
    """Supervisors and admins, street officials and community staff (each within its area)."""
    return auth_service.has_role(user, "supervisor") or user.role in MANAGERS


def check_may_manage(user: User) -> None:
    if not may_manage_visitors(user):
        raise PermissionDenied("只有班长、街道和社区账号可以管理巡访员")


def community_within(*, session: Session, community_id: int, scope: areas_scope.Scope) -> Area:
    """The community, if it is one within `scope`: NotFound outside it, FieldErrors for another level."""
    if not scope.city and community_id not in scope.areas:
        raise NotFound(f"社区 {community_id} 不存在，或不在您的辖区内")
    return areas_service.get_community_or_raise(session=session, community_id=community_id)


def create_visitor(*, session: Session, name: str, phone: str, community_id: int, volunteer: bool, area_code: str,
                   scope: areas_scope.Scope, password: str | None = None) -> User:
    """A visitor of `community_id` (within the manager's `scope`); with no password they sign in by
    the links sent to their phone."""
    errors = []
    try:
        e164 = parse_phone(phone or "", default_area_code=area_code).e164
    except InvalidPhoneNumber as exc:
        errors.append(("phone", str(exc)))
    name = (name or "").strip()
    if not 1 <= len(name) <= 64:
        errors.append(("name", "请填写姓名（不超过 64 字）"))
    if password and len(password) < auth_service.MIN_PASSWORD_LENGTH:
        errors.append(("password", f"密码至少 {auth_service.MIN_PASSWORD_LENGTH} 位"))
    if errors:
        raise FieldErrors(errors)
    community = community_within(session=session, community_id=community_id, scope=scope)
    taken = session.exec(select(User).where(User.phone == e164)).first()  # accounts are not scoped: city-wide
    if taken is not None:
        raise Conflict(f"该手机号已有账号：{e164}" + ("（已停用，可重新启用）" if not taken.active else ""))
    user = User(username=f"visitor-{e164.lstrip('+')}", role=VISITOR, display_name=name, phone=e164, volunteer=volunteer,
                area_id=community.id, password_hash=auth_service.hash_password(password) if password else "")
    session.add(user)
    session.flush()
    return user


def visitors_within(*, session: Session, scope: areas_scope.Scope) -> list[User]:
    return list(session.exec(select(User).where(User.role == VISITOR, auth_service.accounts_within(scope))
                             .order_by(User.area_id, User.active.desc(), User.display_name)))


def visitor_within_or_raise(*, session: Session, user_id: int, scope: areas_scope.Scope) -> User:
    user = session.exec(select(User).where(User.id == user_id, User.role == VISITOR, auth_service.accounts_within(scope))).first()
    if user is None:
        raise NotFound(f"巡访员 {user_id} 不存在，或不在您的辖区内")
    return user


def update_visitor(*, session: Session, visitor: User, active: bool | None = None, password: str | None = None,
                   volunteer: bool | None = None) -> User:
    """Deactivate or reactivate, set a password, change volunteer or staff. A new password or a
    deactivation ends the visitor's sessions and unused links at once (auth.update_user)."""
    changes = {key: value for key, value in (("active", active), ("password", password)) if value is not None}
    user = auth_service.update_user(session=session, user_id=visitor.id, changes=changes)
    if volunteer is not None:
        user.volunteer = volunteer
        session.add(user)
    return user


def send_login_link(*, session: Session, visitor: User, public_url: str, minutes: int) -> str:
    """An SMS with a one-time link that signs the visitor in; the number it goes to, masked."""
    if not visitor.active:
        raise Conflict("该巡访员账号已停用，请先启用")
    if not visitor.phone:
        raise Conflict("该巡访员没有登记手机号")
    link = auth_service.VISITOR_DOOR.login_link(session=session, public_url=public_url, minutes=minutes, account=visitor)
    community = session.get(Area, visitor.area_id) if visitor.area_id else None
    notify_service.Notifier(session=session).notify("visitor_login_link", to=visitor.phone, values={
        "name": visitor.display_name, "community": community.name if community else "", "minutes": minutes, "link": link})
    session.flush()
    return f"{visitor.phone[:-8]}****{visitor.phone[-4:]}"


def hours_text(value) -> str:
    """Hours as people read them: 1.5, 0.0."""
    return f"{Decimal(value or 0):.1f}"


def time_bank_balance(*, session: Session, user_id: int) -> Decimal:
    """A volunteer's confirmed hours."""
    total = session.exec(select(func.coalesce(func.sum(TimeBankEntry.hours), 0)).where(TimeBankEntry.user_id == user_id)).one()
    return Decimal(total).quantize(Decimal("0.1"))


def balances(*, session: Session, user_ids: list[int]) -> dict[int, Decimal]:
    if not user_ids:
        return {}
    rows = session.exec(select(TimeBankEntry.user_id, func.sum(TimeBankEntry.hours)).where(TimeBankEntry.user_id.in_(user_ids))
                        .group_by(TimeBankEntry.user_id)).all()
    return {user_id: Decimal(hours).quantize(Decimal("0.1")) for user_id, hours in rows}


# ---- a visitor's tasks ---------------------------------------------------------------------------

def open_visits(*, session: Session, community_id: int, limit: int = 100) -> list[CareTask]:
    """The community's open visit tasks, nearest deadline first (those without one after), then
    the highest risk, the most overdue, the oldest."""
    return list(session.exec(
        select(CareTask).where(CareTask.kind == TaskKind.VISIT, CareTask.status == TaskStatus.OPEN,
                               CareTask.community_id == community_id)
        .order_by(CareTask.deadline_at.is_(None), CareTask.deadline_at, CareTask.risk_level.desc(),
                  CareTask.overdue_days.desc(), CareTask.due_on, CareTask.id).limit(limit)))


def my_recent_visits(*, session: Session, user_id: int, limit: int = 10) -> list[CareTask]:
    return list(session.exec(select(CareTask).where(CareTask.kind == TaskKind.VISIT, CareTask.status == TaskStatus.DONE,
                                                    CareTask.assigned_to == user_id)
                             .order_by(CareTask.closed_at.desc(), CareTask.id.desc()).limit(limit)))


def visit_or_raise(*, session: Session, task_id: int, visitor: User) -> CareTask:
    """A visit task of the visitor's community, open or done by them; NotFound (in Chinese) for
    anything else, so another community's task ids reveal nothing."""
    task = session.get(CareTask, task_id)
    if (task is None or task.kind != TaskKind.VISIT or task.community_id != visitor.area_id
            or not (task.status == TaskStatus.OPEN or task.assigned_to == visitor.id)):
        raise NotFound("巡访任务不存在，或不属于您所在社区的待巡访任务")
    return task


def name_of(*, session: Session, user_id: int | None) -> str:
    """How a visitor or agent is named to others."""
    user = session.get(User, user_id) if user_id else None
    return (user.display_name or user.username) if user else "其他人员"


def _require_open(task: CareTask) -> None:
    if task.status != TaskStatus.OPEN:
        raise Conflict(f"该巡访任务{TaskStatus.label_of(task.status)}，不能再处理")


def _require_mine(session: Session, task: CareTask, visitor: User) -> None:
    _require_open(task)
    if task.assigned_to is None:
        raise Conflict("请先认领该巡访任务")
    if task.assigned_to != visitor.id:
        raise PermissionDenied(f"该任务已由{name_of(session=session, user_id=task.assigned_to)}认领，只有认领人可以签到和填写巡访记录")


def take(*, session: Session, task: CareTask, visitor: User) -> CareTask:
    """The visitor takes the task (compare-and-set: of two taking it at once, one gets it)."""
    _require_open(task)
    taken = session.execute(update(CareTask).where(CareTask.id == task.id, CareTask.status == TaskStatus.OPEN,
                                                   CareTask.assigned_to.is_(None) | (CareTask.assigned_to == visitor.id))
                            .values(assigned_to=visitor.id).execution_options(synchronize_session=False)).rowcount
    session.refresh(task)
    if taken != 1:
        raise Conflict(f"该任务已由{name_of(session=session, user_id=task.assigned_to)}认领")
    return task


def release(*, session: Session, task: CareTask, visitor: User) -> CareTask:
    """Give a taken task back to the community's list (before checking in only)."""
    _require_mine(session, task, visitor)
    if session.get(VisitCheckIn, task.id) is not None:
        raise Conflict("已签到的任务不能退回，请填写巡访记录")
    task.assigned_to = None
    session.add(task)
    return task


def check_in(*, session: Session, task: CareTask, visitor: User, latitude: float | None = None, longitude: float | None = None,
             accuracy_m: float | None = None) -> VisitCheckIn:
    """The visitor at the door: the time, and the position when the browser gave one. A second
    tap keeps the first check-in."""
    _require_mine(session, task, visitor)
    existing = session.get(VisitCheckIn, task.id)
    if existing is not None:
        return existing
    errors = []
    if (latitude is None) != (longitude is None):
        errors.append(("latitude", "位置须同时包含纬度和经度"))
    if latitude is not None and not -90 <= latitude <= 90:
        errors.append(("latitude", "纬度应在 -90 到 90 之间"))
    if longitude is not None and not -180 <= longitude <= 180:
        errors.append(("longitude", "经度应在 -180 到 180 之间"))
    if accuracy_m is not None and not 0 <= accuracy_m <= 100_000:
        errors.append(("accuracy", "定位精度应在 0 到 100000 米之间"))
    if errors:
        raise FieldErrors(errors)
    row = VisitCheckIn(task_id=task.id, user_id=visitor.id, latitude=latitude, longitude=longitude,
                       accuracy_m=round(accuracy_m) if accuracy_m is not None and latitude is not None else None)
    session.add(row)
    session.flush()
    return row


def findings_of(answers: dict[str, str]) -> list[str]:
    """What the answers show that needs attention (FINDINGS keys, in their order)."""
    if answers.get("met") == "absent":
        return ["absent"]
    found = {"no_carer": answers.get("care") == "none", "illness": answers.get("health") in ("worse", "ill"),
             "hazard": answers.get("safety", "none") != "none", "needs_service": answers.get("needs", "none") != "none",
             "emotional": answers.get("mood") in ("low", "confused")}
    return [key for key in FINDINGS if found.get(key)]


def suggested_service(answers: dict[str, str]) -> str | None:
    """The service a work order for these answers would most likely be."""
    if answers.get("needs") in NEED_SERVICES:
        return NEED_SERVICES[answers["needs"]]
    return next((FINDING_SERVICES[key] for key in findings_of(answers) if key in FINDING_SERVICES), None)


@dataclass
class VisitForm:
    """A visit record as the visitor submitted it."""

    answers: dict[str, str]
    note: str = ""
    action: str = ""  # "" when nothing needs action, else ACTIONS
    service_type: str = ""
    self_paid: bool = False


def check_form(form: VisitForm) -> list[str]:
    """The record's findings; FieldErrors naming each unanswered topic, a missing action, in Chinese."""
    errors = []
    unknown = [key for key in form.answers if key not in TOPICS]
    if unknown:
        errors.append(("answers", f"未知的问题：{'、'.join(unknown)}"))
    wanted = ["met"] if form.answers.get("met") == "absent" else list(TOPICS)
    for key in wanted:
        label, choices = TOPICS[key]
        if form.answers.get(key) not in choices:
            errors.append((f"answers.{key}", f"请选择{label}：{'、'.join(choices.values())}"))
    if len(form.note) > 2000:
        errors.append(("note", "情况说明不能超过 2000 字"))
    if errors:
        raise FieldErrors(errors)
    findings = findings_of(form.answers)
    if form.answers.get("met") == "absent" and not form.note.strip():
        raise FieldErrors.single("note", "未见到老人时，请说明情况（如敲门无人应答、邻居说明等）")
    if any(key in ESCALATING for key in findings):
        if form.action not in ACTIONS:
            named = "、".join(FINDINGS[key] for key in findings if key in ESCALATING)
            raise FieldErrors.single("action", f"发现{named}，请选择转服务工单或紧急上报热线")
        if form.action == "order" and not form.service_type:
            raise FieldErrors.single("service_type", "请选择工单的服务类型")
    return findings


def record_visit(*, session: Session, task: CareTask, visitor: User, form: VisitForm, tz, now: datetime | None = None
                 ) -> tuple[CareCheck, WorkOrder | None]:
    """The visit's record: findings that need action open a work order (`form.action` "order",
    routed once committed) or an emergency draft for the hotline ("emergency"); the task is done
    and, when the elder was met, the visit is a contact. Returns the check and the order made."""
    now = now or utcnow()
    _require_mine(session, task, visitor)
    arrived = session.get(VisitCheckIn, task.id)
    if arrived is None:
        raise Conflict("请先在老人家门口签到，再填写巡访记录")
    findings = check_form(form)
    answers = {key: value for key, value in form.answers.items() if key in (["met"] if "absent" in findings else TOPICS)}
    order = None
    if any(key in ESCALATING for key in findings):
        order = _act_on(session=session, task=task, visitor=visitor, form=form, findings=findings, tz=tz)
    closed = session.execute(update(CareTask).where(CareTask.id == task.id, CareTask.status == TaskStatus.OPEN)
                             .values(status=TaskStatus.DONE, closed_at=now).execution_options(synchronize_session=False)).rowcount
    if closed != 1:  # closed meanwhile (another tab, a cancellation): nothing of this record stays
        raise Conflict("该巡访任务已被关闭，本次记录未保存")
    session.refresh(task)
    check = CareCheck(task_id=task.id, elder_id=task.elder_id, user_id=visitor.id, answers=answers, findings=findings,
                      needs_action=any(key in ESCALATING for key in findings), note=form.note.strip(), checked_in_at=arrived.at,
                      work_order_id=order.id if order else None, at=now)
    session.add(check)
    if "absent" not in findings:  # the elder was met: a contact, and the elder's other open visits are made too
        care_service.record_visit_contact(session=session, task=task, at=now)
        session.execute(update(CareTask).where(CareTask.elder_id == task.elder_id, CareTask.kind == TaskKind.VISIT,
                                               CareTask.status == TaskStatus.OPEN, CareTask.id != task.id)
                        .values(status=TaskStatus.DONE, closed_at=now, note=f"已由巡访任务 {task.id} 一并完成")
                        .execution_options(synchronize_session=False))
    session.flush()
    return check, order


def _act_on(*, session: Session, task: CareTask, visitor: User, form: VisitForm, findings: list[str], tz) -> WorkOrder:
    what = "、".join(FINDINGS[key] for key in findings)
    note = f"；{form.note.strip()}" if form.note.strip() else ""
    elder = session.get(Elder, task.elder_id)
    if form.action == "emergency":
        return orders_service.create_draft(
            session=session, elder=elder, service_type=EMERGENCY_SERVICE, call_id=None, tz=tz, actor=f"巡访员·{visitor.display_name}"[:80],
            description=f"巡访员{visitor.display_name}上门发现：{what}{note}。请坐席核实后确认派单或按误报取消")
    if form.service_type == EMERGENCY_SERVICE:
        raise FieldErrors.single("service_type", "紧急情况请选择“紧急上报热线”")
    return orders_service.create_order(session=session, user=visitor, service_type=form.service_type, elder_id=task.elder_id,
                                       description=f"巡访发现：{what}{note}", self_paid=form.self_paid, tz=tz)


def check_of(*, session: Session, task_id: int) -> CareCheck | None:
    return session.exec(select(CareCheck).where(CareCheck.task_id == task_id).order_by(CareCheck.id.desc())).first()


def why(*, session: Session, task: CareTask) -> str:
    """Why this visit: the plan's interval and the last visit, or the escalation's note."""
    if task.source == TaskSource.PLAN:
        plan = session.get(CarePlan, task.elder_id)
        every = f"每 {plan.visit_every_days} 天一次" if plan and plan.visit_every_days else "按关怀计划"
        last = f"上次巡访 {as_utc(plan.last_visit_at).date().isoformat()}" if plan and plan.last_visit_at else "此前没有巡访记录"
        late = f"，已逾期 {task.overdue_days} 天" if task.overdue_days else ""
        return f"定期巡访（{every}，{last}{late}）"
    return f"{TaskSource.label_of(task.source)}：{task.note}" if task.note else TaskSource.label_of(task.source)


# ---- the time bank -------------------------------------------------------------------------------

def hours_of(check_in_at: datetime | None, done_at: datetime) -> Decimal:
    """A visit's hours: from the check-in to the record, rounded up to the half hour, 0.5 to 8."""
    if check_in_at is None:
        return MIN_HOURS
    minutes = max(0.0, (as_utc(done_at) - as_utc(check_in_at)).total_seconds() / 60)
    hours = Decimal(math.ceil(minutes / 30)) * HOURS_STEP
    return min(MAX_HOURS, max(MIN_HOURS, hours))


def _checked_hours(value) -> Decimal:
    try:
        hours = Decimal(str(value))
    except InvalidOperation:
        raise FieldErrors.single("hours", "时长应为数字（小时）") from None
    if not MIN_HOURS <= hours <= MAX_HOURS or hours % HOURS_STEP != 0:
        raise FieldErrors.single("hours", f"时长应在 {MIN_HOURS} 到 {MAX_HOURS} 小时之间，以 0.5 小时为单位")
    return hours


def confirm_visit(*, session: Session, task_id: int, confirmer: User, hours=None) -> TimeBankEntry:
    """Credit the volunteer who made this visit with its hours (`hours`, or the visit's own):
    once per visit. NotFound for a visit outside the confirmer's scope."""
    task = session.get(CareTask, task_id)
    if task is None or task.kind != TaskKind.VISIT:
        raise NotFound(f"巡访任务 {task_id} 不存在，或不在您的辖区内")
    if task.status != TaskStatus.DONE:
        raise Conflict(f"该巡访任务{TaskStatus.label_of(task.status)}，完成巡访后才能确认")
    check = check_of(session=session, task_id=task.id)
    visitor = session.get(User, check.user_id) if check and check.user_id else None
    if check is None or visitor is None or visitor.role != VISITOR:
        raise Conflict("该任务没有巡访员的巡访记录，无需确认")
    if not visitor.volunteer:
        raise Conflict(f"{visitor.display_name}是社区工作人员，巡访不计入时间银行")
    done = session.exec(select(TimeBankEntry).where(TimeBankEntry.task_id == task.id)).first()
    if done is not None:
        raise Conflict(f"该次巡访已确认，已记入时间银行 {hours_text(done.hours)} 小时")
    amount = _checked_hours(hours) if hours not in (None, "") else hours_of(check.checked_in_at, check.at)
    entry = TimeBankEntry(user_id=visitor.id, task_id=task.id, hours=amount, confirmed_by=confirmer.id)
    try:
        with session.begin_nested():  # two confirmations at once: the unique task_id keeps one
            session.add(entry)
    except IntegrityError:
        raise Conflict("该次巡访已确认，请刷新页面") from None
    return entry


@dataclass
class DoneVisit:
    task: CareTask
    elder_name: str
    visitor: User | None
    check: CareCheck | None
    order: WorkOrder | None
    entry: TimeBankEntry | None
    hours: Decimal  # what confirming would credit


def done_visits(*, session: Session, unconfirmed: bool = False, limit: int = 200) -> list[DoneVisit]:
    """Visits made by visitors (within the session's scope), newest first: the confirmations to do."""
    query = (select(CareTask, CareCheck, User, Elder.name)
             .join(CareCheck, CareCheck.task_id == CareTask.id).join(User, User.id == CareCheck.user_id)
             .join(Elder, Elder.id == CareTask.elder_id)
             .where(CareTask.kind == TaskKind.VISIT, CareTask.status == TaskStatus.DONE, User.role == VISITOR))
    if unconfirmed:
        query = query.where(User.volunteer, CareTask.id.not_in(select(TimeBankEntry.task_id)))
    rows = session.exec(query.order_by(CareTask.closed_at.desc(), CareTask.id.desc()).limit(limit)).all()
    ids = [task.id for task, *_ in rows]
    entries = {row.task_id: row for row in session.exec(select(TimeBankEntry).where(TimeBankEntry.task_id.in_(ids)))} if ids else {}
    order_ids = [check.work_order_id for _, check, *_ in rows if check.work_order_id]
    orders = {row.id: row for row in session.exec(select(WorkOrder).where(WorkOrder.id.in_(order_ids)))} if order_ids else {}
    return [DoneVisit(task=task, elder_name=name, visitor=visitor, check=check, order=orders.get(check.work_order_id),
                      entry=entries.get(task.id), hours=hours_of(check.checked_in_at, check.at))
            for task, check, visitor, name in rows]


def order_state(order: WorkOrder | None) -> str:
    """How a finding's order stands, in Chinese."""
    if order is None:
        return ""
    return f"{order.number}（{OrderStatus.label_of(order.status)}）"
