"""巡访员: the visitors of an area and the visits they made, for supervisors, street officials and
community staff: create a visitor, send a login link, deactivate or reactivate, and confirm a
volunteer's visit (its hours go to the time bank, once). Plain forms (POST, then a redirect with the
outcome); the rules are the ones the JSON API uses (callcenter/care/visits.py)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import RedirectResponse

from agent_ui import forms
from agent_ui.pages import render
from callcenter.areas import service as areas_service
from callcenter.care import visits
from callcenter.care.visitors_api import ManagerUser, kick_sender
from callcenter.deps import CurrentScope, DbSession, ServicesDep
from callcenter.errors import DomainError, FieldErrors, NotFound, PermissionDenied
from callcenter.inputs import Id
from callcenter.timeutil import local_iso

router = APIRouter(include_in_schema=False)
PAGE = "/supervisor/visitors"


def _done(message: str) -> RedirectResponse:
    return RedirectResponse(f"{PAGE}?{urlencode({'ok': message})}", status_code=303)


def _short(at, tz) -> str:
    return (local_iso(at, tz) or "")[5:16].replace("T", " ")


def _page(request: Request, session, services, user, scope, *, error: str | None = None, status_code: int = 200):
    tz = services.settings.tz
    communities = [area for area in areas_service.list_all(session=session)
                   if area.level == "community" and (scope.city or area.id in scope.areas)]
    names = {area.id: area.name for area in communities}
    people = visits.visitors_within(session=session, scope=scope)
    hours = visits.balances(session=session, user_ids=[p.id for p in people])
    done = [{"task_id": row.task.id, "elder": row.elder_name, "visitor": row.visitor.display_name if row.visitor else "",
             "volunteer": bool(row.visitor and row.visitor.volunteer), "at": _short(row.check.at, tz),
             "arrived": _short(row.check.checked_in_at, tz), "findings": [visits.FINDINGS.get(f, f) for f in row.check.findings],
             "order": visits.order_state(row.order), "confirmed": visits.hours_text(row.entry.hours) if row.entry else None,
             "hours": visits.hours_text(row.hours)}
            for row in visits.done_visits(session=session, limit=100)]
    return render(request, "manage_visitors.html", {
        "user": user, "people": [{"user": p, "community": names.get(p.area_id, ""), "hours": visits.hours_text(hours.get(p.id))} for p in people],
        "communities": communities, "kinds": visits.VISITOR_KINDS, "visits": done, "error": error,
        "ok": request.query_params.get("ok")}, status_code=status_code)


def _refused(request, session, services, user, scope, exc: DomainError):
    session.rollback()
    status = 403 if isinstance(exc, PermissionDenied) else 404 if isinstance(exc, NotFound) else 422 \
        if isinstance(exc, FieldErrors) else 409
    message = "；".join(m for _, m in exc.errors) if isinstance(exc, FieldErrors) else exc.message
    return _page(request, session, services, user, scope, error=message, status_code=status)


@router.get(PAGE)
def visitors_page(request: Request, session: DbSession, services: ServicesDep, user: ManagerUser, scope: CurrentScope):
    return _page(request, session, services, user, scope)


@router.post(PAGE)
def create_visitor(request: Request, session: DbSession, services: ServicesDep, user: ManagerUser, scope: CurrentScope,
                   name: str = Form(""), phone: str = Form(""), community_id: str = Form(""), volunteer: str = Form(""),
                   password: str = Form("")):
    try:
        if not community_id.strip():
            raise FieldErrors.single("community_id", "请选择所属社区")
        community = forms.integer_field(community_id, "community_id", "所属社区")
        created = visits.create_visitor(session=session, name=name, phone=phone, community_id=community, volunteer=volunteer == "1",
                                        password=password or None, scope=scope, area_code=services.settings.city_area_code)
    except DomainError as exc:
        return _refused(request, session, services, user, scope, exc)
    return _done(f"已添加巡访员：{created.display_name}")


@router.post(PAGE + "/{visitor_id}")
def change_visitor(visitor_id: Id, request: Request, background: BackgroundTasks, session: DbSession, services: ServicesDep,
                   user: ManagerUser, scope: CurrentScope, action: str = Form("")):
    """`action`: link (send a one-time login link by SMS), deactivate, activate."""
    try:
        visitor = visits.visitor_within_or_raise(session=session, user_id=visitor_id, scope=scope)
        if action == "link":
            masked = visits.send_login_link(session=session, visitor=visitor, public_url=services.settings.public_url,
                                            minutes=services.settings.provider_link_minutes)
            background.add_task(kick_sender, services.redis)
            return _done(f"{visitor.display_name}：登录链接已发送至 {masked}")
        if action not in ("deactivate", "activate"):
            raise FieldErrors.single("action", f"未知操作：{action}")
        visits.update_visitor(session=session, visitor=visitor, active=action == "activate")
    except DomainError as exc:
        return _refused(request, session, services, user, scope, exc)
    return _done(f"{visitor.display_name}：{'已启用' if action == 'activate' else '已停用'}")


@router.post("/supervisor/visits/{task_id}/confirm")
def confirm_visit(task_id: Id, request: Request, session: DbSession, services: ServicesDep, user: ManagerUser,
                  scope: CurrentScope, hours: str = Form("")):
    try:
        entry = visits.confirm_visit(session=session, task_id=task_id, confirmer=user, hours=hours.strip() or None)
    except DomainError as exc:
        return _refused(request, session, services, user, scope, exc)
    return _done(f"已确认巡访，记入时间银行 {visits.hours_text(entry.hours)} 小时")
