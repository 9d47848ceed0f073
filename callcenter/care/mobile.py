"""The visitors' phone pages (/v/, 巡访员): phone-first Jinja2 pages with the provider pages' look,
where community workers and volunteers sign in (a one-time SMS link, or phone + password: the
sign-in piece the provider pages use, callcenter/auth/phone_pages.py), see the open visit tasks of
their community (nearest deadline first), take one, check in at the door (time, and position when
the browser gives it: static/visit.js) and submit the structured record with an optional photo;
a volunteer sees their time-bank hours.

A visitor's session sees only the visitor's community (the area scope is applied as for
officials); a task of another community is 404, another visitor's task of the same community
can be read but not worked (403). Every page that shows an elder's details is audit-logged; ID
numbers are never shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from sqlmodel import select
from starlette.datastructures import FormData

from callcenter.areas import scope as areas_scope
from callcenter.areas.models import Area
from callcenter.audit import service as audit_service
from callcenter.auth import service as auth_service
from callcenter.auth.models import User
from callcenter.auth.phone_pages import PhonePages
from callcenter.care import visits
from callcenter.care.models import CareTask, RiskLevel, TaskSource, TaskStatus, TimeBankEntry
from callcenter.care.visit_models import VisitCheckIn
from callcenter.deps import DbSession, ServicesDep, client_ip, csrf_token_for
from callcenter.elders import models as elder_models
from callcenter.elders.models import Elder, ElderPhone, EmergencyContact
from callcenter.errors import Conflict, DomainError, FieldErrors, NotFound, PermissionDenied
from callcenter.inputs import Id
from callcenter.phones import try_parse_phone
from callcenter.timeutil import age_on, local_iso, today_in
from workorders import jobs, photos
from workorders import mobile as provider_pages
from workorders import service as orders_service
from workorders.api import enqueue_after_commit
from workorders.models import OrderStatus, WorkOrder

VISITOR_COOKIE = "cc_visitor"
# Our templates first; the provider pages' folder gives the shared base, login and link pages.
templates = Jinja2Templates(directory=[Path(__file__).parent / "templates", provider_pages.TEMPLATES_DIR])
templates.env.filters["hours"] = visits.hours_text
router = APIRouter(prefix="/v", include_in_schema=False)


def render(request: Request, name: str, context: dict, status_code: int = 200) -> HTMLResponse:
    context = {"csrf_token": csrf_token_for(request), "door": PAGES.labels} | context
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def _greeting(session, visitor: User) -> tuple[str, str]:
    community = session.get(Area, visitor.area_id) if visitor.area_id else None
    return visitor.display_name, f"{community.name if community else ''}巡访员"


PAGES = PhonePages(prefix="/v", cookie=VISITOR_COOKIE, door=auth_service.VISITOR_DOOR, render=render, throttle="v",
                   labels={"title": "12349 巡访", "login_heading": "巡访员登录",
                           "login_hint": "短信中的登录链接可直接登录；也可使用手机号和密码登录。", "enter": "进入巡访页面"},
                   greeting=_greeting)
PAGES.add_routes(router)


def current_visitor(request: Request, session: DbSession, services: ServicesDep) -> User:
    """The signed-in visitor; from here on the request's session sees only their community."""
    visitor = PAGES.current(request, session, services)
    areas_scope.apply(session, auth_service.scope_of(session=session, user=visitor))
    return visitor


Visitor = Annotated[User, Depends(current_visitor)]


def _short(at, tz) -> str:
    text = local_iso(at, tz) or ""
    return text[5:16].replace("T", " ")


def _missing(request: Request, visitor: User, exc: DomainError) -> HTMLResponse:
    status = 404 if isinstance(exc, NotFound) else 403 if isinstance(exc, PermissionDenied) else 409
    return render(request, "v/error.html", {"visitor": visitor, "message": exc.message}, status)


# ---- the list ------------------------------------------------------------------------------------

