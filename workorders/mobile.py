"""Provider mobile pages (/m/): phone-first Jinja2 pages where a provider's staff sign in (the
signed link in a dispatch SMS, or phone + password), see their orders by status, accept or
reject, check in on arrival and complete with notes, duration, the elder's confirmation code and
an optional photo.

A provider sees and touches only its own orders: every order route goes through `own_order`,
which answers 404 for another provider's order (guessing ids reveals nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from callcenter.audit import service as audit_service
from callcenter.auth.phone_pages import PhonePages
from callcenter.deps import DbSession, ServicesDep, client_ip, csrf_token_for
from callcenter.elders import service as elders_service
from callcenter.errors import Conflict, DomainError, NotFound
from callcenter.phones import try_parse_phone
from callcenter.timeutil import local_iso
from callcenter.inputs import Id
from workorders import jobs, photos
from workorders import service as orders_service
from workorders import staff as staff_service
from workorders.api import enqueue_after_commit
from workorders.models import MOBILE_TABS, OrderStatus, Provider, ProviderStaff, Urgency, WorkOrder

PROVIDER_COOKIE = "cc_provider"
TEMPLATES_DIR = Path(__file__).parent / "templates"  # the visitors' pages fall back to it for the shared ones
templates = Jinja2Templates(directory=TEMPLATES_DIR)
templates.env.globals["OrderStatus"] = OrderStatus
router = APIRouter(prefix="/m", include_in_schema=False)


def render(request: Request, name: str, context: dict, status_code: int = 200) -> HTMLResponse:
    context = {"csrf_token": csrf_token_for(request), "door": PAGES.labels} | context
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def _greeting(session, staff: ProviderStaff) -> tuple[str, str]:
    return staff.name, session.get(Provider, staff.provider_id).name


# Sign-in by phone and password or by the dispatch SMS's link: the routes are the piece the
# visitors' pages share (callcenter/auth/phone_pages.py).
PAGES = PhonePages(prefix="/m", cookie=PROVIDER_COOKIE, door=staff_service.DOOR, render=render, throttle="m",
                   labels={"title": "12349 服务商接单", "login_heading": "服务商登录",
                           "login_hint": "派单短信中的链接可直接登录；也可使用手机号和密码登录。", "enter": "进入接单页面"},
                   greeting=_greeting)
current_staff = PAGES.current
Staff = Annotated[ProviderStaff, Depends(current_staff)]


def own_order(order_id: Id, session: DbSession, staff: Staff) -> WorkOrder:
    """The order, if it is this provider's; 404 otherwise (never 403: that would confirm it exists)."""
    order = session.get(WorkOrder, order_id)
    if order is None or order.provider_id != staff.provider_id:
        raise NotFound("工单不存在，或已不再派给贵单位")
    return order


OwnOrder = Annotated[WorkOrder, Depends(own_order)]
PAGES.add_routes(router)


@router.get("/")
def orders_page(request: Request, session: DbSession, services: ServicesDep, staff: Staff, tab: str = "todo"):
    tab = tab if tab in {key for key, _, _ in MOBILE_TABS} else "todo"
    counts, rows = {}, []
    for key, _, statuses in MOBILE_TABS:
        found = orders_service.provider_orders(session=session, provider_id=staff.provider_id, statuses=statuses)
        counts[key] = len(found)
        if key == tab:
            rows = found
    names = {row.code: row.name for row in orders_service.service_types(session=session, active_only=False)}
    return render(request, "m/orders.html", {
        "staff": staff, "provider": session.get(Provider, staff.provider_id), "tabs": MOBILE_TABS, "tab": tab, "counts": counts,
        "orders": [_row(order, names, services.settings.tz) for order in rows]})


def _row(order: WorkOrder, names: dict, tz) -> dict:
    return {"id": order.id, "number": order.number, "service": names.get(order.service_type, order.service_type),
            "urgency": order.urgency, "urgency_label": Urgency.label_of(order.urgency), "status": OrderStatus.label_of(order.status),
            "address": order.address, "accept_due": _short(order.accept_due, tz), "arrive_due": _short(order.arrive_due, tz)}


def _short(at, tz) -> str:
    text = local_iso(at, tz) or ""
    return text[5:16].replace("T", " ")


@router.get("/orders/{order_id}")
def order_page(request: Request, order: OwnOrder, session: DbSession, services: ServicesDep, staff: Staff):
    return _detail(request, order, session, services, staff)


