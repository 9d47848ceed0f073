"""Supervisor management pages: agents (accounts, queues and penalty), service types and their
SLAs, providers, the IVR menu and business hours. Plain forms (POST, then a redirect with the outcome); the rules live in the
services the JSON API uses too."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from sqlmodel import select

from agent_ui import forms
from agent_ui.pages import render
from callcenter.areas import service as areas_service
from callcenter.areas.models import AREA_LEVELS
from callcenter.auth import service as auth_service
from callcenter.auth.models import ROLES
from callcenter.calls import service as calls_service
from callcenter.calls.models import IVR_ROUTES, AgentActivity, AgentStatus
from callcenter.areas import scope as areas_scope
from callcenter.deps import CitySupervisorUser, DbSession, ServicesDep, SupervisorUser, release
from callcenter.errors import Conflict, DomainError, FieldErrors, NotFound, PermissionDenied
from callcenter.timeutil import utcnow
from callcenter.inputs import Id
from ivr import menu as ivr_menu
from ivr import prompts as ivr_prompts
from ivr import service as ivr_service
from workorders import service as orders_service
from workorders.models import ProviderStatus

router = APIRouter(include_in_schema=False)


def _done(path: str, message: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?{urlencode({'ok': message})}", status_code=303)


def _status(exc: DomainError) -> int:
    """The page's status for a refused change: not allowed 403, outside the scope 404, else 422."""
    return 403 if isinstance(exc, PermissionDenied) else 404 if isinstance(exc, NotFound) else 422


def _problem(exc: DomainError) -> str:
    if isinstance(exc, FieldErrors):
        return "；".join(message for _, message in exc.errors)
    return exc.message


# --- agents ----------------------------------------------------------------------------------------

def _agents_page(request: Request, session, user, *, error: str | None = None, status_code: int = 200):
    live = {row.extension: row for row in session.exec(select(AgentStatus))}
    scope = areas_scope.current(session)
    areas = [area for area in areas_service.list_all(session=session) if scope.city or area.id in scope.areas]
    area_names = {area.id: area.name for area in areas_service.list_all(session=session)}
    people = []
    for person in auth_service.list_users(session=session, scope=scope):
        state = live.get(person.sip_extension) if person.sip_extension else None
        people.append({"user": person, "queues_text": " ".join(person.queues),
                       "manageable": person.role == "agent" or auth_service.has_role(user, "admin"),
                       "area": area_names.get(person.area_id, "全市") if person.area_id else "全市",
                       "live": AgentActivity.label_of(state.state) if state else "未登录",
                       "live_queues": " ".join(state.queues) if state else ""})
    return render(request, "manage_agents.html", {
        "user": user, "people": people, "roles": ROLES, "error": error, "ok": request.query_params.get("ok"),
        "may_manage_all": auth_service.has_role(user, "admin"), "areas": areas, "city": scope.city, "area_levels": AREA_LEVELS,
    }, status_code=status_code)


@router.get("/supervisor/agents")
def agents_page(request: Request, session: DbSession, user: SupervisorUser):
    return _agents_page(request, session, user)


@router.post("/supervisor/agents")
def create_agent(request: Request, session: DbSession, services: ServicesDep, user: SupervisorUser, username: str = Form(""),
                 display_name: str = Form(""), password: str = Form(""), role: str = Form("agent"),
                 sip_extension: str = Form(""), queues: str = Form(""), queue_penalty: int = Form(0), area_id: str = Form("")):
    try:
        area = forms.integer_field(area_id, "area_id", "所属地区") if area_id.strip() else None
        auth_service.check_may_manage(user, role, area_id=area, scope=areas_scope.current(session))
        created = auth_service.create_user(session=session, username=username, role=role, password=password,
                                           display_name=display_name.strip(), sip_extension=sip_extension.strip() or None,
                                           area_id=area)
        calls_service.update_agent(session=session, settings=services.settings, user_id=created.id,
                                   changes={"queues": queues.split(), "queue_penalty": queue_penalty})
    except DomainError as exc:
        session.rollback()
        return _agents_page(request, session, user, error=_problem(exc), status_code=_status(exc))
    return _done("/supervisor/agents", f"已创建账号：{created.username}")


