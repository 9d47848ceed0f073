"""Security headers on every response, the API description behind sign-in, and Secure cookies
(security probe, finding 3): through the real app over HTTP, and Swagger UI in Chromium under the CSP."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from callcenter.config import Settings
from callcenter.main import content_security_policy, create_app
from tests.browser import sign_in
from tests.conftest import PASSWORD, csrf_headers, login, make_user


def assert_protected(response) -> None:
    csp = response.headers.get("content-security-policy", "")
    directives = {part.split()[0]: part.split()[1:] for part in csp.split("; ") if part}
    assert directives.get("default-src") == ["'self'"], csp
    assert directives.get("script-src") == ["'self'"], csp  # no 'unsafe-inline', no 'unsafe-eval'
    assert directives.get("frame-ancestors") == ["'none'"], csp
    assert directives.get("object-src") == ["'none'"], csp
    assert response.headers.get("x-frame-options") == "DENY"
    assert response.headers.get("x-content-type-options") == "nosniff"
    assert response.headers.get("referrer-policy") == "same-origin"


def test_every_kind_of_response_carries_the_security_headers(client, services):
    anonymous = [
        client.get("/login"),  # a page
        client.get("/m/login"),  # a provider's mobile page
        client.get("/static/app.css"),  # a static file
        client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js"),
        client.get("/api/auth/me"),  # a JSON error (401)
        client.get("/api/nothing-here"),  # 404
        client.get("/console", headers={"accept": "text/html"}, follow_redirects=False),  # a redirect
        client.post("/api/auth/login", json={"username": "nobody", "password": "x"}),
        client.get("/healthz"),
    ]
    for response in anonymous:
        assert_protected(response)
    login(client, make_user(services, "supervisor"))
    for path in ("/console", "/elders", "/calls", "/supervisor", "/supervisor/reports", "/supervisor/agents", "/api/auth/me",
                 "/api/elders", "/docs", "/openapi.json"):
        assert_protected(client.get(path))


def test_the_websocket_of_the_same_host_may_be_reached(client):
    csp = client.get("/login", headers={"host": "hotline.example:8443"}).headers["content-security-policy"]
    connect = re.search(r"connect-src ([^;]+)", csp).group(1).split()
    assert connect == ["'self'", "ws://hotline.example:8443", "wss://hotline.example:8443"]


def test_the_softphones_sip_websocket_is_allowed_and_a_hostile_host_header_is_not_echoed():
    csp = content_security_policy("hotline.example", "wss://pbx.example:8089/ws")
    assert "connect-src 'self' ws://hotline.example wss://hotline.example wss://pbx.example:8089;" in csp
    hostile = content_security_policy("evil.example; script-src *", None)
    assert "evil" not in hostile and "connect-src 'self';" in hostile


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)


def test_our_pages_need_no_inline_script(client, services):
    """What the CSP forbids, our own pages do not contain (a JSON data block is fine)."""
    login(client, make_user(services, "supervisor"))
    for path in ("/login", "/m/login", "/console", "/elders", "/calls", "/supervisor", "/supervisor/reports", "/supervisor/agents",
                 "/supervisor/providers", "/supervisor/service-types", "/supervisor/ivr", "/docs"):
        html = client.get(path).text
        assert not INLINE_SCRIPT.search(html), (path, INLINE_SCRIPT.search(html).group(0))
        assert not INLINE_HANDLER.search(html), (path, INLINE_HANDLER.search(html).group(0))


def test_the_api_description_needs_a_signed_in_user(client, services):
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/docs").status_code == 401
    page = client.get("/docs", headers={"accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/docs"
    assert client.get("/redoc").status_code == 404  # not served at all
    login(client, make_user(services, "agent"))
    assert "/api/auth/login" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_swagger_ui_runs_under_the_csp(page, live_server, services):
    """Swagger UI is started by a static script; the page fixture fails on any CSP violation."""
    user = make_user(services, "agent")
    sign_in(page, live_server, "/docs", user, PASSWORD)
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("12349 养老服务热线")
    expect(page.locator(".opblock-summary-path", has_text="/api/auth/login").first).to_be_visible()


def set_cookies(response) -> dict[str, str]:
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


def test_cookie_secure_defaults_on_for_an_https_public_url_and_can_be_set():
    assert Settings(_env_file=None, public_url="https://hotline.example").cookie_secure is True
    assert Settings(_env_file=None, public_url="http://10.0.0.2:8000").cookie_secure is False
    assert Settings(_env_file=None, public_url="https://hotline.example", cookie_secure=False).cookie_secure is False
    assert Settings(_env_file=None, public_url="http://10.0.0.2:8000", cookie_secure=True).cookie_secure is True


@pytest.fixture
def https_app(settings):
    """The app as deployed behind HTTPS: PUBLIC_URL is https and COOKIE_SECURE is not set."""
    fields = settings.model_dump(exclude={"cookie_secure", "public_url"})
    return create_app(Settings(_env_file=None, **fields, public_url="https://hotline.example"))


def test_every_cookie_is_secure_behind_https(https_app, services):
    user = make_user(services, "agent")
    with TestClient(https_app, base_url="https://testserver") as client:
        cookies = set_cookies(client.get("/login"))
        cookies |= set_cookies(client.post("/api/auth/login", json={"username": user.username, "password": PASSWORD}))
        assert {"cc_csrf", "cc_session", "cc_device"} <= set(cookies)
        for header in cookies.values():
            assert "; secure" in header.lower(), header
        assert client.post("/api/auth/logout", headers=csrf_headers(client)).status_code == 204


def test_cookies_are_not_secure_on_plain_http_by_default(client, services):
    assert services.settings.cookie_secure is False  # PUBLIC_URL http://127.0.0.1:8000 (the laptop default)
    user = make_user(services, "agent")
    cookies = set_cookies(client.post("/api/auth/login", json={"username": user.username, "password": PASSWORD}))
    assert "secure" not in cookies["cc_session"].lower()
