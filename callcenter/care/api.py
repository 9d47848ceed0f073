"""HTTP API of proactive care (主动关怀).

Agents (今日关怀 in the console):
GET  /api/care/tasks/mine                  my care calls due now, in working order, each with the elder's card line
GET  /api/care/tasks/{id}                  one task: the elder, the script, its attempts and checks
POST /api/care/tasks/{id}/dial             preview dialling: ring my phone, then the elder (caller ID 12349)
POST /api/care/tasks/{id}/check            the structured check after an answered care call (closes the task)
POST /api/care/elders/{id}/overrides       an elder's exception (in hospital, moved, declined, deceased, adjusted)
DELETE /api/care/overrides/{id}            end an exception
GET  /api/care/elders/{id}/plan            the elder's plan, exceptions and recent contacts
Supervisors:
GET|POST /api/care/rules, PUT|DELETE /api/care/rules/{id}    the care rules (city supervisors edit)
GET|PUT  /api/care/settings                 retry and escalation policy, the care-call script
POST /api/care/day                          compute today's plan and tasks now (the worker does it each morning)
GET  /api/care/tasks                        tasks by status/kind/assignee (scoped)
POST /api/care/tasks/{id}/assign            give a task to another agent (or back to the pool)
GET  /api/care/alerts                       escalated visits still open
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Literal

import annotated_types

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from callcenter.audit import service as audit_service
from callcenter.auth.models import User
from callcenter.calls import control
from callcenter.care import service
from callcenter.care.models import (
    AttemptOutcome,
    CareAttempt,
    CareCheck,
    CareContact,
    CareOverride,
    CarePlan,
    CareRule,
    CareTask,
    ContactKind,
    OverrideReason,
    RiskLevel,
    TaskKind,
    TaskSource,
    TaskStatus,
)
from callcenter.deps import AgentUser, CitySupervisorUser, DbSession, ServicesDep, SupervisorUser, client_ip, release
from callcenter.elders import service as elders_service
from callcenter.elders.models import Elder, ElderPhone
from callcenter.errors import Conflict, FieldErrors, NotFound
from callcenter.inputs import Id
from callcenter.phones import InvalidPhoneNumber, parse_phone
from callcenter.timeutil import age_on, local_iso, today_in, utcnow

router = APIRouter(prefix="/api/care", tags=["care"])
TaskStatusName = Literal[tuple(TaskStatus)]  # type: ignore[valid-type]
TaskKindName = Literal[tuple(TaskKind)]  # type: ignore[valid-type]
Limit = Annotated[int, annotated_types.Ge(1), annotated_types.Le(1000)]

CHECK_TOPICS = {
    "health": ("身体状况", {"good": "良好", "fair": "一般", "poor": "较差", "ill": "生病"}),
    "mood": ("精神情绪", {"good": "良好", "low": "低落", "anxious": "焦虑", "confused": "糊涂"}),
    "meals": ("饮食", {"normal": "正常", "irregular": "不规律", "poor": "吃不上饭"}),
    "safety": ("居家安全", {"safe": "无隐患", "hazard": "有隐患", "fall": "近期跌倒"}),
    "needs": ("服务需求", {"none": "无", "service": "需要上门服务", "medical": "需要就医", "company": "需要陪伴"}),
}
FINDINGS = {"no_carer": "失能无人照料", "hazard": "安全隐患", "illness": "身体不适", "needs_service": "需要服务",
            "emotional": "情绪异常"}


# ---- shapes --------------------------------------------------------------------------------------

def _task_dict(task: CareTask, elder: Elder | None, tz, *, today: date) -> dict:
    return {
        "id": task.id, "kind": task.kind, "kind_label": TaskKind.label_of(task.kind), "status": task.status,
        "status_label": TaskStatus.label_of(task.status), "source": task.source, "source_label": TaskSource.label_of(task.source),
        "due_on": task.due_on.isoformat(), "risk_level": task.risk_level, "risk_label": RiskLevel.label_of(task.risk_level),
        "overdue_days": task.overdue_days + max(0, (today - task.due_on).days), "attempts": task.attempts,
        "next_attempt_at": local_iso(task.next_attempt_at, tz), "deadline_at": local_iso(task.deadline_at, tz),
        "assigned_to": task.assigned_to, "phone": task.phone, "note": task.note, "elder_id": task.elder_id,
        "elder": _elder_line(elder, today) if elder else None, "closed_at": local_iso(task.closed_at, tz),
    }


def _elder_line(elder: Elder, today: date) -> dict:
    from callcenter.elders import models as em

    return {"id": elder.id, "name": elder.name, "age": age_on(elder.birth_date, today), "gender": em.GENDERS.get(elder.gender or "", ""),
            "living": em.LIVING_SITUATIONS.get(elder.living_situation, elder.living_situation),
            "ability": em.ABILITY_LEVELS.get(elder.ability_level, elder.ability_level),
            "risks": [em.RISK_FLAGS.get(flag, flag) for flag in elder.risk_flags], "address": elder.address}


def _tasks_out(session, tasks: list[CareTask], tz, today: date) -> list[dict]:
    elders = {elder.id: elder for elder in session.execute(
        select(Elder).where(Elder.id.in_({task.elder_id for task in tasks}))).scalars()} if tasks else {}
    return [_task_dict(task, elders.get(task.elder_id), tz, today=today) for task in tasks]


def _rule_dict(rule: CareRule) -> dict:
    return {"id": rule.id, "position": rule.position, "name": rule.name, "living_situations": rule.living_situations,
            "ability_levels": rule.ability_levels, "economic_statuses": rule.economic_statuses, "risk_flags": rule.risk_flags,
            "min_age": rule.min_age, "call_every_days": rule.call_every_days, "visit_every_days": rule.visit_every_days,
            "risk_level": rule.risk_level, "risk_label": RiskLevel.label_of(rule.risk_level), "active": rule.active}


# ---- agents --------------------------------------------------------------------------------------

@router.get("/tasks/mine")
def my_tasks(session: DbSession, services: ServicesDep, user: AgentUser):
    """今日关怀: the outcomes of my finished calls are settled first, so a miss shows at once."""
    tz = services.settings.tz
    service.apply_call_outcomes(session=session, tz=tz, user_id=user.id)
    today, now = today_in(tz), utcnow()
    tasks = service.work_list(session=session, user_id=user.id, today=today, now=now)
    return {"tasks": _tasks_out(session, tasks, tz, today)}


def _readable_task(session, task_id: int, user: User) -> CareTask:
    """A task the user may work: their own, or any for a supervisor (scoped by area)."""
    task = service.task_or_raise(session=session, task_id=task_id)
    if user.role == "agent" and task.assigned_to not in (None, user.id):
        raise Conflict("该关怀任务已分配给其他坐席")
    return task


@router.get("/tasks/{task_id}")
def get_task(task_id: Id, request: Request, session: DbSession, services: ServicesDep, user: AgentUser):
    tz = services.settings.tz
    task = _readable_task(session, task_id, user)
    elder = session.get(Elder, task.elder_id)
    today = today_in(tz)
    audit_service.record(session=session, actor=user, action="care_task_view", elder_id=task.elder_id, detail={"task": task.id},
                         ip=client_ip(request))
    attempts = session.execute(select(CareAttempt).where(CareAttempt.task_id == task.id).order_by(CareAttempt.id)).scalars()
    checks = session.execute(select(CareCheck).where(CareCheck.task_id == task.id).order_by(CareCheck.id)).scalars()
    phones = session.execute(select(ElderPhone).where(ElderPhone.elder_id == task.elder_id)
                             .order_by(ElderPhone.is_primary.desc(), ElderPhone.id)).scalars()
    script = service.script_for(settings_row=service.care_settings(session=session), elder_name=elder.name if elder else "",
                                agent_name=user.display_name or user.username)
    return {
        "task": _task_dict(task, elder, tz, today=today), "script": script,
        "phones": [{"number": phone.number, "kind": phone.kind, "relation": phone.relation, "owner_name": phone.owner_name}
                   for phone in phones],
        "attempts": [{"id": a.id, "at": local_iso(a.at, tz), "outcome": a.outcome,
                      "outcome_label": AttemptOutcome.label_of(a.outcome) if a.outcome else "呼叫中",
                      "talk_seconds": a.talk_seconds} for a in attempts],
        "checks": [{"id": c.id, "at": local_iso(c.at, tz), "answers": c.answers, "findings": c.findings, "note": c.note}
                   for c in checks],
        "topics": {key: {"label": label, "choices": choices} for key, (label, choices) in CHECK_TOPICS.items()},
        "findings": FINDINGS,
    }


class DialIn(BaseModel):
    number: str | None = Field(default=None, max_length=40, description="which of the elder's numbers (default: the primary)")


@router.post("/tasks/{task_id}/dial")
def dial(task_id: Id, body: DialIn, request: Request, session: DbSession, services: ServicesDep, user: AgentUser):
    """Preview dialling: my phone rings first, then the elder's number (or the contact's, for a
    contact call) is dialled with the hotline's caller ID; the outcome comes from the call."""
    task = _readable_task(session, task_id, user)
    phone = _number_to_dial(session, task, body.number, services.settings.city_area_code)
    attempt = service.start_attempt(session=session, task=task, user_id=user.id)
    if task.assigned_to is None:
        task.assigned_to = user.id
        session.add(task)
    audit_service.record(session=session, actor=user, action="care_call", elder_id=task.elder_id,
                         detail={"task": task.id, "number": phone.e164}, ip=client_ip(request))
    attempt_id = attempt.id
    release(session)
    control.callback(redis=services.redis, settings=services.settings, extension=user.sip_extension, phone=phone,
                     elder_id=task.elder_id, channel_id=attempt.linkedid)
    return {"ok": True, "attempt_id": attempt_id, "message": f"正在呼叫您的分机，接起后将拨打 {phone.display}"}


