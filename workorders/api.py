"""HTTP API for work orders: /api/service-types, /api/providers (and their staff), /api/workorders,
/api/callbacks, /api/subsidy-ledger, /api/sms-outbox.

Creating an order enqueues its routing (workorders/jobs.py). The transitions here are the ones
hotline people make: create, cancel, escalate, the callback (agents); assign, close an escalated
order, approve a subsidy overdraw (supervisors). Providers act on their pages (workorders/mobile.py).
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Query, Request
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from callcenter import reporting
from contextlib import nullcontext

from callcenter.areas import scope as areas_scope
from callcenter.audit import service as audit_service
from callcenter.calls.api import readable_call
from callcenter.deps import (AgentUser, CitySupervisorUser, CurrentScope, DbSession, OverseerUser, ReaderUser, ServicesDep,
                             SupervisorUser, client_ip, download)
from callcenter.errors import FieldErrors, NotFound
from callcenter.notify import service as notify_service
from callcenter.inputs import Id, Page, ReportDate
from workorders import jobs, photos, presenter, subsidy
from workorders import service as orders_service
from workorders import staff as staff_service
from workorders import stats as workorder_stats_service
from workorders.models import OrderStatus

router = APIRouter(tags=["workorders"])
log = logging.getLogger(__name__)


@router.get("/api/service-types")
def list_service_types(session: DbSession, user: ReaderUser):
    return [presenter.service_type_dict(row) for row in orders_service.service_types(session=session)]


class ServiceTypeUpdate(BaseModel):
    name: str | None = Field(default=None, max_length=40)
    accept_minutes: int | None = None  # bounds checked by the service (one rule for this API and the page)
    arrive_minutes: int | None = None
    complete_minutes: int | None = None
    government_purchased: bool | None = None
    unit_cost: Decimal | None = None
    active: bool | None = None


@router.patch("/api/service-types/{code}")
def update_service_type(code: str, body: ServiceTypeUpdate, session: DbSession, user: CitySupervisorUser):
    """SLA minutes, cost, government purchase, active; orders already made keep their deadlines."""
    row = orders_service.update_service_type(session=session, code=code, fields=body.model_dump(exclude_unset=True))
    return presenter.service_type_dict(row)


class ProviderIn(BaseModel):
    name: str | None = Field(default=None, max_length=100)
    contact_name: str | None = Field(default=None, max_length=50)
    phone: str | None = Field(default=None, max_length=40)
    service_types: list[Annotated[str, Field(max_length=32)]] | None = Field(default=None, max_length=50)
    coverage: list[Id] | None = Field(default=None, max_length=500)
    daily_capacity: int | None = Field(default=None, le=100_000)
    contract_start: date | None = None
    contract_end: date | None = None
    status: str | None = Field(default=None, max_length=16)
    status_reason: str | None = Field(default=None, max_length=200)


@router.get("/api/providers")
def list_providers(session: DbSession, user: OverseerUser):
    """The providers serving the user's area (all, for the city)."""
    return [presenter.provider_dict(row) for row in orders_service.list_providers(session=session)]


@router.post("/api/providers", status_code=201)
def create_provider(body: ProviderIn, session: DbSession, services: ServicesDep, user: CitySupervisorUser):
    """Contracts are the city's: signed by a city supervisor or admin."""
    row = orders_service.save_provider(session=session, fields=body.model_dump(exclude_unset=True),
                                       area_code=services.settings.city_area_code)
    return presenter.provider_dict(row)


@router.patch("/api/providers/{provider_id}")
def update_provider(provider_id: Id, body: ProviderIn, session: DbSession, services: ServicesDep, user: SupervisorUser):
    row = orders_service.save_provider(session=session, fields=body.model_dump(exclude_unset=True),
                                       area_code=services.settings.city_area_code, provider_id=provider_id)
    return presenter.provider_dict(row)


class OrderIn(BaseModel):
    service_type: str
    elder_id: Id | None = None
    call_id: Id | None = None
    urgency: str = "normal"
    description: str = Field(default="", max_length=2000)
    window_start: datetime | None = None
    window_end: datetime | None = None
    self_paid: bool = False
    approve_overdraw: bool = Field(default=False, description="supervisors: let the subsidy go below zero")


def _service_names(session) -> dict[str, str]:
    return {row.code: row.name for row in orders_service.service_types(session=session, active_only=False)}