@router.post("/supervisor/agents/{user_id}")
def change_agent(request: Request, user_id: Id, session: DbSession, services: ServicesDep, user: SupervisorUser,
                 action: str = Form(...), queues: str = Form(""), queue_penalty: int = Form(0), password: str = Form("")):
    """`action`: queues (queues and penalty, told to Asterisk at once for an agent logged in),
    password (reset), deactivate, activate."""
    changes = {"queues": {"queues": queues.split(), "queue_penalty": queue_penalty}, "password": {"password": password},
               "deactivate": {"active": False}, "activate": {"active": True}}.get(action)
    try:
        if changes is None:
            raise FieldErrors.single("action", f"未知操作：{action}")
        scope = areas_scope.current(session)
        target = auth_service.get_user_within_or_raise(session=session, user_id=user_id, scope=scope)
        auth_service.check_may_manage(user, target.role, area_id=target.area_id, scope=scope)
        if target.id == user.id and action == "deactivate":
            raise FieldErrors.single("active", "不能停用自己的账号")
        _, membership = calls_service.update_agent(session=session, settings=services.settings, user_id=user_id,
                                                   changes=changes)
        username = target.username
        release(session)  # committed before Asterisk is told, and no connection held while the bridge answers
        if membership is not None:
            calls_service.apply_membership(database=services.db, redis=services.redis, settings=services.settings,
                                           change=membership)
    except DomainError as exc:
        session.rollback()
        return _agents_page(request, session, user, error=_problem(exc), status_code=_status(exc))
    messages = {"queues": "已更新队列与优先级", "password": "已重置密码", "deactivate": "已停用", "activate": "已启用"}
    return _done("/supervisor/agents", f"{username}：{messages[action]}")


# --- service types ---------------------------------------------------------------------------------

def _service_types_page(request: Request, session, user, *, error: str | None = None, status_code: int = 200):
    return render(request, "manage_service_types.html", {
        "user": user, "types": orders_service.service_types(session=session, active_only=False), "error": error,
        "ok": request.query_params.get("ok")}, status_code=status_code)


@router.get("/supervisor/service-types")
def service_types_page(request: Request, session: DbSession, user: SupervisorUser):
    return _service_types_page(request, session, user)


@router.post("/supervisor/service-types/{code}")
def change_service_type(request: Request, code: str, session: DbSession, user: CitySupervisorUser, name: str = Form(""),
                        accept_minutes: int = Form(...), arrive_minutes: int = Form(...), complete_minutes: int = Form(...),
                        unit_cost: str = Form("0"), government_purchased: bool = Form(False), active: bool = Form(False)):
    try:
        cost = forms.decimal_field(unit_cost, "unit_cost", "单价")
        row = orders_service.update_service_type(session=session, code=code, fields={
            "name": name, "accept_minutes": accept_minutes, "arrive_minutes": arrive_minutes,
            "complete_minutes": complete_minutes, "unit_cost": cost, "government_purchased": government_purchased,
            "active": active})
    except DomainError as exc:
        session.rollback()
        return _service_types_page(request, session, user, error=_problem(exc), status_code=422)
    return _done("/supervisor/service-types", f"已保存：{row.name}")


# --- providers -------------------------------------------------------------------------------------

def _providers_page(request: Request, session, user, *, error: str | None = None, form: dict | None = None,
                    status_code: int = 200):
    areas = areas_service.list_all(session=session)
    names = {area.id: area.name for area in areas}
    providers = orders_service.list_providers(session=session)
    return render(request, "manage_providers.html", {
        "user": user, "providers": providers, "types": orders_service.service_types(session=session, active_only=False),
        "statuses": ProviderStatus.labels(), "streets": [a for a in areas if a.level == "street"], "area_names": names,
        "error": error, "form": form or {}, "ok": request.query_params.get("ok"),
    }, status_code=status_code)


@router.get("/supervisor/providers")
def providers_page(request: Request, session: DbSession, user: SupervisorUser):
    return _providers_page(request, session, user)