def _number_to_dial(session, task: CareTask, number: str | None, area_code: str):
    if task.kind == TaskKind.VISIT:
        raise Conflict("上门巡访任务不能外呼")
    wanted = number or task.phone
    if wanted is None:
        primary = session.execute(select(ElderPhone.number).where(ElderPhone.elder_id == task.elder_id)
                                  .order_by(ElderPhone.is_primary.desc(), ElderPhone.id)).scalars().first()
        if primary is None:
            raise Conflict("老人档案中没有电话号码，请安排上门巡访")
        wanted = primary
    try:
        phone = parse_phone(wanted, default_area_code=area_code)
    except InvalidPhoneNumber as exc:
        raise FieldErrors.single("number", str(exc)) from exc
    elder = elders_service.get_or_raise(session=session, elder_id=task.elder_id)
    if phone.e164 not in elders_service.numbers_of(session=session, elder=elder):
        raise FieldErrors.single("number", "该号码不在老人档案的电话、紧急联系人或管家中，不能外呼")
    return phone


class CheckIn(BaseModel):
    answers: dict[str, str] = Field(default_factory=dict)
    findings: list[str] = Field(default_factory=list, max_length=10)
    note: str = Field(default="", max_length=2000)
    work_order_id: Id | None = Field(default=None, description="the order opened from this check")