def _order(session, services, order, *, events: bool = False, names: dict[str, str] | None = None) -> dict:
    names = names if names is not None else _service_names(session)
    history = orders_service.events_of(session=session, order_id=order.id) if events else None
    return presenter.order_dict(order, services.settings.tz, service_name=names.get(order.service_type, ""), events=history)


@router.post("/api/workorders", status_code=201)
def create_order(body: OrderIn, background: BackgroundTasks, session: DbSession, services: ServicesDep, user: AgentUser):
    """From a call (`call_id`: the elder of the call) or for an elder (`elder_id`). Routing is
    enqueued after the order is committed (background tasks run after the response). From one of
    the agent's own calls the caller's elder may live anywhere; otherwise the elder must be in scope."""
    if body.call_id is not None:
        readable_call(body.call_id, session, user)
    with areas_scope.city_wide(session) if body.call_id is not None else nullcontext():
        order = orders_service.create_order(session=session, user=user, tz=services.settings.tz, **body.model_dump())
    background.add_task(_enqueue_route, services.redis, order.id)
    return _order(session, services, order, events=True)


def _enqueue_route(connection, order_id: int) -> None:
    enqueue_after_commit(jobs.enqueue_route, connection, order_id)


def enqueue_after_commit(enqueue, connection, order_id: int, *args) -> None:
    """Run as a background task, after the order is committed. With Redis down nothing is lost:
    the sweeper routes orders left waiting, and a lost deadline leaves the order on the
    supervisors' overdue list."""
    try:
        enqueue(connection, order_id, *args)
    except (RedisError, OSError) as exc:
        log.warning("could not enqueue %s for order %s (%s); the sweeper will", enqueue.__name__, order_id, type(exc).__name__)


@router.get("/api/workorders")
def list_orders(session: DbSession, services: ServicesDep, user: ReaderUser, status: str | None = None,
                elder_id: Id | None = None, open: bool = False, page: Page = 1,
                page_size: int = Query(50, ge=1, le=200)):
    rows, total = orders_service.search(session=session, status=status, elder_id=elder_id, open_only=open, page=page,
                                        page_size=page_size)
    names = _service_names(session)  # once per page, not once per order
    return {"items": [_order(session, services, row, names=names) for row in rows], "total": total, "page": page,
            "page_size": page_size}


@router.get("/api/workorders/{order_id}")
def get_order(order_id: Id, session: DbSession, services: ServicesDep, user: ReaderUser):
    return _order(session, services, orders_service.get_or_raise(session=session, order_id=order_id), events=True)


class NoteIn(BaseModel):
    note: str = Field(min_length=1, max_length=1000)


def _move(order_id: int, to: str, body: NoteIn, session, services, user) -> dict:
    order = orders_service.get_or_raise(session=session, order_id=order_id)
    orders_service.transition(session=session, order=order, to=to, actor=user.display_name or user.username,
                              actor_user_id=user.id, note=body.note)
    return _order(session, services, order, events=True)


class ConfirmIn(BaseModel):
    description: str | None = Field(default=None, max_length=2000)


@router.post("/api/workorders/{order_id}/confirm")
def confirm_draft(order_id: Id, body: ConfirmIn, background: BackgroundTasks, session: DbSession, services: ServicesDep,
                  user: AgentUser):
    """Confirm the IVR's emergency draft (待确认 → 待派单): it is routed from now. A false alarm is
    cancelled instead (`/cancel` with the reason)."""
    order = orders_service.get_or_raise(session=session, order_id=order_id)
    orders_service.confirm_draft(session=session, order=order, user=user, description=body.description)
    background.add_task(_enqueue_route, services.redis, order.id)
    return _order(session, services, order, events=True)


@router.post("/api/workorders/{order_id}/cancel")
def cancel_order(order_id: Id, body: NoteIn, session: DbSession, services: ServicesDep, user: AgentUser):
    """Cancel with a reason (the elder no longer needs it, a duplicate …)."""
    return _move(order_id, OrderStatus.CANCELLED, body, session, services, user)


@router.post("/api/workorders/{order_id}/escalate")
def escalate_order(order_id: Id, body: NoteIn, session: DbSession, services: ServicesDep, user: AgentUser):
    """Hand to the supervisors (督办) with a reason."""
    return _move(order_id, OrderStatus.ESCALATED, body, session, services, user)


