"""关怀计划 (/supervisor/care): the care rules, the retry and escalation policy with the care-call
script, today's care work by agent, and the escalated visits still open. Plain forms (POST, then a
redirect with the outcome); the rules live in callcenter.care.service, as for the JSON API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import func, select

from agent_ui import forms
from agent_ui.manage import _done, _problem
from agent_ui.pages import render
from callcenter.areas import scope as areas_scope
from callcenter.auth import service as auth_service
from callcenter.care import service as care_service
from callcenter.care.models import CareRule, CareTask, RiskLevel, TaskKind, TaskStatus
from callcenter.deps import CitySupervisorUser, DbSession, ServicesDep, SupervisorUser
from callcenter.elders import models as elders_models
from callcenter.elders.models import Elder
from callcenter.errors import DomainError, FieldErrors
from callcenter.inputs import Id
from callcenter.timeutil import local_iso, today_in, utcnow

router = APIRouter(include_in_schema=False)
PAGE = "/supervisor/care"
CHOICES = {"living_situations": elders_models.LIVING_SITUATIONS, "ability_levels": elders_models.ABILITY_LEVELS,
           "economic_statuses": elders_models.ECONOMIC_STATUSES, "risk_flags": elders_models.RISK_FLAGS}


def _page(request: Request, session, services, user, *, error: str | None = None, status_code: int = 200):
    tz = services.settings.tz
    today = today_in(tz)
    agents = [person for person in auth_service.list_users(session=session, scope=areas_scope.current(session))
              if person.role == "agent" and person.active]
    rules = session.execute(select(CareRule).order_by(CareRule.position, CareRule.id)).scalars().all()
    by_agent = session.execute(
        select(CareTask.assigned_to, CareTask.status, func.count())
        .where(CareTask.due_on <= today, CareTask.kind.in_((TaskKind.CALL, TaskKind.CONTACT_CALL)),
               (CareTask.status == TaskStatus.OPEN) | (CareTask.due_on == today))
        .group_by(CareTask.assigned_to, CareTask.status)).all()
    work: dict[int | None, dict[str, int]] = {}
    for assignee, status, count in by_agent:
        work.setdefault(assignee, {})[status] = count
    work = {assignee: counts for assignee, counts in work.items()
            if assignee is None or assignee in {agent.id for agent in agents}}  # the agents in my scope
    alerts = care_service.alerts(session=session)
    names = {elder.id: elder for elder in session.execute(
        select(Elder).where(Elder.id.in_({task.elder_id for task in alerts}))).scalars()} if alerts else {}
    return render(request, "manage_care.html", {
        "user": user, "rules": rules, "choices": CHOICES, "risk_levels": RiskLevel.labels(),
        "policy": care_service.care_settings(session=session), "default_script": care_service.DEFAULT_SCRIPT,
        "work": work, "statuses": TaskStatus.labels(), "agents": agents,
        "alerts": [{"task": task, "elder": names.get(task.elder_id), "deadline": local_iso(task.deadline_at, tz)} for task in alerts],
        "now_iso": local_iso(utcnow(), tz), "error": error, "ok": request.query_params.get("ok")}, status_code=status_code)


@router.get(PAGE)
def care_page(request: Request, session: DbSession, services: ServicesDep, user: SupervisorUser):
    return _page(request, session, services, user)


def _int_or_none(text: str | None, field: str, label: str) -> int | None:
    """An optional whole number of a form (empty: None), checked as every page form's."""
    return forms.integer_field(text, field, label) if (text or "").strip() else None


async def _rule_fields(request: Request) -> dict:
    form = await request.form()
    return {"name": str(form.get("name", "")).strip(), "position": _int_or_none(form.get("position"), "position", "顺序") or 0,
            **{key: [str(v) for v in form.getlist(key)] for key in CHOICES},
            "min_age": _int_or_none(form.get("min_age"), "min_age", "年龄"),
            "call_every_days": _int_or_none(form.get("call_every_days"), "call_every_days", "电话间隔"),
            "visit_every_days": _int_or_none(form.get("visit_every_days"), "visit_every_days", "巡访间隔"),
            "risk_level": str(form.get("risk_level", RiskLevel.LOW)), "active": form.get("active") == "true"}


@router.post(PAGE + "/rules")
async def save_rule(request: Request, session: DbSession, services: ServicesDep, user: CitySupervisorUser,
                    rule_id: Id | None = None):
    try:
        rule = care_service.save_rule(session=session, rule_id=rule_id, fields=await _rule_fields(request), user_id=user.id)
    except DomainError as exc:
        session.rollback()
        return _page(request, session, services, user, error=_problem(exc), status_code=422)
    return _done(PAGE, f"已保存规则：{rule.name}（次日起生效，或点“立即生成”）")


@router.post(PAGE + "/policy")
async def save_policy(request: Request, session: DbSession, services: ServicesDep, user: CitySupervisorUser):
    form = await request.form()
    try:
        hours = [_int_or_none(part, "retry_after_hours", "重拨间隔") for part in str(form.get("retry_after_hours", "")).replace("，", ",").split(",")]
        care_service.save_policy(session=session, user_id=user.id, fields={
            "call_attempts": _int_or_none(form.get("call_attempts"), "call_attempts", "拨打次数") or 1,
            "retry_after_hours": [h for h in hours if h is not None],
            "visit_deadline_hours": _int_or_none(form.get("visit_deadline_hours"), "visit_deadline_hours", "巡访时限") or 24,
            "work_starts": str(form.get("work_starts", "")), "work_ends": str(form.get("work_ends", "")),
            "script": str(form.get("script", ""))[:2000]})
    except DomainError as exc:
        session.rollback()
        return _page(request, session, services, user, error=_problem(exc), status_code=422)
    return _done(PAGE, "已保存关怀策略与话术")


@router.post(PAGE + "/day")
def make_day(request: Request, session: DbSession, services: ServicesDep, user: CitySupervisorUser) -> RedirectResponse:
    tz = services.settings.tz
    made = care_service.make_day(session=session, today=today_in(tz), tz=tz)
    return _done(PAGE, f"已生成：关怀电话 {made.calls} 个、上门巡访 {made.visits} 个，分配 {made.assigned} 个")


@router.post(PAGE + "/hand-over")
async def hand_over(request: Request, session: DbSession, services: ServicesDep, user: SupervisorUser):
    """An agent's open care calls to another agent (a shift change, a sick agent) or back to the pool."""
    form = await request.form()
    try:
        source = _int_or_none(form.get("from_user_id"), "from_user_id", "坐席")
        if source is None:
            raise FieldErrors.single("from_user_id", "请选择转出的坐席")
        moved = care_service.hand_over(session=session, from_user_id=source,
                                       to_user_id=_int_or_none(form.get("to_user_id"), "to_user_id", "坐席"))
    except DomainError as exc:
        session.rollback()
        return _page(request, session, services, user, error=_problem(exc), status_code=422)
    return _done(PAGE, f"已转交 {moved} 个关怀电话")
