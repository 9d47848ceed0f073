"""The web application: `create_app(settings)` builds it; the one place that mounts every router."""

from __future__ import annotations

import logging
import re
import secrets
import time
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import exc as sa_exc
from starlette.concurrency import run_in_threadpool

from callcenter import admission, db, redis_conn
from callcenter.admission import InFlightLimit
from callcenter.auth import service as auth_service
from callcenter.auth.api import router as auth_router
from callcenter.auth.throttle import DeviceCookie, Limits, LoginThrottle
from callcenter.bodylimit import BodyLimit
from callcenter.nul import RefuseNul
from callcenter.config import Settings, get_settings
from callcenter.crypto import Sealer
from callcenter.db import Database
from callcenter.deps import CSRF_COOKIE, CsrfRejected, CurrentUser, NotAuthenticated, Services, csrf_protect
from callcenter.elders.access import ElderAccess
from callcenter.elders.api import router as elders_router
from callcenter.errors import Conflict, DomainError, FieldErrors, NotFound, PermissionDenied, Unavailable
from callcenter.areas.api import router as areas_router
from callcenter.calls.api import accounts_router, agent_router
from callcenter.calls.api import router as calls_router
from callcenter.notify.api import router as notify_router
from callcenter.realtime.api import router as realtime_router
from callcenter.stats.api import router as stats_router
from callcenter.realtime.hub import Hub

log = logging.getLogger(__name__)


def build_services(settings: Settings) -> Services:
    auth_service.configure_hashing(time_cost=settings.password_hash_time_cost, memory_kib=settings.password_hash_memory_kib)
    redis = redis_conn.connect(settings)
    return Services(
        settings=settings,
        db=Database(settings),
        redis=redis,
        sealer=Sealer(settings.secret),
        sessions=auth_service.UserSessions(settings.session_max_age_seconds),
        throttle=LoginThrottle(redis, Limits(
            free_failures=settings.login_free_failures, backoff_seconds=settings.login_backoff_seconds,
            max_backoff_seconds=settings.login_backoff_max_seconds, account_limit=settings.login_account_limit,
            address_limit=settings.login_address_limit, window_seconds=settings.login_window_seconds)),
        devices=DeviceCookie(settings.secret),
        elder_access=_elder_access(),
    )