@router.post("/tasks/{task_id}/check")
def save_check(task_id: Id, body: CheckIn, session: DbSession, services: ServicesDep, user: AgentUser):
    """The care call's check: each topic one of its choices; findings that need action are
    listed for the agent to open a work order or an emergency from (the console offers both)."""
    task = _readable_task(session, task_id, user)
    if task.status != TaskStatus.OPEN:
        raise Conflict(f"该任务{TaskStatus.label_of(task.status)}，不能再填写")
    errors = {f"answers.{key}": f"请选择：{'、'.join(CHECK_TOPICS[key][1].values())}" for key in CHECK_TOPICS
              if body.answers.get(key) not in CHECK_TOPICS[key][1]}
    errors |= {f"answers.{key}": "未知的问题" for key in body.answers if key not in CHECK_TOPICS}
    unknown = [finding for finding in body.findings if finding not in FINDINGS]
    if unknown:
        errors["findings"] = f"未知的发现：{'、'.join(unknown)}"
    if errors:
        raise FieldErrors(list(errors.items()))
    answered = session.execute(select(CareAttempt.id).where(CareAttempt.task_id == task.id,
                                                            CareAttempt.outcome == AttemptOutcome.ANSWERED)).first()
    if answered is None:
        raise Conflict("本任务还没有接通的关怀电话，无法填写关怀记录")
    if body.work_order_id is not None:
        _require_order_of(session, body.work_order_id, task.elder_id)
    check = CareCheck(task_id=task.id, elder_id=task.elder_id, user_id=user.id, answers=body.answers,
                      findings=list(dict.fromkeys(body.findings)), needs_action=bool(body.findings), note=body.note,
                      work_order_id=body.work_order_id)
    task.status, task.closed_at = TaskStatus.DONE, utcnow()
    session.add_all([check, task])
    session.flush()
    return {"ok": True, "check_id": check.id, "findings": [FINDINGS[f] for f in check.findings]}


def _require_order_of(session, order_id: int, elder_id: int) -> None:
    from workorders.models import WorkOrder

    order = session.get(WorkOrder, order_id)
    if order is None or order.elder_id != elder_id:
        raise FieldErrors.single("work_order_id", "该工单不存在或不属于这位老人")


class OverrideIn(BaseModel):
    reason: str = Field(max_length=16)
    note: str = Field(default="", max_length=200)
    until: date | None = None
    call_every_days: int | None = Field(default=None, ge=1, le=366)
    visit_every_days: int | None = Field(default=None, ge=1, le=366)