@router.post("/supervisor/providers")
async def save_provider(request: Request, session: DbSession, services: ServicesDep, user: CitySupervisorUser):
    """Create (no `id`) or change a provider: service types, coverage (streets), capacity,
    contract window, status with its reason."""
    form = await request.form()
    fields = {
        "name": form.get("name", ""), "contact_name": form.get("contact_name", ""), "phone": form.get("phone", ""),
        "service_types": form.getlist("service_types"), "status": form.get("status", "active"),
        "status_reason": form.get("status_reason", ""),
    }
    provider_id = int(form["id"]) if (form.get("id") or "").isdigit() else None
    shown = fields | {key: form.get(key, "") for key in ("daily_capacity", "contract_start", "contract_end")} | {
        "id": provider_id, "coverage": [int(area) for area in form.getlist("coverage") if area.isdigit()]}
    try:
        fields["coverage"] = [int(area) for area in form.getlist("coverage")]
        fields["daily_capacity"] = forms.integer_field(form.get("daily_capacity", "20"), "daily_capacity", "每日接单上限")
        fields["contract_start"] = forms.date_field(form.get("contract_start", ""), "contract_start", "合同开始日期")
        fields["contract_end"] = forms.date_field(form.get("contract_end", ""), "contract_end", "合同结束日期")
        provider = orders_service.save_provider(session=session, fields=fields, area_code=services.settings.city_area_code,
                                                provider_id=provider_id)
    except (DomainError, ValueError) as exc:
        session.rollback()
        message = _problem(exc) if isinstance(exc, DomainError) else "覆盖区域无效"
        return _providers_page(request, session, user, error=message, form=shown, status_code=422)
    return _done("/supervisor/providers", f"已保存服务商：{provider.name}")


# --- IVR menu and business hours -------------------------------------------------------------------

def _ivr_page(request: Request, session, services, user, *, error: str | None = None, status_code: int = 200):
    view = ivr_service.settings_view(session=session, now=utcnow().astimezone(services.settings.tz),
                                     menu_file=services.settings.ivr_menu_file)
    return render(request, "manage_ivr.html", {
        "user": user, "data": view, "routes": {route: IVR_ROUTES[route] for route in ivr_menu.MENU_ROUTES},
        "weekdays": ivr_menu.WEEKDAYS, "prompts": ivr_prompts.PROMPTS, "error": error, "ok": request.query_params.get("ok"),
    }, status_code=status_code)


@router.get("/supervisor/ivr")
def ivr_page(request: Request, session: DbSession, services: ServicesDep, user: SupervisorUser):
    return _ivr_page(request, session, services, user)


@router.post("/supervisor/ivr")
async def save_ivr(request: Request, session: DbSession, services: ServicesDep, user: CitySupervisorUser):
    """The menu (keys, waits, queues, priority), business hours (days, periods, holidays, 调休
    workdays) and prompt texts, in one form; a page saved after someone else's save is refused."""
    form = await request.form()
    text = lambda name: str(form.get(name, "")).strip()  # noqa: E731
    try:
        data = {
            "menu": {"keys": {digit: text(f"key_{digit}") for digit in "0123456789"},
                     **{name: forms.integer_field(text(name), name, label) for name, label in IVR_NUMBERS.items()},
                     "queue": text("queue"), "on_duty_queue": text("on_duty_queue"),
                     "high_risk_skip_menu": form.get("high_risk_skip_menu") == "true"},
            "hours": {"always_open": form.get("always_open") == "true", "open_days": form.getlist("open_days"),
                      "periods": text("periods").replace("，", " ").replace(",", " ").split(),
                      "holidays": text("holidays").replace(",", " ").split(), "workdays": text("workdays").replace(",", " ").split()},
            "prompts": {name: text(f"prompt_{name}") for name in ivr_prompts.PROMPTS},
        }
        versions = {key: int(form.get(f"version_{key}") or 0) for key in ivr_service.SETTING_KEYS}
        ivr_service.save_config(session=session, data=data, user=user, versions=versions,
                                menu_file=services.settings.ivr_menu_file)
    except DomainError as exc:
        session.rollback()
        return _ivr_page(request, session, services, user, error=_problem(exc),
                         status_code=409 if isinstance(exc, Conflict) else 422)
    return _done("/supervisor/ivr", "已保存语音导航与工作时间设置，一秒内对新来电生效")


IVR_NUMBERS = {"digit_timeout_seconds": "按键等待秒数", "retries": "按错重听次数", "emergency_priority": "紧急优先级",
               "survey_timeout_seconds": "评价等待秒数"}
