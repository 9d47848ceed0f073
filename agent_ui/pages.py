"""Pages: login, elder search, elder profile. Routes parse, call one service, render."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from agent_ui import vocabulary
from callcenter.auth import service as auth_service
from callcenter.auth.api import sign_in, sign_out
from callcenter.auth.models import ROLES
from callcenter.calls import control
from callcenter.calls import presenter as calls_presenter
from callcenter.calls.models import DISPOSITIONS
from callcenter.calls import service as calls_service
from callcenter.deps import AgentUser, DbSession, ServicesDep, client_ip, csrf_token_for
from callcenter.elders import access
from callcenter.elders import service as elders_service
from callcenter.elders.models import RELATIONS
from callcenter.errors import Conflict, DomainError
from callcenter.timeutil import today_in
from callcenter.inputs import Id, Page
from workorders import jobs, subsidy
from workorders import presenter as orders_presenter
from workorders import service as orders_service
from workorders.api import enqueue_after_commit
from workorders.models import Urgency

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["ROLES"] = ROLES
templates.env.globals["VOCABULARY"] = vocabulary.for_pages()
router = APIRouter(include_in_schema=False)


def render(request: Request, name: str, context: dict, status_code: int = 200) -> HTMLResponse:
    context = {"csrf_token": csrf_token_for(request)} | context
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def render_error(request: Request, status_code: int, message: str) -> HTMLResponse:
    return render(request, "error.html", {"message": message, "status_code": status_code, "user": None}, status_code)


def _safe_next(target: str | None) -> str:
    """Only same-site paths: a login link must not bounce the agent to another site."""
    if not target or urlparse(target).netloc or not target.startswith("/") or target.startswith("//"):
        return "/console"
    return target


@router.get("/")
def home():
    return RedirectResponse("/console", status_code=303)


@router.get("/console")
def console_page(request: Request, services: ServicesDep, user: AgentUser):
    """The agent console; console.js loads the live state and follows the websocket."""
    return render(request, "console.html", {
        "user": user, "today": today_in(services.settings.tz).isoformat(), "wrapup_seconds": services.settings.wrapup_seconds,
        "pause_reasons": control.PAUSE_REASONS, "dispositions": DISPOSITIONS, "relations": RELATIONS, "urgencies": Urgency.labels(),
    })


@router.get("/login")
def login_page(request: Request, next: str = "/console"):
    return render(request, "login.html", {"next": _safe_next(next), "error": None, "username": "", "user": None})


@router.post("/login")
def login_submit(request: Request, session: DbSession, services: ServicesDep,
                 username: str = Form(""), password: str = Form(""), next: str = Form("/console")):
    response = RedirectResponse(_safe_next(next), status_code=303)
    try:
        user = sign_in(request=request, response=response, session=session, services=services, username=username, password=password)
    except DomainError as exc:
        page = render(request, "login.html", {"next": _safe_next(next), "error": exc.message, "username": username, "user": None},
                      429 if isinstance(exc, auth_service.TooManyAttempts) else 401)
        if isinstance(exc, auth_service.TooManyAttempts):
            page.headers["Retry-After"] = str(exc.retry_after)
        return page
    if auth_service.is_official(user) and response.headers["location"] == "/console":
        response.headers["location"] = "/supervisor/reports"  # area officials have no console: their figures
    return response


@router.post("/logout")
def logout_submit(request: Request, session: DbSession, services: ServicesDep):
    response = RedirectResponse("/login", status_code=303)
    sign_out(request=request, response=response, session=session, services=services)
    return response


@router.get("/elders")
def elders_page(request: Request, session: DbSession, services: ServicesDep, user: AgentUser, q: str = "", page: Page = 1):
    result = elders_service.search(session=session, q=q, sealer=services.sealer, page=max(page, 1), page_size=20)
    today = today_in(services.settings.tz)
    rows = [access.card(session=session, elder=elder, today=today) for elder in result.items]
    pages = max(1, (result.total + result.page_size - 1) // result.page_size)
    return render(request, "elders.html", {"user": user, "q": q, "rows": rows, "total": result.total,
                                          "capped": result.total_is_capped, "page": result.page, "pages": pages})


@router.get("/elders/{elder_id}")
def elder_page(elder_id: Id, request: Request, session: DbSession, services: ServicesDep, user: AgentUser, created: str | None = None):
    return render(request, "elder.html", _elder_context(elder_id, request, session, services, user) | {"created": created})


def _elder_context(elder_id: int, request: Request, session, services, user) -> dict:
    """The elder as the user may see them now (elders/access.py; a supervisor states `?reason=`),
    the view audit-logged; with the full profile, its calls and work orders."""
    elder = elders_service.get_or_raise(session=session, elder_id=elder_id)
    profile = access.show(session=session, access=services.elder_access, user=user, elder=elder, today=today_in(services.settings.tz),
                          sealer=services.sealer, via="page", ip=client_ip(request), reason=request.query_params.get("reason"))
    if profile["access"]["level"] != "full":
        return {"user": user, "elder": profile, "order_error": None, "created": None}
    tz = services.settings.tz
    rows, total = calls_service.search(session=session, tz=tz, elder_id=elder.id, page_size=20)
    calls = [calls_presenter.call_dict(row, tz, notes_visible=calls_service.handles(user=user, call=row)) for row in rows]
    return {"user": user, "elder": profile, "calls": calls, "calls_total": total, **_elder_orders(session, elder.id, tz),
            "order_error": None, "created": None}


def _elder_orders(session, elder_id: int, tz) -> dict:
    """The elder's work orders and subsidy draws, and what the order form offers."""
    names = {row.code: row.name for row in orders_service.service_types(session=session, active_only=False)}
    rows, total = orders_service.search(session=session, elder_id=elder_id, page_size=20)
    return {"orders": [orders_presenter.order_dict(row, tz, service_name=names.get(row.service_type, "")) for row in rows],
            "orders_total": total, "service_types": orders_service.service_types(session=session), "urgencies": Urgency.labels(),
            "ledger": [orders_presenter.ledger_dict(row, tz) for row in subsidy.ledger_of(session=session, elder_id=elder_id)[:10]]}