@router.get("/")
def tasks_page(request: Request, session: DbSession, services: ServicesDep, visitor: Visitor):
    tz = services.settings.tz
    today = today_in(tz)
    tasks = visits.open_visits(session=session, community_id=visitor.area_id)
    done = visits.my_recent_visits(session=session, user_id=visitor.id, limit=5)
    elders = {e.id: e for e in session.exec(_elders_of(tasks + done))} if tasks or done else {}
    names = {u.id: u.display_name for u in session.exec(_users_of(tasks))} if tasks else {}
    entries = {e.task_id: e for e in session.exec(_entries_of(done))} if done else {}
    if elders:  # names and addresses of the elders listed: one audit row per page shown
        audit_service.record(session=session, actor=visitor, action="visitor_list", detail={"elders": sorted(elders)},
                             ip=client_ip(request))
    rows = [{"id": t.id, "elder": elders[t.elder_id].name if t.elder_id in elders else "", "risk": t.risk_level,
             "risk_label": RiskLevel.label_of(t.risk_level), "address": elders[t.elder_id].address if t.elder_id in elders else "",
             "source": t.source, "source_label": TaskSource.label_of(t.source), "deadline": _short(t.deadline_at, tz),
             "overdue": t.overdue_days + max(0, (today - t.due_on).days), "mine": t.assigned_to == visitor.id,
             "taken_by": names.get(t.assigned_to) if t.assigned_to not in (None, visitor.id) else None} for t in tasks]
    recent = [{"id": t.id, "elder": elders[t.elder_id].name if t.elder_id in elders else "", "at": _short(t.closed_at, tz),
               "hours": entries[t.id].hours if t.id in entries else None} for t in done]
    community = session.get(Area, visitor.area_id)
    return render(request, "v/tasks.html", {
        "visitor": visitor, "community": community.name if community else "", "tasks": rows, "recent": recent,
        "mine": sum(1 for row in rows if row["mine"]), "volunteer": visitor.volunteer,
        "balance": visits.time_bank_balance(session=session, user_id=visitor.id) if visitor.volunteer else None})


def _elders_of(tasks: list[CareTask]):
    return select(Elder).where(Elder.id.in_({t.elder_id for t in tasks}))


def _users_of(tasks: list[CareTask]):
    return select(User).where(User.id.in_({t.assigned_to for t in tasks if t.assigned_to}))


def _entries_of(tasks: list[CareTask]):
    return select(TimeBankEntry).where(TimeBankEntry.task_id.in_([t.id for t in tasks]))


# ---- one task ------------------------------------------------------------------------------------

@router.get("/tasks/{task_id}")
def task_page(task_id: Id, request: Request, session: DbSession, services: ServicesDep, visitor: Visitor):
    try:
        task = visits.visit_or_raise(session=session, task_id=task_id, visitor=visitor)
    except NotFound as exc:
        return _missing(request, visitor, exc)
    return _detail(request, task, session, services, visitor)