def _elder_access() -> ElderAccess:
    """The profile policy with the purposes the calls, work orders and IVR domains find."""
    from callcenter.calls import purposes as call_purposes
    from ivr import purposes as ivr_purposes
    from workorders import purposes as order_purposes

    return ElderAccess((call_purposes.open_call, order_purposes.open_order, ivr_purposes.open_callback))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    services = build_services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await app.state.hub.start(await run_in_threadpool(_waiting_calls, services))
        yield
        await app.state.hub.stop()
        services.db.engine.dispose()

    app = FastAPI(title="12349 养老服务热线", lifespan=lifespan, dependencies=[Depends(csrf_protect)], docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.services = services
    app.state.hub = Hub(redis_conn.redis_url(settings), events_prefix=settings.events_prefix,
                        ping_seconds=settings.live_ping_seconds)
    _install_error_handlers(app)
    _install_csrf_cookie(app, settings)
    _install_access_log(app)
    app.add_middleware(RefuseNul)
    app.add_middleware(InFlightLimit, limit=db.POOL_SIZE + db.POOL_OVERFLOW - admission.SPARE_CONNECTIONS)
    app.add_middleware(BodyLimit, settings=settings)  # outside the app's parsing: refused before any
    _install_security_headers(app, settings)  # last added, so outermost: the refusals above carry the headers too

    from agent_ui import care_report as care_report_pages
    from agent_ui import pages
    from agent_ui import care_pages
    from agent_ui import manage as manage_pages
    from agent_ui import supervisor as supervisor_pages
    from callcenter.privacy.api import router as privacy_router
    from callcenter.care.api import router as care_router
    from callcenter.care.reports_api import router as care_reports_router
    from ivr.api import router as ivr_router
    from workorders.api import router as workorders_router
    from workorders.mobile import router as mobile_router
    from callcenter.care.mobile import router as visitor_router
    from callcenter.care.visitors_api import router as visitors_router
    from agent_ui import visitors as visitors_pages

    app.include_router(auth_router)
    app.include_router(elders_router)
    app.include_router(areas_router)
    app.include_router(calls_router)
    app.include_router(agent_router)
    app.include_router(accounts_router)
    app.include_router(workorders_router)
    app.include_router(mobile_router)
    app.include_router(ivr_router)
    app.include_router(privacy_router)
    app.include_router(care_router)
    app.include_router(visitors_router)
    app.include_router(visitor_router)
    app.include_router(care_reports_router)
    app.include_router(notify_router)
    app.include_router(realtime_router)
    app.include_router(stats_router)
    app.include_router(pages.router)
    app.include_router(supervisor_pages.router)
    app.include_router(manage_pages.router)
    app.include_router(care_pages.router)
    app.include_router(visitors_pages.router)
    app.include_router(care_report_pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(user: CurrentUser):
        """The API description, for signed-in users only: it maps every route an attacker could try."""
        return app.openapi()

    @app.get("/docs", include_in_schema=False)
    def docs(user: CurrentUser):
        """Swagger UI from our own static files (hotline centres often run on closed networks),
        started by a static script: the CSP allows no inline one."""
        return HTMLResponse(SWAGGER_PAGE)

    @app.get("/healthz", tags=["ops"])
    async def healthz():
        """Database and Redis reachability, and the AMI bridge as its heartbeat tells it; 503 when
        the database or Redis is down, or a running bridge cannot record calls."""
        checks = {"database": await run_in_threadpool(_check, services.db.ping), "redis": await run_in_threadpool(_check, services.redis.ping)}
        healthy = all(check["ok"] for check in checks.values())
        bridge = await run_in_threadpool(_bridge_status, services.redis) if checks["redis"]["ok"] else {"running": None}
        healthy = healthy and bridge.get("recording", True) is not False
        return JSONResponse({"status": "ok" if healthy else "degraded", **checks, "bridge": bridge},
                            status_code=200 if healthy else 503)

    return app


def _waiting_calls(services: Services) -> list[tuple[str, str, str]]:
    from sqlmodel import select

    from callcenter.calls.models import CallRecord

    with services.db.session_scope() as session:
        rows = session.exec(select(CallRecord.queue, CallRecord.linkedid, CallRecord.state)
                            .where(CallRecord.state.in_(("queued", "offered")), CallRecord.queue.is_not(None)))
        return [tuple(row) for row in rows]


def _bridge_status(redis) -> dict:
    from callcenter.calls.commands import bridge_status

    try:
        return bridge_status(redis)
    except Exception as exc:  # never raise from a health check
        return {"running": None, "error": type(exc).__name__}


def _check(probe) -> dict:
    try:
        probe()
        return {"ok": True}
    except Exception as exc:  # report any failure, never raise from a health check
        return {"ok": False, "error": type(exc).__name__}


access_log = logging.getLogger("callcenter.access")


def _install_access_log(app: FastAPI) -> None:
    """Method, path, status and time, never the query string: searches carry phone and ID
    numbers (`?q=`, `?phone=`), which must not reach the logs. Replaces uvicorn's access log."""

    @app.middleware("http")
    async def log_request(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        access_log.info("%s %s %s %.1fms", request.method, loggable_path(request.url.path), response.status_code,
                        (time.perf_counter() - start) * 1000)
        return response


SECRET_PATHS = auth_service.LINK_PATHS  # the phone pages' one-time login links: whoever reads one can sign in
PHONE_PAGES = ("/m/", "/v/")  # provider staff's and visitors' pages: each has its own login


def loggable_path(path: str) -> str:
    """The path with any login token cut off."""
    for prefix in SECRET_PATHS:
        if path.startswith(prefix):
            return prefix + "…"
    return path


SWAGGER_PAGE = """<!doctype html>
<html lang="zh-CN">
<head>
  <meta charset="utf-8">
  <title>12349 养老服务热线 API</title>
  <link rel="stylesheet" href="/static/vendor/swagger-ui/swagger-ui.css">
  <link rel="icon" type="image/png" href="/static/vendor/swagger-ui/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="/openapi.json"></div>
<script src="/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/static/swagger-init.js"></script>
</body>
</html>
"""


def content_security_policy(host: str | None, sip_ws_url: str | None) -> str:
    """Scripts from our own files only (no inline code, no eval); no framing; connections to this
    site, its websocket (ws/wss of the same host: older browsers do not count them as 'self') and
    the web softphone's SIP websocket. Inline styles stay allowed: ECharts' tooltips and Swagger
    UI write style attributes."""
    connect = ["'self'"]
    if host and HOST.fullmatch(host):
        connect += [f"ws://{host}", f"wss://{host}"]
    sip = urlsplit(sip_ws_url) if sip_ws_url else None
    if sip and sip.scheme in ("ws", "wss") and sip.netloc:
        connect.append(f"{sip.scheme}://{sip.netloc}")
    return "; ".join([
        "default-src 'self'", "script-src 'self'", "style-src 'self' 'unsafe-inline'", "img-src 'self' data: blob:",
        "media-src 'self' blob:", f"connect-src {' '.join(connect)}", "object-src 'none'", "base-uri 'self'",
        "form-action 'self'", "frame-ancestors 'none'",
    ])


HOST = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")


def _install_security_headers(app: FastAPI, settings: Settings) -> None:
    """Every HTTP response (pages, JSON, static files, provider pages, errors) carries the CSP and
    the anti-framing, no-sniffing and referrer headers: this is the one place they are set."""

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        if "content-security-policy" not in response.headers:  # a route's own, stricter policy stays (photos: sandbox)
            response.headers["Content-Security-Policy"] = content_security_policy(request.headers.get("host"),
                                                                                  settings.sip_ws_url)
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        return response


def _install_csrf_cookie(app: FastAPI, settings: Settings) -> None:
    @app.middleware("http")
    async def csrf_cookie(request: Request, call_next):
        token = request.cookies.get(CSRF_COOKIE)
        request.state.csrf_token = token or secrets.token_urlsafe(24)
        response = await call_next(request)
        if not token:
            response.set_cookie(CSRF_COOKIE, request.state.csrf_token, samesite="strict", secure=settings.cookie_secure,
                                httponly=False, path="/")
        return response


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api") and "text/html" in request.headers.get("accept", "")


DATABASE_UNAVAILABLE = "数据库暂时无法访问，请稍后重试；正在通话的电话不受影响"


def _install_error_handlers(app: FastAPI) -> None:
    status_of = {NotFound: 404, Conflict: 409, PermissionDenied: 403, CsrfRejected: 403, NotAuthenticated: 401,
                 auth_service.BadCredentials: 401, auth_service.TooManyAttempts: 429, Unavailable: 503}

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError):
        if isinstance(exc, NotAuthenticated) and _wants_html(request):
            login = next((f"{prefix}login" for prefix in PHONE_PAGES if request.url.path.startswith(prefix)), "/login")
            return RedirectResponse(f"{login}?next={request.url.path}", status_code=303)
        if isinstance(exc, FieldErrors) and not _wants_html(request):
            detail = [{"loc": ["body", field], "msg": msg, "type": "value_error"} for field, msg in exc.errors]
            return JSONResponse({"detail": detail, "message": exc.message}, status_code=422)
        status = next((code for cls, code in status_of.items() if isinstance(exc, cls)), 400)
        if _wants_html(request):
            from agent_ui.pages import render_error

            return render_error(request, status, exc.message)
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, auth_service.TooManyAttempts) else None
        return JSONResponse({"detail": exc.message}, status_code=status, headers=headers)

    @app.exception_handler(sa_exc.OperationalError)
    @app.exception_handler(sa_exc.InterfaceError)
    @app.exception_handler(sa_exc.TimeoutError)
    async def database_unreachable(request: Request, exc: Exception):
        """The database is down or out of reach: a 503 in Chinese (a page, or JSON), not a bare 500."""
        log.warning("database unavailable for %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return await domain_error(request, Unavailable(DATABASE_UNAVAILABLE))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        detail = [{"loc": _loc(err), "msg": _chinese(err), "type": err.get("type")} for err in exc.errors()]
        return JSONResponse({"detail": detail, "message": "请求格式有误"}, status_code=422)


def _loc(err: dict) -> list:
    """Where the error is; a model-wide check that names a field (ctx "field") points at it."""
    loc = list(err.get("loc", []))
    field = (err.get("ctx") or {}).get("field")
    return loc + [field] if isinstance(field, str) else loc


def _chinese(err: dict) -> str:
    messages = {"missing": "必填", "string_too_short": "不能为空", "string_too_long": "不能超过 {max_length} 字",
                "too_long": "最多 {max_length} 项", "int_parsing": "应为整数",
                "greater_than_equal": "超出范围（最小 {ge}）", "less_than_equal": "超出范围（最大 {le}）",
                "greater_than": "超出范围（应大于 {gt}）", "less_than": "超出范围（应小于 {lt}）",
                "decimal_max_digits": "位数过多（最多 {max_digits} 位）", "decimal_max_places": "最多 {decimal_places} 位小数",
                "date_from_datetime_parsing": "日期格式应为 YYYY-MM-DD", "date_parsing": "日期格式应为 YYYY-MM-DD",
                "decimal_parsing": "应为数字", "json_invalid": "JSON 格式错误"}
    template = messages.get(err.get("type"))
    if template is None:
        return err.get("msg", "无效")
    try:
        return template.format(**(err.get("ctx") or {}))
    except (KeyError, IndexError):
        return template.split("（")[0].replace(" {max_length}", "")