@router.post("/elders/{elder_id}/overrides", status_code=201)
def add_override(elder_id: Id, body: OverrideIn, session: DbSession, services: ServicesDep, user: AgentUser):
    elders_service.get_or_raise(session=session, elder_id=elder_id)
    if body.reason not in OverrideReason.labels():
        raise FieldErrors.single("reason", f"原因应为：{'、'.join(OverrideReason.labels().values())}")
    if body.reason == OverrideReason.ADJUSTED and body.call_every_days is None and body.visit_every_days is None:
        raise FieldErrors.single("call_every_days", "调整频次须填写电话或巡访间隔天数")
    if body.until is not None and body.until < today_in(services.settings.tz):
        raise FieldErrors.single("until", "结束日期不能早于今天")
    for old in session.execute(select(CareOverride).where(CareOverride.elder_id == elder_id,
                                                          CareOverride.ended_at.is_(None))).scalars():
        old.ended_at = utcnow()  # one exception at a time: the new one replaces it
        session.add(old)
    adjusted = body.reason == OverrideReason.ADJUSTED
    override = CareOverride(elder_id=elder_id, reason=body.reason, note=body.note, until=body.until, created_by=user.id,
                            call_every_days=body.call_every_days if adjusted else None,
                            visit_every_days=body.visit_every_days if adjusted else None)
    session.add(override)
    if not adjusted:  # no more contact while it holds: the elder's open tasks go
        service.cancel_open_tasks(session=session, elder_id=elder_id, why=OverrideReason.label_of(body.reason))
    session.flush()
    return {"id": override.id}


@router.delete("/overrides/{override_id}")
def end_override(override_id: Id, session: DbSession, user: AgentUser):
    override = session.get(CareOverride, override_id)
    if override is None:
        raise NotFound("该例外不存在")
    if override.ended_at is not None:
        raise Conflict("该例外已结束")
    override.ended_at = utcnow()
    session.add(override)
    return {"ok": True}


@router.get("/elders/{elder_id}/plan")
def elder_plan(elder_id: Id, session: DbSession, services: ServicesDep, user: AgentUser):
    tz = services.settings.tz
    elders_service.get_or_raise(session=session, elder_id=elder_id)
    plan = session.get(CarePlan, elder_id)
    overrides = session.execute(select(CareOverride).where(CareOverride.elder_id == elder_id)
                                .order_by(CareOverride.id.desc()).limit(10)).scalars()
    contacts = session.execute(select(CareContact).where(CareContact.elder_id == elder_id)
                               .order_by(CareContact.at.desc()).limit(10)).scalars()
    return {
        "plan": None if plan is None else {
            "rule_id": plan.rule_id, "risk_level": plan.risk_level, "call_every_days": plan.call_every_days,
            "visit_every_days": plan.visit_every_days, "last_contact_at": local_iso(plan.last_contact_at, tz),
            "last_visit_at": local_iso(plan.last_visit_at, tz),
            "call_due_on": plan.call_due_on.isoformat() if plan.call_due_on else None,
            "visit_due_on": plan.visit_due_on.isoformat() if plan.visit_due_on else None},
        "overrides": [{"id": o.id, "reason": o.reason, "reason_label": OverrideReason.label_of(o.reason), "note": o.note,
                       "until": o.until.isoformat() if o.until else None, "ended": o.ended_at is not None} for o in overrides],
        "contacts": [{"kind": c.kind, "label": ContactKind.label_of(c.kind), "at": local_iso(c.at, tz)} for c in contacts],
    }


# ---- supervisors ---------------------------------------------------------------------------------

class RuleIn(BaseModel):
    name: str = Field(max_length=50)
    position: int = Field(default=0, ge=0, le=1000)
    living_situations: list[str] = Field(default_factory=list, max_length=10)
    ability_levels: list[str] = Field(default_factory=list, max_length=10)
    economic_statuses: list[str] = Field(default_factory=list, max_length=10)
    risk_flags: list[str] = Field(default_factory=list, max_length=20)
    min_age: int | None = None
    call_every_days: int | None = None
    visit_every_days: int | None = None
    risk_level: str = RiskLevel.LOW
    active: bool = True


@router.get("/rules")
def list_rules(session: DbSession, user: SupervisorUser):
    rules = session.execute(select(CareRule).order_by(CareRule.position, CareRule.id)).scalars()
    return {"rules": [_rule_dict(rule) for rule in rules]}