@router.get("/api/workorders-alerts")
def alerts(session: DbSession, services: ServicesDep, user: SupervisorUser):
    """What needs a supervisor now: escalated orders, and routing jobs that used up their retries
    (RQ's failed registry) — a failure is never silent."""
    rows, total = orders_service.search(session=session, status=OrderStatus.ESCALATED, page_size=200)
    names = _service_names(session)
    return {"escalated": [_order(session, services, row, names=names) for row in rows], "escalated_total": total,
            "failed_jobs": jobs.failed_jobs(services.redis)}


@router.get("/api/workorders/{order_id}/photo")
def order_photo(order_id: Id, session: DbSession, services: ServicesDep, user: ReaderUser):
    order = orders_service.get_or_raise(session=session, order_id=order_id)
    if not order.photo:
        raise NotFound("该工单没有上传照片")
    return photos.response(services.settings, order.photo)


class ApproveIn(BaseModel):
    note: str = Field(default="", max_length=200)


@router.post("/api/workorders/{order_id}/approve-overdraw")
def approve_overdraw(order_id: Id, body: ApproveIn, request: Request, session: DbSession, services: ServicesDep, user: SupervisorUser):
    """Let this order's completion draw the subsidy below zero (the elder's need comes first)."""
    order = orders_service.get_or_raise(session=session, order_id=order_id)
    subsidy.approve_overdraw(session=session, order=order, supervisor=user)
    audit_service.record(session=session, actor=user, action="subsidy_overdraw", elder_id=order.elder_id,
                         detail={"order": order.number, "note": body.note}, ip=client_ip(request))
    return _order(session, services, order, events=True)


class AssignIn(BaseModel):
    provider_id: Id


@router.post("/api/workorders/{order_id}/assign")
def assign_order(order_id: Id, body: AssignIn, background: BackgroundTasks, session: DbSession, services: ServicesDep,
                 user: SupervisorUser):
    """Send an escalated order to a provider the supervisor picks (the SMS and the acceptance
    deadline as for routing)."""
    order = orders_service.get_or_raise(session=session, order_id=order_id)
    deadline = orders_service.assign(session=session, order=order, provider_id=body.provider_id, user=user, tz=services.settings.tz,
                                     login_link=jobs.login_link(services.settings))
    background.add_task(enqueue_after_commit, jobs.schedule_deadline, services.redis, *deadline)
    return _order(session, services, order, events=True)


@router.post("/api/workorders/{order_id}/close")
def close_order(order_id: Id, body: NoteIn, session: DbSession, services: ServicesDep, user: SupervisorUser):
    """Close an escalated order once it is handled (a complaint answered, the service redone)."""
    order = orders_service.get_or_raise(session=session, order_id=order_id)
    orders_service.close_escalated(session=session, order=order, user=user, note=body.note)
    return _order(session, services, order, events=True)


# --- callbacks (回访) -------------------------------------------------------------------------------

@router.get("/api/callbacks")
def callbacks(session: DbSession, services: ServicesDep, user: AgentUser):
    """Completed orders waiting for the elder's callback, with who to call: the hotline's work list
    (the elders' numbers in full), not the area officials' (they read the orders themselves)."""
    rows = orders_service.callbacks_due(session=session)
    names = _service_names(session)
    return {"items": [_order(session, services, row, names=names) | orders_service.callback_contact(session=session, order=row)
                      for row in rows]}


class CallbackIn(BaseModel):
    satisfaction: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=1000)
    complaint: bool = False


@router.post("/api/workorders/{order_id}/callback")
def record_callback(order_id: Id, body: CallbackIn, session: DbSession, services: ServicesDep, user: AgentUser):
    order = orders_service.get_or_raise(session=session, order_id=order_id)
    orders_service.record_callback(session=session, order=order, user=user, **body.model_dump())
    return _order(session, services, order, events=True)


# --- provider staff, subsidy ledger, SMS outbox (supervisors) ---------------------------------------

class StaffIn(BaseModel):
    name: str = Field(max_length=50)
    phone: str = Field(max_length=40)
    password: str | None = Field(default=None, max_length=128)


class StaffChange(BaseModel):
    password: str | None = Field(default=None, max_length=128)
    active: bool | None = None