def _detail(request, task: CareTask, session, services, visitor: User, *, error: str | None = None, form: dict | None = None,
            status_code: int = 200) -> HTMLResponse:
    """What the visitor needs at the door: who, where, whom to phone, what to look at and why; the
    record's form, or the record made. The view is audit-logged; the ID number is never shown."""
    from sqlmodel import select

    tz, area_code = services.settings.tz, services.settings.city_area_code
    elder = session.get(Elder, task.elder_id)
    audit_service.record(session=session, actor=visitor, action="visitor_view", elder_id=task.elder_id,
                         detail={"task": task.id}, ip=client_ip(request))
    phones = []
    for row in session.exec(select(ElderPhone).where(ElderPhone.elder_id == task.elder_id)
                            .order_by(ElderPhone.is_primary.desc(), ElderPhone.id)):
        phone = try_parse_phone(row.number, default_area_code=area_code)
        if phone:
            who = "本人" if row.relation == "self" else f"{elder_models.RELATIONS.get(row.relation, row.relation)}{row.owner_name}"
            phones.append({"e164": phone.e164, "display": phone.display, "who": who})
    contacts = []
    for row in session.exec(select(EmergencyContact).where(EmergencyContact.elder_id == task.elder_id)
                            .order_by(EmergencyContact.priority, EmergencyContact.id)):
        phone = try_parse_phone(row.phone, default_area_code=area_code)
        contacts.append({"name": row.name, "relation": elder_models.RELATIONS.get(row.relation, row.relation),
                         "e164": phone.e164 if phone else row.phone, "display": phone.display if phone else row.phone})
    arrived = session.get(VisitCheckIn, task.id)
    check = visits.check_of(session=session, task_id=task.id) if task.status == TaskStatus.DONE else None
    order = session.get(WorkOrder, check.work_order_id) if check and check.work_order_id else None
    entry = session.exec(select(TimeBankEntry).where(TimeBankEntry.task_id == task.id)).first() if check else None
    kinds = [kind for kind in orders_service.service_types(session=session) if kind.code != visits.EMERGENCY_SERVICE]
    return render(request, "v/task.html", {
        "visitor": visitor, "task": task, "elder": elder, "error": error, "form": form or {},
        "gender": elder_models.GENDERS.get(elder.gender or "", ""), "age": age_on(elder.birth_date, today_in(tz)),
        "living": elder_models.LIVING_SITUATIONS.get(elder.living_situation, elder.living_situation),
        "ability": elder_models.ABILITY_LEVELS.get(elder.ability_level, elder.ability_level),
        "risks": [elder_models.RISK_FLAGS.get(flag, flag) for flag in elder.risk_flags],
        "risk_label": RiskLevel.label_of(task.risk_level), "why": visits.why(session=session, task=task),
        "deadline": _short(task.deadline_at, tz), "phones": phones, "contacts": contacts,
        "status_label": TaskStatus.label_of(task.status), "open": task.status == TaskStatus.OPEN,
        "mine": task.assigned_to == visitor.id, "taken_by": None if task.assigned_to in (None, visitor.id) else
        visits.name_of(session=session, user_id=task.assigned_to),
        "arrived": {"at": _short(arrived.at, tz), "located": arrived.latitude is not None} if arrived else None,
        "check": check, "order": order, "order_status": OrderStatus.label_of(order.status) if order else "",
        "entry": entry, "topics": visits.TOPICS, "finding_labels": visits.FINDINGS, "actions": visits.ACTIONS,
        "service_types": kinds, "need_services": visits.NEED_SERVICES, "max_mb": services.settings.upload_max_bytes // (1024 * 1024)}, status_code)


def _act(request, task_id: int, session, services, visitor: User, action) -> HTMLResponse:
    """Run one step; on success back to the task (POST → redirect → GET); a refusal shows the task
    again with the reason (a stale page explains itself), or the not-found page."""
    try:
        task = visits.visit_or_raise(session=session, task_id=task_id, visitor=visitor)
    except NotFound as exc:
        return _missing(request, visitor, exc)
    try:
        action(task)
    except DomainError as exc:
        session.rollback()
        task = visits.visit_or_raise(session=session, task_id=task_id, visitor=visitor)
        status = 403 if isinstance(exc, PermissionDenied) else 409 if isinstance(exc, Conflict) else 422
        return _detail(request, task, session, services, visitor, error=_problem(exc), status_code=status)
    return RedirectResponse(f"/v/tasks/{task_id}", status_code=303)


def _problem(exc: DomainError) -> str:
    if isinstance(exc, FieldErrors):
        return "；".join(message for _, message in exc.errors)
    return exc.message


@router.post("/tasks/{task_id}/take")
def take(task_id: Id, request: Request, session: DbSession, services: ServicesDep, visitor: Visitor):
    return _act(request, task_id, session, services, visitor, lambda task: visits.take(session=session, task=task, visitor=visitor))


@router.post("/tasks/{task_id}/release")
def release(task_id: Id, request: Request, session: DbSession, services: ServicesDep, visitor: Visitor):
    response = _act(request, task_id, session, services, visitor,
                    lambda task: visits.release(session=session, task=task, visitor=visitor))
    return RedirectResponse("/v/", status_code=303) if response.status_code == 303 else response


def _number(raw: str, field: str, label: str) -> float | None:
    if not raw.strip():
        return None
    try:
        return float(raw)
    except ValueError:
        raise FieldErrors.single(field, f"{label}应为数字") from None


@router.post("/tasks/{task_id}/checkin")
def check_in(task_id: Id, request: Request, session: DbSession, services: ServicesDep, visitor: Visitor,
             latitude: Annotated[str, Form(max_length=32)] = "", longitude: Annotated[str, Form(max_length=32)] = "",
             accuracy: Annotated[str, Form(max_length=32)] = ""):
    """At the door: the time, and the position visit.js got from the browser (empty when refused)."""
    def arrive(task):
        visits.check_in(session=session, task=task, visitor=visitor, latitude=_number(latitude, "latitude", "纬度"),
                        longitude=_number(longitude, "longitude", "经度"), accuracy_m=_number(accuracy, "accuracy", "定位精度"))

    return _act(request, task_id, session, services, visitor, arrive)


@router.post("/tasks/{task_id}/record")
async def record(task_id: Id, request: Request, background: BackgroundTasks, services: ServicesDep,
                 photo: Annotated[UploadFile | None, File()] = None):
    """Async only to read the form and the upload without blocking; the database work runs in the
    thread pool (as the provider's completion)."""
    form = await request.form()
    data = await photo.read(services.settings.upload_max_bytes + 1) if photo is not None and photo.filename else None
    response, order_id = await run_in_threadpool(_record, request, task_id, services, form, data)
    if order_id is not None:  # a work order for a finding: routed once committed (the thread's session is)
        background.add_task(enqueue_after_commit, jobs.enqueue_route, services.redis, order_id)
    return response


def _visit_form(form: FormData) -> visits.VisitForm:
    answers = {key: str(form.get(f"answers.{key}") or "") for key in visits.TOPICS if form.get(f"answers.{key}")}
    return visits.VisitForm(answers=answers, note=str(form.get("note") or "")[:4000], action=str(form.get("action") or ""),
                            service_type=str(form.get("service_type") or "")[:32], self_paid=form.get("self_paid") == "1")


def _record(request, task_id, services, form: FormData, data: bytes | None) -> tuple[HTMLResponse, int | None]:
    with services.db.session_scope() as session:
        visitor = current_visitor(request, session, services)
        filled = _visit_form(form)
        made: dict = {}

        def finish(task):
            if data:
                photos.check(services.settings, data)  # before anything is recorded: a bad photo loses nothing typed
            check, order = visits.record_visit(session=session, task=task, visitor=visitor, form=filled, tz=services.settings.tz)
            if data:
                check.photo = photos.store(services.settings, kind="visits", owner_id=task.id, data=data)
                session.add(check)
            if order is not None and order.status == OrderStatus.NEW:
                made["order_id"] = order.id

        try:
            task = visits.visit_or_raise(session=session, task_id=task_id, visitor=visitor)
        except NotFound as exc:
            return _missing(request, visitor, exc), None
        try:
            finish(task)
        except DomainError as exc:
            session.rollback()
            task = visits.visit_or_raise(session=session, task_id=task_id, visitor=visitor)
            status = 403 if isinstance(exc, PermissionDenied) else 409 if isinstance(exc, Conflict) else 422
            values = {"answers": filled.answers, "note": filled.note, "action": filled.action,
                      "service_type": filled.service_type, "self_paid": filled.self_paid}
            return _detail(request, task, session, services, visitor, error=_problem(exc), form=values, status_code=status), None
        return RedirectResponse(f"/v/tasks/{task_id}", status_code=303), made.get("order_id")


@router.get("/tasks/{task_id}/photo")
def visit_photo(task_id: Id, request: Request, session: DbSession, services: ServicesDep, visitor: Visitor):
    try:
        task = visits.visit_or_raise(session=session, task_id=task_id, visitor=visitor)
    except NotFound as exc:
        return _missing(request, visitor, exc)
    check = visits.check_of(session=session, task_id=task.id)
    if check is None or not check.photo:
        return _missing(request, visitor, NotFound("该巡访记录没有照片"))
    return photos.response(services.settings, check.photo, kind="visits")