@router.post("/rules", status_code=201)
def create_rule(body: RuleIn, session: DbSession, user: CitySupervisorUser):
    return _rule_dict(service.save_rule(session=session, rule_id=None, fields=body.model_dump(), user_id=user.id))


@router.put("/rules/{rule_id}")
def update_rule(rule_id: Id, body: RuleIn, session: DbSession, user: CitySupervisorUser):
    return _rule_dict(service.save_rule(session=session, rule_id=rule_id, fields=body.model_dump(), user_id=user.id))


@router.delete("/rules/{rule_id}")
def deactivate_rule(rule_id: Id, session: DbSession, user: CitySupervisorUser):
    """Rules are switched off, not deleted: plans made by them keep their history."""
    rule = session.get(CareRule, rule_id)
    if rule is None:
        raise Conflict("该规则不存在")
    rule.active, rule.updated_by, rule.updated_at = False, user.id, utcnow()
    session.add(rule)
    return _rule_dict(rule)


class SettingsIn(BaseModel):
    call_attempts: int = Field(ge=1, le=10)
    retry_after_hours: list[int] = Field(min_length=1, max_length=9)
    visit_deadline_hours: int = Field(ge=1, le=168)
    work_starts: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    work_ends: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    script: str = Field(default="", max_length=2000)


def settings_dict(row) -> dict:
    return {"call_attempts": row.call_attempts, "retry_after_hours": row.retry_after_hours,
            "visit_deadline_hours": row.visit_deadline_hours, "work_starts": row.work_starts, "work_ends": row.work_ends,
            "script": row.script, "default_script": service.DEFAULT_SCRIPT}


@router.get("/settings")
def get_settings(session: DbSession, user: SupervisorUser):
    return settings_dict(service.care_settings(session=session))


@router.put("/settings")
def put_settings(body: SettingsIn, session: DbSession, user: CitySupervisorUser):
    return settings_dict(service.save_policy(session=session, fields=body.model_dump(), user_id=user.id))


@router.post("/day")
def make_day(session: DbSession, services: ServicesDep, user: CitySupervisorUser):
    """The whole city's plan (the worker makes it each morning): a city supervisor's."""
    tz = services.settings.tz
    made = service.make_day(session=session, today=today_in(tz), tz=tz)
    return {"calls": made.calls, "visits": made.visits, "assigned": made.assigned}


@router.get("/tasks")
def list_tasks(session: DbSession, services: ServicesDep, user: SupervisorUser, status: TaskStatusName = TaskStatus.OPEN,
               kind: TaskKindName | None = None, assigned_to: Id | None = None, limit: Limit = 200):
    tz = services.settings.tz
    query = select(CareTask).where(CareTask.status == status)
    if kind:
        query = query.where(CareTask.kind == kind)
    if assigned_to is not None:
        query = query.where(CareTask.assigned_to == assigned_to)
    tasks = list(session.execute(query.order_by(CareTask.due_on, CareTask.risk_level.desc(), CareTask.id).limit(limit)).scalars())
    return {"tasks": _tasks_out(session, tasks, tz, today_in(tz))}


class AssignIn(BaseModel):
    user_id: Id | None = None


@router.post("/tasks/{task_id}/assign")
def assign(task_id: Id, body: AssignIn, session: DbSession, services: ServicesDep, user: SupervisorUser):
    task = service.reassign(session=session, task_id=task_id, user_id=body.user_id)
    tz = services.settings.tz
    return _task_dict(task, session.get(Elder, task.elder_id), tz, today=today_in(tz))


@router.get("/alerts")
def care_alerts(session: DbSession, services: ServicesDep, user: SupervisorUser):
    """Escalated visits still open, and findings (of care calls and visits, the last 30 days) not
    dealt with: no work order opened from them, or one still open."""
    tz = services.settings.tz
    tasks = service.alerts(session=session)
    findings = service.open_findings(session=session, since=utcnow() - timedelta(days=30))
    elders = {elder.id: elder.name for elder in session.execute(
        select(Elder).where(Elder.id.in_({check.elder_id for check, _ in findings}))).scalars()} if findings else {}
    return {"alerts": _tasks_out(session, tasks, tz, today_in(tz)),
            "findings": [{"check_id": check.id, "task_id": check.task_id, "elder_id": check.elder_id,
                          "elder_name": elders.get(check.elder_id, ""), "at": local_iso(check.at, tz),
                          "findings": [FINDINGS.get(f, f) for f in check.findings], "note": check.note,
                          "work_order_id": check.work_order_id,
                          "work_order_status": status} for check, status in findings]}