@router.get("/api/providers/{provider_id}/staff")
def list_staff(provider_id: Id, session: DbSession, user: SupervisorUser):
    return [presenter.staff_dict(row) for row in staff_service.staff_of(session=session, provider_id=provider_id)]


@router.post("/api/providers/{provider_id}/staff", status_code=201)
def create_staff(provider_id: Id, body: StaffIn, session: DbSession, services: ServicesDep, user: SupervisorUser):
    row = staff_service.create_staff(session=session, provider_id=provider_id, area_code=services.settings.city_area_code,
                                     **body.model_dump())
    return presenter.staff_dict(row)


@router.patch("/api/provider-staff/{staff_id}")
def update_staff(staff_id: Id, body: StaffChange, session: DbSession, user: SupervisorUser):
    return presenter.staff_dict(staff_service.update_staff(session=session, staff_id=staff_id, **body.model_dump()))


@router.get("/api/subsidy-ledger")
def subsidy_ledger(elder_id: Id, session: DbSession, services: ServicesDep, user: ReaderUser):
    return [presenter.ledger_dict(row, services.settings.tz) for row in subsidy.ledger_of(session=session, elder_id=elder_id)]


class AdjustIn(BaseModel):
    elder_id: Id
    amount: Decimal = Field(max_digits=8, decimal_places=2, description="元: positive grants, negative corrects")
    note: str = Field(min_length=1, max_length=150, description="why (文件号, 更正原因)")


@router.post("/api/subsidy-ledger", status_code=201)
def adjust_subsidy(body: AdjustIn, request: Request, session: DbSession, services: ServicesDep, user: SupervisorUser):
    """A supervisor grants or corrects an elder's subsidy: a ledger row and an audit entry with
    the old and new balance. (A profile edit cannot touch the balance.)"""
    if body.amount == 0:
        raise FieldErrors.single("amount", "调整金额不能为 0")
    before, entry = subsidy.adjust(session=session, elder_id=body.elder_id, amount=body.amount, note=body.note)
    audit_service.record(session=session, actor=user, action="subsidy_adjust", elder_id=body.elder_id,
                         detail={"note": body.note, "changes": {"subsidy_balance": {"old": str(before), "new": str(entry.balance_after)}}},
                         ip=client_ip(request))
    return presenter.ledger_dict(entry, services.settings.tz)


@router.get("/api/sms-outbox")
def sms_outbox(session: DbSession, services: ServicesDep, user: SupervisorUser, order_id: Id | None = None,
               page: Page = 1, page_size: int = Query(50, ge=1, le=200)):
    """The outbox: every notification, newest first, with where its sending stands."""
    rows = notify_service.outbox(session=session, order_id=order_id, page=page, page_size=page_size)
    return [presenter.sms_dict(row, services.settings.tz) for row in rows]


@router.get("/api/stats/workorders")
def workorder_stats(session: DbSession, services: ServicesDep, user: OverseerUser, scope: CurrentScope,
                    date_from: ReportDate | None = Query(None, alias="from"), date_to: ReportDate | None = Query(None, alias="to"),
                    district: Id | None = None):
    """Work-order KPIs of a range of local days (default today): completion, on-time, SLA,
    satisfaction, complaints, escalations, per type / provider / status; subsidy spent.
    `district` (an area id) keeps the orders of elders living there; a scoped user's report is of
    its own area (or an area within it)."""
    date_from, date_to = reporting.resolve_range(date_from, date_to, tz=services.settings.tz)
    return workorder_stats_service.report(session=session, tz=services.settings.tz, date_from=date_from, date_to=date_to,
                                          district_id=scope.narrow(district))


@router.get("/api/stats/workorders/export")
def export_workorder_stats(session: DbSession, services: ServicesDep, user: OverseerUser, scope: CurrentScope,
                           date_from: ReportDate | None = Query(None, alias="from"), date_to: ReportDate | None = Query(None, alias="to"),
                           district: Id | None = None,
                           table: Literal["total", "by_type", "by_provider", "subsidy_by_type", "subsidy_by_street"] = "by_type",
                           format: Literal["csv", "xlsx"] = "csv"):
    """One table of the work-order report as CSV or XLSX, with Chinese headers."""
    report = workorder_stats(session, services, user, scope, date_from, date_to, district)
    rows, title = workorder_stats_service.order_table(report, table)
    return download(rows, format=format, title=title, name=f"workorders-{table}-{report['from']}-{report['to']}")
