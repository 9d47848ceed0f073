"""The sign-in routes of a set of phone pages, one piece for both: provider staff at /m/
(workorders/mobile.py) and visitors at /v/ (callcenter/care/mobile.py). Each set has its own
cookie (scoped to its path), its own `PhoneDoor` (auth/service.py: which accounts, which kind of
session and link) and its own wording; the forms are the shared templates m/login.html and
m/link.html, which each set's Jinja environment finds (the visitors' loader falls back to the
provider pages' folder).

- GET/POST {prefix}/login: phone and password, through the hotline's login throttle (account
  `{throttle}:` + the phone in E.164, however it was typed);
- GET {prefix}/link/{token}: the SMS link opens a page with one button; an SMS app or a chat that
  fetches links to preview them must not spend the single-use link. A bad link says why;
- POST {prefix}/link: spend the link and sign in;
- POST {prefix}/logout: end the session on the server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlparse

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from callcenter.auth import service as auth_service
from callcenter.deps import DbSession, NotAuthenticated, ServicesDep, login_attempt, remember_device
from callcenter.phones import try_parse_phone

Render = Callable[..., HTMLResponse]  # render(request, template name, context, status_code)


class PhonePages:
    """The sign-in of one set of phone pages. `labels` is what the shared templates say (title,
    login_heading, login_hint, enter); `greeting(session, account)` is (who, organisation) on the
    link's page."""

    def __init__(self, *, prefix: str, cookie: str, door: auth_service.PhoneDoor, render: Render, throttle: str,
                 labels: dict[str, str], greeting: Callable[[Any, Any], tuple[str, str]]):
        self.prefix, self.cookie, self.door, self.render, self.throttle = prefix, cookie, door, render, throttle
        self.labels = {"prefix": prefix, **labels}
        self.greeting = greeting

    def current(self, request: Request, session: DbSession, services: ServicesDep) -> Any:
        """The signed-in account of these pages (NotAuthenticated: the pages' login, via main.py)."""
        token = request.cookies.get(self.cookie)
        account = self.door.account_for_session(session=session, token=token) if token else None
        if account is None:
            raise NotAuthenticated()
        return account

    def safe_next(self, target: str | None) -> str:
        """Only a page of this set: a login form must not bounce anyone to another site."""
        home = f"{self.prefix}/"
        if not target or urlparse(target).netloc or not target.startswith(home) or target.startswith("//"):
            return home
        return target

    def signed_in(self, account: Any, session, services, target: str) -> RedirectResponse:
        hours = services.settings.provider_session_hours
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(self.cookie, self.door.start_session(session=session, account=account, hours=hours), httponly=True,
                            samesite="lax", secure=services.settings.cookie_secure, max_age=hours * 3600, path=self.prefix)
        return response

    def _page(self, request: Request, name: str, context: dict, status_code: int = 200) -> HTMLResponse:
        return self.render(request, name, {"door": self.labels} | context, status_code)

    def add_routes(self, router: APIRouter) -> None:
        """Mount login, link and logout on `router` (whose prefix is `self.prefix`)."""
        pages = self

        @router.get("/login")
        def login_page(request: Request, next: str | None = None):
            return pages._page(request, "m/login.html", {"next": pages.safe_next(next), "error": None})

        @router.post("/login")
        def login(request: Request, session: DbSession, services: ServicesDep, phone: Annotated[str, Form()] = "",
                  password: Annotated[str, Form()] = "", next: Annotated[str, Form()] = ""):
            area_code = services.settings.city_area_code
            parsed = try_parse_phone(phone, default_area_code=area_code)
            account_key = f"{pages.throttle}:{parsed.e164 if parsed else phone.strip()}"  # one account however it is written
            attempt = login_attempt(request, services, account_key)
            target = pages.safe_next(next)
            try:
                services.throttle.check(attempt)
            except auth_service.TooManyAttempts as exc:
                page = pages._page(request, "m/login.html", {"next": target, "error": exc.message, "phone": phone}, 429)
                page.headers["Retry-After"] = str(exc.retry_after)
                return page
            account = pages.door.authenticate(session=session, phone=phone, password=password, area_code=area_code)
            if account is None:
                services.throttle.failed(attempt)
                return pages._page(request, "m/login.html", {"next": target, "error": "手机号或密码错误", "phone": phone}, 401)
            services.throttle.succeeded(attempt)
            response = pages.signed_in(account, session, services, target)
            remember_device(request, response, services, account_key)
            return response

        @router.get("/link/{token}")
        def link_page(token: str, request: Request, session: DbSession, services: ServicesDep):
            try:
                account = pages.door.account_for_link(session=session, token=token,
                                                      minutes=services.settings.provider_link_minutes, use=False)
            except auth_service.BadLoginLink as exc:
                return pages._page(request, "m/login.html", {"next": f"{pages.prefix}/", "error": exc.message}, 401)
            who, organisation = pages.greeting(session, account)
            return pages._page(request, "m/link.html", {"token": token, "who": who, "provider": organisation})

        @router.post("/link")
        def login_by_link(request: Request, session: DbSession, services: ServicesDep,
                          token: Annotated[str, Form(max_length=200)] = ""):
            try:
                account = pages.door.account_for_link(session=session, token=token,
                                                      minutes=services.settings.provider_link_minutes, use=True)
            except auth_service.BadLoginLink as exc:
                return pages._page(request, "m/login.html", {"next": f"{pages.prefix}/", "error": exc.message}, 401)
            return pages.signed_in(account, session, services, f"{pages.prefix}/")

        @router.post("/logout")
        def logout(request: Request, session: DbSession):
            token = request.cookies.get(pages.cookie)
            if token:
                pages.door.end_session(session=session, token=token)
            response = RedirectResponse(f"{pages.prefix}/login", status_code=303)
            response.delete_cookie(pages.cookie, path=pages.prefix)
            return response