@router.post("/elders/{elder_id}/workorders")
def elder_order_submit(elder_id: Id, request: Request, background: BackgroundTasks, session: DbSession, services: ServicesDep,
                       user: AgentUser, service_type: Annotated[str, Form()] = "", urgency: Annotated[str, Form()] = "normal",
                       description: Annotated[str, Form(max_length=2000)] = "", self_paid: Annotated[bool, Form()] = False):
    """新建工单 from the elder's page; routing is kicked once the order is committed."""
    try:
        order = orders_service.create_order(session=session, user=user, tz=services.settings.tz, elder_id=elder_id,
                                            service_type=service_type, urgency=urgency, description=description, self_paid=self_paid)
    except DomainError as exc:
        session.rollback()
        context = _elder_context(elder_id, request, session, services, user) | {"order_error": exc.message}
        return render(request, "elder.html", context, status_code=409 if isinstance(exc, Conflict) else 422)
    background.add_task(enqueue_after_commit, jobs.enqueue_route, services.redis, order.id)
    return RedirectResponse(f"/elders/{elder_id}?created={order.number}#orders", status_code=303)


@router.get("/calls")
def calls_page(request: Request, session: DbSession, services: ServicesDep, user: AgentUser):
    """Today's calls, newest first; calls.js keeps the table current."""
    tz = services.settings.tz
    today = today_in(tz)
    rows, total = calls_service.search(session=session, tz=tz, date_from=today, date_to=today, page_size=100)
    calls = [calls_presenter.call_dict(row, tz, notes_visible=calls_service.handles(user=user, call=row)) for row in rows]
    return render(request, "calls.html", {"user": user, "calls": calls, "total": total, "today": today.isoformat()})
