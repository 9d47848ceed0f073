"""HTTP API for signing in and for managing accounts (supervisors manage agents; only admins
create or change supervisors and admins). Changing an account is `PATCH /api/users/{id}` in
calls/api.py: an agent's queues and penalty are Asterisk's queue membership."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from callcenter.auth import service as auth_service
from callcenter.auth.models import ROLES, User
from callcenter.inputs import Id
from callcenter.deps import (SESSION_COOKIE, CurrentScope, CurrentUser, DbSession, ServicesDep, SupervisorUser,
                             login_attempt, remember_device)

router = APIRouter(tags=["auth"])


class LoginIn(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=128)


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    role: str = Field(max_length=32)
    password: str = Field(max_length=128)
    display_name: str = Field(default="", max_length=64)
    sip_extension: str | None = Field(default=None, max_length=32)
    area_id: Id | None = Field(default=None, description="the account's district, street or community; none: the whole city")


class UserUpdate(BaseModel):
    role: str | None = Field(default=None, max_length=32)
    display_name: str | None = Field(default=None, max_length=64)
    sip_extension: str | None = Field(default=None, max_length=32)
    active: bool | None = None
    password: str | None = Field(default=None, min_length=1, max_length=128)
    sip_secret: str | None = Field(default=None, max_length=128, description="web softphone SIP password; empty clears it")
    queues: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=50, description="queues the agent joins when ready ([]: QUEUE_NAME)")
    queue_penalty: int | None = Field(default=None, ge=0, le=100)
    area_id: Id | None = Field(default=None, description="the account's scope (an area id); null: the whole city")


def user_dict(user: User) -> dict:
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role,
        "role_label": ROLES.get(user.role, user.role),
        "sip_extension": user.sip_extension,
        "active": user.active,
        "softphone": user.sip_secret_sealed is not None,  # the secret itself never leaves except to its agent
        "queues": user.queues,
        "queue_penalty": user.queue_penalty,
        "area_id": user.area_id,
    }


def sign_in(*, request: Request, response: Response, session, services, username: str, password: str) -> User:
    """Check the throttle and the password, start a session and set its cookie, remember this
    browser as a known device of the account. Shared by the JSON API and the login page."""
    attempt = login_attempt(request, services, username)
    services.throttle.check(attempt)
    user = auth_service.authenticate(session=session, username=username, password=password)
    if user is None:
        services.throttle.failed(attempt)
        raise auth_service.BadCredentials()
    services.throttle.succeeded(attempt)
    response.set_cookie(
        SESSION_COOKIE, services.sessions.issue(user, session), max_age=services.settings.session_max_age_seconds,
        httponly=True, samesite="lax", secure=services.settings.cookie_secure, path="/",
    )
    remember_device(request, response, services, username)
    return user


def sign_out(*, request: Request, response: Response, session, services) -> None:
    """End this browser's session on the server (its cookie then signs no one in) and drop the cookie."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        services.sessions.revoke(token, session)
    response.delete_cookie(SESSION_COOKIE, path="/")


@router.post("/api/auth/login")
def login(body: LoginIn, request: Request, response: Response, session: DbSession, services: ServicesDep):
    user = sign_in(request=request, response=response, session=session, services=services,
                   username=body.username, password=body.password)
    return user_dict(user)


@router.post("/api/auth/logout", status_code=204)
def logout(request: Request, response: Response, session: DbSession, services: ServicesDep):
    sign_out(request=request, response=response, session=session, services=services)


@router.get("/api/auth/me")
def me(user: CurrentUser):
    return user_dict(user)


@router.get("/api/users")
def list_users(session: DbSession, user: SupervisorUser, scope: CurrentScope):
    """The accounts within the manager's scope."""
    return [user_dict(u) for u in auth_service.list_users(session=session, scope=scope)]


@router.post("/api/users", status_code=201)
def create_user(body: UserIn, session: DbSession, user: SupervisorUser, scope: CurrentScope):
    auth_service.check_may_manage(user, body.role, area_id=body.area_id, scope=scope)
    created = auth_service.create_user(session=session, username=body.username, role=body.role, password=body.password,
                                       display_name=body.display_name, sip_extension=body.sip_extension, area_id=body.area_id)
    return user_dict(created)
