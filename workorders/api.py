"""HTTP API for work orders: /api/service-types, /api/providers, /api/workorders …

Creating an order enqueues its routing (workorders/jobs.py). The provider pages, callbacks and
subsidies come next (#5); the transitions here are the ones a hotline person makes: create,
cancel, escalate.
"""

from __future__ import annotations

import logging
from datetime import date, datetime

from fastapi import APIRouter, BackgroundTasks, Query
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from callcenter.deps import AgentUser, DbSession, ServicesDep, SupervisorUser
from workorders import jobs, presenter
from workorders import service as orders_service

router = APIRouter(tags=["workorders"])
log = logging.getLogger(__name__)


@router.get("/api/service-types")
def list_service_types(session: DbSession, user: AgentUser):
    return [presenter.service_type_dict(row) for row in orders_service.service_types(session=session)]


class ProviderIn(BaseModel):
    name: str | None = Field(default=None, max_length=100)
    contact_name: str | None = Field(default=None, max_length=50)
    phone: str | None = None
    service_types: list[str] | None = None
    coverage: list[int] | None = None
    daily_capacity: int | None = None
    contract_start: date | None = None
    contract_end: date | None = None
    status: str | None = None


@router.get("/api/providers")
def list_providers(session: DbSession, user: SupervisorUser):
    return [presenter.provider_dict(row) for row in orders_service.list_providers(session=session)]


@router.post("/api/providers", status_code=201)
def create_provider(body: ProviderIn, session: DbSession, services: ServicesDep, user: SupervisorUser):
    row = orders_service.save_provider(session=session, fields=body.model_dump(exclude_unset=True),
                                       area_code=services.settings.city_area_code)
    return presenter.provider_dict(row)


@router.patch("/api/providers/{provider_id}")
def update_provider(provider_id: int, body: ProviderIn, session: DbSession, services: ServicesDep, user: SupervisorUser):
    row = orders_service.save_provider(session=session, fields=body.model_dump(exclude_unset=True),
                                       area_code=services.settings.city_area_code, provider_id=provider_id)
    return presenter.provider_dict(row)


class OrderIn(BaseModel):
    service_type: str
    elder_id: int | None = None
    call_id: int | None = None
    urgency: str = "normal"
    description: str = Field(default="", max_length=2000)
    window_start: datetime | None = None
    window_end: datetime | None = None


def _service_names(session) -> dict[str, str]:
    return {row.code: row.name for row in orders_service.service_types(session=session, active_only=False)}


def _order(session, services, order, *, events: bool = False, names: dict[str, str] | None = None) -> dict:
    names = names if names is not None else _service_names(session)
    history = orders_service.events_of(session=session, order_id=order.id) if events else None
    return presenter.order_dict(order, services.settings.tz, service_name=names.get(order.service_type, ""), events=history)


@router.post("/api/workorders", status_code=201)
def create_order(body: OrderIn, background: BackgroundTasks, session: DbSession, services: ServicesDep, user: AgentUser):
    """From a call (`call_id`: the elder of the call) or for an elder (`elder_id`). Routing is
    enqueued after the order is committed (background tasks run after the response)."""
    order = orders_service.create_order(session=session, user=user, tz=services.settings.tz, **body.model_dump())
    background.add_task(_enqueue_route, services.redis, order.id)
    return _order(session, services, order, events=True)


def _enqueue_route(connection, order_id: int) -> None:
    try:
        jobs.enqueue_route(connection, order_id)
    except (RedisError, OSError) as exc:  # the sweeper routes it once Redis is back
        log.warning("could not enqueue routing of order %s (%s); the sweeper will", order_id, type(exc).__name__)


@router.get("/api/workorders")
def list_orders(session: DbSession, services: ServicesDep, user: AgentUser, status: str | None = None,
                elder_id: int | None = None, open: bool = False, page: int = Query(1, ge=1),
                page_size: int = Query(50, ge=1, le=200)):
    rows, total = orders_service.search(session=session, status=status, elder_id=elder_id, open_only=open, page=page,
                                        page_size=page_size)
    names = _service_names(session)  # once per page, not once per order
    return {"items": [_order(session, services, row, names=names) for row in rows], "total": total, "page": page,
            "page_size": page_size}


@router.get("/api/workorders/{order_id}")
def get_order(order_id: int, session: DbSession, services: ServicesDep, user: AgentUser):
    return _order(session, services, orders_service.get_or_raise(session=session, order_id=order_id), events=True)


class NoteIn(BaseModel):
    note: str = Field(min_length=1, max_length=1000)


def _move(order_id: int, to: str, body: NoteIn, session, services, user) -> dict:
    order = orders_service.get_or_raise(session=session, order_id=order_id)
    orders_service.transition(session=session, order=order, to=to, actor=user.display_name or user.username,
                              actor_user_id=user.id, note=body.note)
    return _order(session, services, order, events=True)


@router.post("/api/workorders/{order_id}/cancel")
def cancel_order(order_id: int, body: NoteIn, session: DbSession, services: ServicesDep, user: AgentUser):
    """Cancel with a reason (the elder no longer needs it, a duplicate …)."""
    return _move(order_id, "cancelled", body, session, services, user)


@router.post("/api/workorders/{order_id}/escalate")
def escalate_order(order_id: int, body: NoteIn, session: DbSession, services: ServicesDep, user: AgentUser):
    """Hand to the supervisors (督办) with a reason."""
    return _move(order_id, "escalated", body, session, services, user)


@router.get("/api/workorders-alerts")
def alerts(session: DbSession, services: ServicesDep, user: SupervisorUser):
    """What needs a supervisor now: escalated orders, and routing jobs that used up their retries
    (RQ's failed registry) — a failure is never silent."""
    rows, total = orders_service.search(session=session, status="escalated", page_size=200)
    names = _service_names(session)
    return {"escalated": [_order(session, services, row, names=names) for row in rows], "escalated_total": total,
            "failed_jobs": jobs.failed_jobs(services.redis)}
