"""HTTP API of the visitors (巡访员) for those who manage them: supervisors and admins, street
officials and community staff, each within its area (the visitors' own pages are care/mobile.py).

GET   /api/care/visitors                      the visitors of my area, with their time-bank hours
POST  /api/care/visitors                      a new visitor of a community (志愿者 or 社区工作人员)
PATCH /api/care/visitors/{id}                 deactivate or reactivate, set a password, volunteer or staff
POST  /api/care/visitors/{id}/login-link      send the visitor a one-time login link by SMS
GET   /api/care/visits                        visits made by visitors (`unconfirmed`: volunteers' still to confirm)
POST  /api/care/visits/{task_id}/confirm      confirm a volunteer's visit: its hours go to the time bank, once
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends
from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from sqlmodel import select

from callcenter.areas.models import Area
from callcenter.auth.models import User
from callcenter.care import visits
from callcenter.deps import CurrentScope, CurrentUser, DbSession, ServicesDep
from callcenter.inputs import Id
from callcenter.notify import jobs as notify_jobs
from callcenter.timeutil import local_iso

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/care", tags=["care"])


def visitor_manager(user: CurrentUser) -> User:
    visits.check_may_manage(user)
    return user


ManagerUser = Annotated[User, Depends(visitor_manager)]


def visitor_dict(user: User, community: str, hours: Decimal | None) -> dict:
    return {"id": user.id, "name": user.display_name, "phone": user.phone, "community_id": user.area_id, "community": community,
            "volunteer": user.volunteer, "kind_label": visits.VISITOR_KINDS[user.volunteer], "active": user.active,
            "has_password": bool(user.password_hash), "hours": visits.hours_text(hours)}


def _communities(session, ids) -> dict[int, str]:
    ids = {i for i in ids if i}
    return {area.id: area.name for area in session.exec(select(Area).where(Area.id.in_(ids)))} if ids else {}


class VisitorIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    phone: str = Field(max_length=40)
    community_id: Id
    volunteer: bool = False
    password: str | None = Field(default=None, max_length=128, description="none: the visitor signs in by SMS links")


class VisitorChange(BaseModel):
    active: bool | None = None
    password: str | None = Field(default=None, min_length=1, max_length=128)
    volunteer: bool | None = None


@router.get("/visitors")
def list_visitors(session: DbSession, user: ManagerUser, scope: CurrentScope):
    people = visits.visitors_within(session=session, scope=scope)
    names = _communities(session, [p.area_id for p in people])
    hours = visits.balances(session=session, user_ids=[p.id for p in people])
    return {"visitors": [visitor_dict(p, names.get(p.area_id, ""), hours.get(p.id)) for p in people]}


@router.post("/visitors", status_code=201)
def create_visitor(body: VisitorIn, session: DbSession, services: ServicesDep, user: ManagerUser, scope: CurrentScope):
    created = visits.create_visitor(session=session, name=body.name, phone=body.phone, community_id=body.community_id,
                                    volunteer=body.volunteer, password=body.password or None, scope=scope,
                                    area_code=services.settings.city_area_code)
    return visitor_dict(created, _communities(session, [created.area_id]).get(created.area_id, ""), None)


@router.patch("/visitors/{visitor_id}")
def change_visitor(visitor_id: Id, body: VisitorChange, session: DbSession, user: ManagerUser, scope: CurrentScope):
    visitor = visits.visitor_within_or_raise(session=session, user_id=visitor_id, scope=scope)
    visits.update_visitor(session=session, visitor=visitor, active=body.active, password=body.password, volunteer=body.volunteer)
    return visitor_dict(visitor, _communities(session, [visitor.area_id]).get(visitor.area_id, ""),
                        visits.time_bank_balance(session=session, user_id=visitor.id))


def kick_sender(connection) -> None:
    """After the commit: the notify worker sends the SMS now (the sweeper would, later, anyway)."""
    try:
        notify_jobs.kick(connection)
    except (RedisError, OSError) as exc:
        log.warning("could not kick the notification sender (%s); its sweeper will send", type(exc).__name__)


@router.post("/visitors/{visitor_id}/login-link")
def send_login_link(visitor_id: Id, background: BackgroundTasks, session: DbSession, services: ServicesDep, user: ManagerUser,
                    scope: CurrentScope):
    """An SMS to the visitor's phone with a one-time link (PROVIDER_LINK_MINUTES): never shown
    here, nor in the outbox (its token is hidden there)."""
    visitor = visits.visitor_within_or_raise(session=session, user_id=visitor_id, scope=scope)
    minutes = services.settings.provider_link_minutes
    masked = visits.send_login_link(session=session, visitor=visitor, public_url=services.settings.public_url, minutes=minutes)
    background.add_task(kick_sender, services.redis)
    return {"ok": True, "sent_to": masked, "minutes": minutes, "message": f"登录链接已发送至 {masked}，{minutes} 分钟内有效"}


def visit_dict(row: visits.DoneVisit, tz) -> dict:
    check = row.check
    return {"task_id": row.task.id, "elder_id": row.task.elder_id, "elder_name": row.elder_name,
            "visitor_id": row.visitor.id if row.visitor else None, "visitor": row.visitor.display_name if row.visitor else "",
            "volunteer": bool(row.visitor and row.visitor.volunteer), "checked_in_at": local_iso(check.checked_in_at, tz),
            "recorded_at": local_iso(check.at, tz), "findings": [visits.FINDINGS.get(f, f) for f in check.findings],
            "work_order": visits.order_state(row.order), "work_order_id": check.work_order_id,
            "confirmed": row.entry is not None, "hours": visits.hours_text(row.entry.hours if row.entry else row.hours)}


@router.get("/visits")
def list_visits(session: DbSession, services: ServicesDep, user: ManagerUser, unconfirmed: bool = False, limit: int = 200):
    rows = visits.done_visits(session=session, unconfirmed=unconfirmed, limit=max(1, min(limit, 1000)))
    return {"visits": [visit_dict(row, services.settings.tz) for row in rows]}


class ConfirmIn(BaseModel):
    hours: Decimal | None = Field(default=None, ge=Decimal("0.5"), le=Decimal("8"), max_digits=4, decimal_places=1,
                                  description="the hours to credit (default: check-in to record, to the half hour)")


@router.post("/visits/{task_id}/confirm")
def confirm_visit(task_id: Id, body: ConfirmIn, session: DbSession, user: ManagerUser):
    entry = visits.confirm_visit(session=session, task_id=task_id, confirmer=user, hours=body.hours)
    return {"ok": True, "task_id": task_id, "visitor_id": entry.user_id, "hours": visits.hours_text(entry.hours),
            "balance": visits.hours_text(visits.time_bank_balance(session=session, user_id=entry.user_id))}
