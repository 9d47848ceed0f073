"""FastAPI dependencies shared by every router: the database session, the signed-in user, roles,
CSRF. Routers elsewhere (agent_ui, workorders) import these; nothing here imports them."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response
from starlette.requests import HTTPConnection
from sqlmodel import Session

from callcenter import tables
from callcenter.areas import scope as areas_scope
from callcenter.areas.scope import Scope
from callcenter.auth import service as auth_service
from callcenter.auth.models import User
from callcenter.auth.throttle import Attempt, DeviceCookie, LoginThrottle
from callcenter.config import Settings
from callcenter.crypto import Sealer
from callcenter.db import Database
from callcenter.errors import DomainError, PermissionDenied

SESSION_COOKIE = "cc_session"
DEVICE_COOKIE = "cc_device"  # the known-device cookie of the login throttle (auth/throttle.py)
CSRF_COOKIE = "cc_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class Services:
    """What one process builds once at start-up and every request shares."""

    settings: Settings
    db: Database
    redis: object
    sealer: Sealer
    sessions: auth_service.UserSessions
    throttle: LoginThrottle
    devices: DeviceCookie
    # elders.access.ElderAccess: purpose-bound access to profiles, with the domains' purpose finders (built in
    # main.py; not imported here: accounts, which use these dependencies, sit below elders)
    elder_access: object


class NotAuthenticated(DomainError):
    def __init__(self):
        super().__init__("未登录或登录已过期，请重新登录")


class CsrfRejected(DomainError):
    def __init__(self):
        super().__init__("页面已过期或请求来源不可信（CSRF 校验失败），请刷新页面后重试")


def get_services(request: Request) -> Services:
    return request.app.state.services


def _session(services: Annotated[Services, Depends(get_services)]) -> Iterator[Session]:
    with services.db.session_scope() as session:
        yield session


# Committed before the response is sent, so a client never sees success for a lost write.
get_db = Depends(_session, scope="function")
DbSession = Annotated[Session, get_db]
ServicesDep = Annotated[Services, Depends(get_services)]


def release(session: Session) -> None:
    """Commit what the request wrote and give its connection back to the pool before a wait
    that needs no database (a telephony command waits up to AMI_COMMAND_TIMEOUT for the bridge:
    agents' clicks during a slow bridge would otherwise hold the pool). Objects read stay usable;
    the request's own commit at the end then has nothing left to do."""
    session.commit()
    session.close()


def current_user_or_none(request: Request, session: DbSession, services: ServicesDep) -> User | None:
    """The signed-in user; from here on the request's session sees only the user's scope
    (areas/scope.py: every query of scoped models is filtered there, not in the routes)."""
    token = request.cookies.get(SESSION_COOKIE)
    user = services.sessions.read(token, session) if token else None
    if user is not None:
        areas_scope.apply(session, auth_service.scope_of(session=session, user=user))
    return user


def current_user(user: Annotated[User | None, Depends(current_user_or_none)]) -> User:
    if user is None:
        raise NotAuthenticated()
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require_role(role: str, *, officials: bool = False, city: bool = False):
    """Dependency: the signed-in user, who must have hotline `role` or higher, or with
    `officials` be a district, street or community account (they read their area's data);
    with `city`, the user's scope must be the whole city."""

    def check(user: CurrentUser, session: DbSession) -> User:
        if not (auth_service.has_role(user, role) or (officials and auth_service.is_official(user))):
            raise PermissionDenied("没有权限执行此操作")
        if city and not areas_scope.current(session).city:
            raise PermissionDenied("此功能仅限市级账号：全市话务实时数据与全市设置不按辖区划分")
        return user

    return check


AgentUser = Annotated[User, Depends(require_role("agent"))]
SupervisorUser = Annotated[User, Depends(require_role("supervisor"))]
AdminUser = Annotated[User, Depends(require_role("admin"))]
# Reads of an area's elders, orders and callbacks: hotline staff, and area officials (scoped).
ReaderUser = Annotated[User, Depends(require_role("agent", officials=True))]
# Reports, figures and the providers' work: supervisors and admins, and area officials (scoped).
OverseerUser = Annotated[User, Depends(require_role("supervisor", officials=True))]
# The live city-wide figures (wallboard): supervisors and admins of the whole city.
CitySupervisorUser = Annotated[User, Depends(require_role("supervisor", city=True))]


def current_scope(user: CurrentUser, session: DbSession) -> Scope:
    """The signed-in user's scope, as current_user applied it to the request's session."""
    return areas_scope.current(session)


CurrentScope = Annotated[Scope, Depends(current_scope)]


async def csrf_protect(request: HTTPConnection) -> None:
    """Unsafe requests must prove they come from our pages.

    JSON bodies pass: a cross-site form cannot send `application/json` without a CORS
    preflight, which we never grant. Everything else (form posts, uploads, bodiless POSTs) must
    repeat the `cc_csrf` cookie in the `X-CSRF-Token` header or the `csrf_token` form field.
    Websockets check their Origin themselves (realtime/api.py).
    """
    if request.scope["type"] != "http" or request.method not in UNSAFE_METHODS:
        return
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return
    expected = request.cookies.get(CSRF_COOKIE)
    supplied = request.headers.get(CSRF_HEADER)
    if supplied is None and content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        supplied = (await request.form()).get(CSRF_FIELD)
    if not expected or not supplied or not secrets.compare_digest(str(supplied), expected):
        raise CsrfRejected()


def csrf_token_for(request: Request) -> str:
    """The token a page embeds in its forms (set as a cookie by the middleware in main.py)."""
    return request.state.csrf_token


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def login_attempt(request: Request, services: Services, account: str) -> Attempt:
    """A login attempt as the throttle sees it: account, address, and whether this browser has
    signed in to that account before (its known-device cookie)."""
    known = services.devices.known_device(request.cookies.get(DEVICE_COOKIE), account)
    return Attempt(account=account, address=client_ip(request), known_device=known)


def remember_device(request: Request, response: Response, services: Services, account: str) -> None:
    """After a successful login: this browser is a known device of `account` from now on."""
    settings = services.settings
    response.set_cookie(DEVICE_COOKIE, services.devices.remember(request.cookies.get(DEVICE_COOKIE), account),
                        max_age=settings.login_device_days * 86400, httponly=True, samesite="lax",
                        secure=settings.cookie_secure, path="/")


def download(rows: list[list], *, format: str, title: str, name: str) -> Response:
    """A table as a file to save (`name`.csv or .xlsx), with its Chinese headers."""
    body, media = tables.encode(rows, format=format, title=title)
    return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}.{format}"'})