def _detail(request, order, session, services, staff, *, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    """The order as the provider needs it to do the job: what, where, when, whom to phone. The
    elder's health data and ID number stay at the hotline; the view is audit-logged."""
    tz = services.settings.tz
    elder = elders_service.get_or_raise(session=session, elder_id=order.elder_id)
    phones = [try_parse_phone(p.number, default_area_code=services.settings.city_area_code)
              for p in elders_service.phones_of(session=session, elder_id=elder.id)]
    provider = session.get(Provider, staff.provider_id)
    audit_service.record(session=session, actor=None, actor_name=f"服务商:{provider.name}/{staff.name}", action="provider_view",
                         elder_id=elder.id, detail={"order": order.number}, ip=client_ip(request))
    kind = orders_service.service_type_or_raise(session=session, code=order.service_type)
    events = orders_service.events_of(session=session, order_id=order.id)
    return render(request, "m/order.html", {
        "staff": staff, "order": order, "kind": kind, "status": OrderStatus.label_of(order.status),
        "urgency": Urgency.label_of(order.urgency), "elder": elder, "phones": [p for p in phones if p],
        "times": {k: _short(getattr(order, k), tz) for k in ("accept_due", "arrive_due", "complete_due", "window_start", "window_end")},
        "events": [(_short(e.at, tz), e.actor, OrderStatus.label_of(e.to_status), e.note) for e in events],
        "error": error, "max_mb": services.settings.upload_max_bytes // (1024 * 1024)}, status_code)


def _act(request, order, session, services, staff, action) -> HTMLResponse:
    """Run one provider action; on success back to the order (POST → redirect → GET), on a
    refusal the order page again with the reason, so a stale page explains itself."""
    try:
        action()
    except DomainError as exc:
        session.rollback()
        session.refresh(order)
        status = 409 if isinstance(exc, Conflict) else 422
        return _detail(request, order, session, services, staff, error=exc.message, status_code=status)
    return RedirectResponse(f"/m/orders/{order.id}", status_code=303)


@router.post("/orders/{order_id}/accept")
def accept(request: Request, order: OwnOrder, session: DbSession, services: ServicesDep, staff: Staff):
    return _act(request, order, session, services, staff, lambda: orders_service.accept(session=session, order=order, staff=staff))


@router.post("/orders/{order_id}/reject")
def reject(request: Request, order: OwnOrder, background: BackgroundTasks, session: DbSession, services: ServicesDep, staff: Staff,
           reason: Annotated[str, Form(max_length=500)] = ""):
    response = _act(request, order, session, services, staff,
                    lambda: orders_service.reject(session=session, order=order, staff=staff, reason=reason))
    if order.status == OrderStatus.REJECTED:  # routing offers it to the next provider once this is committed
        background.add_task(enqueue_after_commit, jobs.enqueue_route, services.redis, order.id)
        return RedirectResponse("/m/", status_code=303)
    return response


@router.post("/orders/{order_id}/checkin")
def check_in(request: Request, order: OwnOrder, session: DbSession, services: ServicesDep, staff: Staff):
    return _act(request, order, session, services, staff, lambda: orders_service.check_in(session=session, order=order, staff=staff))


@router.post("/orders/{order_id}/complete")
async def complete(request: Request, order_id: Id, services: ServicesDep, code: Annotated[str, Form(max_length=12)] = "",
                   notes: Annotated[str, Form(max_length=2000)] = "", minutes: Annotated[str, Form(max_length=6)] = "",
                   photo: Annotated[UploadFile | None, File()] = None):
    """Async only to read the upload without blocking; the database work runs in the thread pool."""
    data = await photo.read(services.settings.upload_max_bytes + 1) if photo is not None and photo.filename else None
    return await run_in_threadpool(_complete, request, order_id, services, code, notes, minutes, data)


def _complete(request, order_id, services, code, notes, minutes, data) -> HTMLResponse:
    with services.db.session_scope() as session:
        staff = current_staff(request, session, services)
        order = own_order(order_id, session, staff)

        def finish():
            count = int(minutes) if minutes.strip().isdigit() else 0
            if data:
                photos.check(services.settings, data)
            if order.status == OrderStatus.IN_SERVICE:
                try:
                    orders_service.check_confirm_code(order=order, code=code)
                except orders_service.WrongConfirmCode:
                    with services.db.session_scope() as counting:  # its own transaction: the refusal's rollback keeps it
                        orders_service.count_code_failure(session=counting, order_id=order.id)
                    raise
            name = photos.save(services.settings, order_id=order.id, data=data) if data else None
            orders_service.complete(session=session, order=order, staff=staff, code=code, notes=notes, minutes=count, photo=name)

        return _act(request, order, session, services, staff, finish)


@router.get("/orders/{order_id}/photo")
def order_photo(order: OwnOrder, services: ServicesDep):
    if not order.photo:
        raise NotFound("该工单没有上传照片")
    return photos.response(services.settings, order.photo)
