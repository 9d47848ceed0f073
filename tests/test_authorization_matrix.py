"""The authorization matrix: every route of the app (pages, the websocket and the static files
included) × every kind of account × an object in the account's scope and one outside it.

TABLE below is the expected outcome of each; `test_every_route_has_an_entry` fails for a route
added without one. Outcomes:
- ok: the request got past authentication, role and scope (2xx, 3xx, or a refusal that only an
  authorised caller can get: 409, 422, 503 of a bridge that is not running …);
- 401 / 403 / 404: not signed in / not allowed / not found (also: outside the scope).
Each row has two columns of ten outcomes, one per account in ACCOUNTS order: with the objects of
district A ("in": inside every scoped account's area) and of district B ("out": outside them).
City accounts see both. A "citywide" row is where a hotline agent may see a caller from anywhere
(their own call, a phone lookup); elsewhere an answer to a scoped account must not name anything
of district B (MARKERS), whatever its status.

Path parameters take the object of the column's side (tests/areas/city.py); phone and contact ids
are new rows for each request, so a DELETE never takes away what the next account needs.

An eleventh account, the visitor (巡访员) of district A's community, is walked too: it signs in on
its own pages (/v/) only, so everywhere else it gets what an anonymous caller gets, unless a row
says otherwise (`visitor`, `visitor_out`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount
from starlette.websockets import WebSocketDisconnect

from callcenter.elders import service as elders_service
from callcenter.elders.schemas import ContactIn, PhoneIn
from callcenter.main import create_app
from tests.areas import city as city_module
from tests.areas.city import MARKERS, fresh_mobile
from tests.conftest import PASSWORD

ACCOUNTS = ["anonymous", "agent", "supervisor", "admin", "district_supervisor", "district_agent", "district_official",
            "street_official", "community_staff", "provider"]
HOTLINE = {"district_supervisor", "district_agent"}  # scoped hotline staff: see callers from anywhere on citywide rows
SCOPED = {"district_supervisor", "district_agent", "district_official", "street_official", "community_staff", "provider", "visitor"}

# anon agent sup admin dsup dagent dofficial sofficial community provider
PUBLIC = "ok ok ok ok ok ok ok ok ok ok"
SIGNED_IN = "401 ok ok ok ok ok ok ok ok 401"
AGENT = "401 ok ok ok ok ok 403 403 403 401"
SUPERVISOR = "401 403 ok ok ok 403 403 403 403 401"
CITY_SUPERVISOR = "401 403 ok ok 403 403 403 403 403 401"
READER = "401 ok ok ok ok ok ok ok ok 401"  # hotline staff and area officials
OVERSEER = "401 403 ok ok ok 403 ok ok ok 401"  # supervisors and area officials
MANAGER = "401 403 ok ok ok 403 403 ok ok 401"  # the visitors' managers: supervisors, street officials, community staff
PROVIDER = "401 401 401 401 401 401 401 401 401 ok"
NOBODY = "401 401 401 401 401 401 401 401 401 401"  # the hotline's and the providers' accounts: the visitor's pages
# … on an object outside the scoped accounts' area:
READER_OUT = "401 ok ok ok 404 404 404 404 404 401"
AGENT_OUT = "401 ok ok ok 404 404 403 403 403 401"
SUPERVISOR_OUT = "401 403 ok ok 404 403 403 403 403 401"
OVERSEER_OUT = "401 403 ok ok 404 403 404 404 404 401"
MANAGER_OUT = "401 403 ok ok 404 403 403 404 404 401"
PROVIDER_OUT = "401 401 401 401 401 401 401 401 401 404"
# Calls: call A is with `agent` (8001), call B with `district_agent` (8002): an agent's own call
# is theirs wherever the caller lives; a supervisor reads and acts on the calls in scope.
CALL_READ_IN, CALL_READ_OUT = AGENT, "401 ok ok ok 404 ok 403 403 403 401"
OWN_CALL_IN, OWN_CALL_OUT = "401 ok ok ok ok 403 403 403 403 401", "401 403 ok ok 404 ok 403 403 403 401"


ENDS_SESSION = {"POST /api/auth/logout", "POST /logout", "POST /m/logout", "POST /v/logout"}


@dataclass
class Row:
    inside: str
    outside: str | None = None  # None: as inside (the route reaches no object of a side)
    json: object = None
    form: dict | None = None
    query: str = ""
    citywide: bool = False  # hotline staff may be shown the other side's caller here
    visitor: str | None = None  # the visitor's outcome; None: the anonymous caller's
    visitor_out: str | None = None  # … with side B's objects; None: as with side A's

    def expected_for_visitor(self, side: str) -> str:
        anonymous = (self.inside if side == "A" else self.outside or self.inside).split()[0]
        return (self.visitor_out if side == "B" and self.visitor_out else self.visitor) or anonymous


TABLE: dict[str, Row] = {
    # the app's own, and signing in and out
    "GET /openapi.json": Row(SIGNED_IN),
    "GET /docs": Row(SIGNED_IN),
    "GET /healthz": Row(PUBLIC),
    "MOUNT /static": Row(PUBLIC),
    "POST /api/auth/login": Row(PUBLIC, json={}),
    "POST /api/auth/logout": Row(PUBLIC),
    "GET /api/auth/me": Row(SIGNED_IN),
    "GET /": Row(PUBLIC),
    "GET /login": Row(PUBLIC),
    "POST /login": Row(PUBLIC, form={"username": "{admin_username}", "password": PASSWORD}),
    "POST /logout": Row(PUBLIC),
    # accounts
    "GET /api/users": Row(SUPERVISOR),
    "POST /api/users": Row(SUPERVISOR, "401 403 ok ok 403 403 403 403 403 401",
                           json={"username": "{fresh}", "role": "agent", "password": PASSWORD, "area_id": "{district}"}),
    "PATCH /api/users/{user_id}": Row(SUPERVISOR, SUPERVISOR_OUT, json={"display_name": "改名"}),
    "GET /supervisor/agents": Row(SUPERVISOR),
    "POST /supervisor/agents": Row(SUPERVISOR, "401 403 ok ok 403 403 403 403 403 401",
                                   form={"username": "{fresh}", "password": PASSWORD, "role": "agent", "area_id": "{district}"}),
    "POST /supervisor/agents/{user_id}": Row(SUPERVISOR, SUPERVISOR_OUT, form={"action": "activate"}),
    # elders
    "GET /api/elders": Row(READER),
    "POST /api/elders": Row(AGENT, json={"name": "新建老人"}),
    "GET /api/elders/lookup": Row(AGENT, query="phone={phone_number}", citywide=True),
    "GET /api/elders/export": Row(SUPERVISOR, query="reason=correction"),
    "POST /api/elders/import": Row(CITY_SUPERVISOR),
    "GET /api/elders/{elder_id}": Row(READER, READER_OUT),
    "PATCH /api/elders/{elder_id}": Row(AGENT, AGENT_OUT, json={"address": "新地址"}),
    "POST /api/elders/{elder_id}/deactivate": Row(AGENT, AGENT_OUT, json={"reason": "矩阵测试"}),
    "POST /api/elders/{elder_id}/phones": Row(AGENT, AGENT_OUT, json={"number": "{fresh_mobile}"}),
    "DELETE /api/elders/{elder_id}/phones/{phone_id}": Row(AGENT, AGENT_OUT),
    "POST /api/elders/{elder_id}/contacts": Row(AGENT, AGENT_OUT, json={"name": "邻居", "phone": "{fresh_mobile}"}),
    "DELETE /api/elders/{elder_id}/contacts/{contact_id}": Row(AGENT, AGENT_OUT),
    "GET /api/areas": Row(READER),
    "GET /elders": Row(AGENT),
    "GET /elders/{elder_id}": Row(AGENT, AGENT_OUT),
    "POST /elders/{elder_id}/workorders": Row(AGENT, AGENT_OUT, form={"service_type": "meal"}),
    # calls and the console
    "GET /api/calls": Row(AGENT),
    "GET /api/calls/recall": Row(AGENT),
    "GET /api/calls/{call_id}": Row(CALL_READ_IN, CALL_READ_OUT, citywide=True),
    "GET /api/calls/{call_id}/pop": Row(OWN_CALL_IN, OWN_CALL_OUT, citywide=True),
    "PUT /api/calls/{call_id}/summary": Row(OWN_CALL_IN, OWN_CALL_OUT, json={"notes": "矩阵"}, citywide=True),
    "POST /api/calls/{call_id}/elder": Row(OWN_CALL_IN, OWN_CALL_OUT, json={"elder_id": "{elder}"}, citywide=True),
    "POST /api/calls/{call_id}/hangup": Row(OWN_CALL_IN, OWN_CALL_OUT, citywide=True),
    "POST /api/calls/{call_id}/transfer": Row(OWN_CALL_IN, OWN_CALL_OUT, json={"target": "8009"}, citywide=True),
    "POST /api/agent/state": Row(AGENT, json={"state": "ready"}),
    "POST /api/agent/callback": Row(OWN_CALL_IN, OWN_CALL_OUT, json={"call_id": "{call}"}, citywide=True),
    "GET /api/agent/softphone": Row(AGENT),
    "GET /calls": Row(AGENT),
    "GET /console": Row(AGENT),
    "GET /api/realtime/snapshot": Row(AGENT, citywide=True),
    "WS /ws": Row(AGENT),
    # IVR callback requests and settings, notification recipients
    "GET /api/callback-requests": Row(AGENT),
    "POST /api/callback-requests/{request_id}/finish": Row(AGENT, AGENT_OUT, json={"status": "done"}),
    "POST /api/callback-requests/{request_id}/dial": Row(AGENT, AGENT_OUT),
    "GET /api/ivr/settings": Row(SUPERVISOR),
    "PUT /api/ivr/settings": Row(CITY_SUPERVISOR, json={}),
    "GET /supervisor/ivr": Row(SUPERVISOR),
    "POST /supervisor/ivr": Row(CITY_SUPERVISOR, form={}),
    "GET /api/notify/recipients/{phone}": Row(SUPERVISOR),
    "PUT /api/notify/recipients/{phone}": Row(SUPERVISOR, json={"channel": "sms"}),
    # work orders, callbacks, providers
    "GET /api/service-types": Row(READER),
    "PATCH /api/service-types/{code}": Row(CITY_SUPERVISOR, json={}),
    "GET /supervisor/service-types": Row(SUPERVISOR),
    "POST /supervisor/service-types/{code}": Row(CITY_SUPERVISOR, form={}),
    "GET /api/providers": Row(OVERSEER),
    "POST /api/providers": Row(CITY_SUPERVISOR, json={}),
    "PATCH /api/providers/{provider_id}": Row(SUPERVISOR, SUPERVISOR_OUT, json={"daily_capacity": 12}),
    "GET /supervisor/providers": Row(SUPERVISOR),
    "POST /supervisor/providers": Row(CITY_SUPERVISOR, form={}),
    "GET /api/providers/{provider_id}/staff": Row(SUPERVISOR, SUPERVISOR_OUT),
    "POST /api/providers/{provider_id}/staff": Row(SUPERVISOR, SUPERVISOR_OUT, json={"name": "新员工", "phone": "{fresh_mobile}"}),
    "PATCH /api/provider-staff/{staff_id}": Row(SUPERVISOR, SUPERVISOR_OUT, json={"active": True}),
    "POST /api/workorders": Row(AGENT, AGENT_OUT, json={"service_type": "meal", "elder_id": "{elder}"}),
    "GET /api/workorders": Row(READER),
    "GET /api/workorders/{order_id}": Row(READER, READER_OUT),
    "POST /api/workorders/{order_id}/confirm": Row(AGENT, AGENT_OUT, json={}),
    "POST /api/workorders/{order_id}/cancel": Row(AGENT, AGENT_OUT, json={"note": "矩阵"}),
    "POST /api/workorders/{order_id}/escalate": Row(AGENT, AGENT_OUT, json={"note": "矩阵"}),
    "GET /api/workorders-alerts": Row(SUPERVISOR),
    "GET /api/workorders/{order_id}/photo": Row(READER, READER_OUT),
    "POST /api/workorders/{order_id}/approve-overdraw": Row(SUPERVISOR, SUPERVISOR_OUT, json={}),
    "POST /api/workorders/{order_id}/assign": Row(SUPERVISOR, SUPERVISOR_OUT, json={"provider_id": "{provider}"}),
    "POST /api/workorders/{order_id}/close": Row(SUPERVISOR, SUPERVISOR_OUT, json={"note": "矩阵"}),
    "GET /api/callbacks": Row(AGENT),  # the hotline's work list, with the elders' numbers
    "POST /api/workorders/{order_id}/callback": Row(AGENT, AGENT_OUT, json={"satisfaction": 5}),
    "GET /api/subsidy-ledger": Row(READER, query="elder_id={elder}"),
    "POST /api/subsidy-ledger": Row(SUPERVISOR, SUPERVISOR_OUT, json={"elder_id": "{elder}", "amount": "10.00", "note": "矩阵"}),
    "GET /api/sms-outbox": Row(SUPERVISOR),
    # figures
    "GET /api/stats/workorders": Row(OVERSEER, OVERSEER_OUT, query="district={community}"),
    "GET /api/stats/workorders/export": Row(OVERSEER, OVERSEER_OUT, query="district={community}"),
    "GET /api/stats/kpis": Row(OVERSEER, OVERSEER_OUT, query="district={community}"),
    "GET /api/stats/kpis/export": Row(OVERSEER, OVERSEER_OUT, query="district={community}"),
    "GET /api/stats/wallboard": Row(CITY_SUPERVISOR),
    "GET /api/stats/wallboard/figures": Row(CITY_SUPERVISOR),
    "GET /supervisor": Row(CITY_SUPERVISOR),
    # care reports (care/reports_api.py, agent_ui/care_report.py): each reader's own area, by scope
    "GET /api/care/report": Row(OVERSEER),
    "GET /api/care/report.xlsx": Row(OVERSEER),
    "GET /api/care/overdue": Row(OVERSEER),
    "GET /supervisor/care-report": Row(OVERSEER),
    # the page filters by district: the district around a street or community is not within it
    "GET /supervisor/reports": Row("401 403 ok ok ok 403 ok 404 404 401", OVERSEER_OUT, query="district={district}"),
    # the providers' phone pages: provider staff of district A's provider
    "GET /m/login": Row(PUBLIC),
    "POST /m/login": Row(PUBLIC, form={"phone": "{staff_phone}", "password": PASSWORD}),
    "GET /m/link/{token}": Row("401 401 401 401 401 401 401 401 401 401"),  # a bad link: says why, whoever asks
    "POST /m/link": Row("401 401 401 401 401 401 401 401 401 401", form={"token": "not-a-link"}),  # a bad link: says why, whoever asks
    "POST /m/logout": Row(PUBLIC),
    "GET /m/": Row(PROVIDER),
    "GET /m/orders/{order_id}": Row(PROVIDER, PROVIDER_OUT),
    "POST /m/orders/{order_id}/accept": Row(PROVIDER, PROVIDER_OUT, form={}),
    "POST /m/orders/{order_id}/reject": Row(PROVIDER, PROVIDER_OUT, form={"reason": "矩阵"}),
    "POST /m/orders/{order_id}/checkin": Row(PROVIDER, PROVIDER_OUT, form={}),
    "POST /m/orders/{order_id}/complete": Row(PROVIDER, PROVIDER_OUT, form={"code": "0000"}),
    "GET /m/orders/{order_id}/photo": Row(PROVIDER, PROVIDER_OUT),
    # visitors (巡访员): their managers' API and page, and the visitor's own phone pages
    "GET /api/care/visitors": Row(MANAGER),
    "POST /api/care/visitors": Row(MANAGER, MANAGER_OUT, json={"name": "新巡访员", "phone": "{fresh_mobile}",
                                                               "community_id": "{community}"}),
    "PATCH /api/care/visitors/{visitor_id}": Row(MANAGER, MANAGER_OUT, json={"volunteer": True}),
    "POST /api/care/visitors/{visitor_id}/login-link": Row(MANAGER, MANAGER_OUT, json={}),
    "GET /api/care/visits": Row(MANAGER),
    "POST /api/care/visits/{task_id}/confirm": Row(MANAGER, MANAGER_OUT, json={}),  # in scope: 409, not made yet
    "GET /supervisor/visitors": Row(MANAGER),
    "POST /supervisor/visitors": Row(MANAGER, MANAGER_OUT, form={"name": "新巡访员", "phone": "{fresh_mobile}",
                                                                 "community_id": "{community}"}),
    "POST /supervisor/visitors/{visitor_id}": Row(MANAGER, MANAGER_OUT, form={"action": "link"}),
    "POST /supervisor/visits/{task_id}/confirm": Row(MANAGER, MANAGER_OUT, form={}),
    "GET /v/login": Row(PUBLIC),
    "POST /v/login": Row(PUBLIC, form={"phone": "{visitor_phone}", "password": PASSWORD}),
    "GET /v/link/{token}": Row(NOBODY),  # a bad link: says why, whoever asks
    "POST /v/link": Row(NOBODY, form={"token": "not-a-link"}),
    "POST /v/logout": Row(PUBLIC),
    "GET /v/": Row(NOBODY, visitor="ok"),
    "GET /v/tasks/{task_id}": Row(NOBODY, visitor="ok", visitor_out="404"),
    "POST /v/tasks/{task_id}/take": Row(NOBODY, form={}, visitor="ok", visitor_out="404"),
    "POST /v/tasks/{task_id}/release": Row(NOBODY, form={}, visitor="ok", visitor_out="404"),
    "POST /v/tasks/{task_id}/checkin": Row(NOBODY, form={}, visitor="ok", visitor_out="404"),
    "POST /v/tasks/{task_id}/record": Row(NOBODY, form={"answers.met": "yes"}, visitor="ok", visitor_out="404"),
    "GET /v/tasks/{task_id}/photo": Row(NOBODY, visitor="404"),  # the open visit has no photo yet
    # an elder's own data and its erasure (last: an erasure would take the marker names away)
    "GET /api/privacy/elders/{elder_id}/export": Row(SUPERVISOR, SUPERVISOR_OUT),
    "GET /api/privacy/erasures": Row(SUPERVISOR),
    "POST /api/privacy/elders/{elder_id}/anonymise": Row(SUPERVISOR, SUPERVISOR_OUT, json={"reason": "矩阵"}),
    # proactive care: agents work their tasks; supervisors oversee; the rules and the policy are the city's
    "GET /api/care/tasks/mine": Row(AGENT),
    "GET /api/care/tasks/{task_id}": Row(AGENT, AGENT_OUT),
    "POST /api/care/tasks/{task_id}/dial": Row(AGENT, AGENT_OUT, json={}),
    "POST /api/care/tasks/{task_id}/check": Row(AGENT, AGENT_OUT, json={"answers": {}}),
    "POST /api/care/elders/{elder_id}/overrides": Row(AGENT, AGENT_OUT, json={"reason": "矩阵"}),
    "DELETE /api/care/overrides/{override_id}": Row(AGENT, AGENT_OUT),
    "GET /api/care/elders/{elder_id}/plan": Row(AGENT, AGENT_OUT),
    "GET /api/care/rules": Row(SUPERVISOR),
    "POST /api/care/rules": Row(CITY_SUPERVISOR, json={}),
    "PUT /api/care/rules/{rule_id}": Row(CITY_SUPERVISOR, json={}),
    "DELETE /api/care/rules/{rule_id}": Row(CITY_SUPERVISOR),
    "GET /api/care/settings": Row(SUPERVISOR),
    "PUT /api/care/settings": Row(CITY_SUPERVISOR, json={}),
    "POST /api/care/day": Row(CITY_SUPERVISOR, json={}),
    "GET /api/care/tasks": Row(SUPERVISOR),
    "POST /api/care/tasks/{task_id}/assign": Row(SUPERVISOR, SUPERVISOR_OUT, json={}),
    "GET /api/care/alerts": Row(SUPERVISOR),
    "GET /supervisor/care": Row(SUPERVISOR),
    "POST /supervisor/care/rules": Row(CITY_SUPERVISOR, form={}),
    "POST /supervisor/care/policy": Row(CITY_SUPERVISOR, form={}),
    "POST /supervisor/care/day": Row(CITY_SUPERVISOR, form={}),
    "POST /supervisor/care/hand-over": Row(SUPERVISOR, form={}),
}


def route_keys(app) -> list[str]:
    """"METHOD path" of every route the app serves (HEAD aside), the static files as MOUNT."""
    keys = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Mount):
            keys.append(f"MOUNT {context.path}")
        elif context.methods is None:
            keys.append(f"WS {context.path}")
        else:
            keys += [f"{method} {context.path}" for method in sorted(context.methods) if method != "HEAD"]
    return keys


def test_every_route_has_an_entry(app):
    """A new route fails here until its row says who may use it."""
    keys = route_keys(app)
    assert sorted(set(keys) - set(TABLE)) == [], "routes without an entry in the authorization matrix"
    assert sorted(set(TABLE) - set(keys)) == [], "entries for routes the app no longer has"
    for key, row in TABLE.items():
        for column in (row.inside, row.outside or row.inside):
            assert len(column.split()) == len(ACCOUNTS), key


@dataclass
class Walker:
    client: TestClient
    city: city_module.City
    services: object
    sign_in: object  # account -> its cookies, freshly signed in
    cookies: dict[str, dict] = field(default_factory=dict)

    def values(self, side: str) -> dict:
        s = self.city.sides[side]
        return {"elder": s.elder, "elder_id": s.elder, "call": s.call, "call_id": s.call, "order_id": s.order,
                "provider": s.provider, "provider_id": s.provider, "staff_id": s.staff, "user_id": s.user,
                "request_id": s.request, "override_id": s.override, "rule_id": s.rule,
                "district": s.district, "community": s.community, "phone_number": s.phone_number,
                "staff_phone": s.staff_phone, "visitor_id": s.visitor, "task_id": s.visit, "visitor_phone": s.visitor_phone,
                "code": "meal", "token": "not-a-link", "phone": "13900000009",
                "admin_username": self.city.accounts["admin"].username}

    def fill(self, value, side: str):
        """Placeholders of the column's side; fresh values made anew each time."""
        if isinstance(value, dict):
            return {key: self.fill(item, side) for key, item in value.items()}
        if not isinstance(value, str) or not value.startswith("{"):
            return value
        name = value.strip("{}")
        if name == "fresh":
            return f"user-{fresh_mobile()}"
        if name == "fresh_mobile":
            return fresh_mobile()
        return self.values(side)[name]

    def path(self, template: str, side: str) -> str:
        elder = self.city.sides[side].elder

        def one(match: re.Match) -> str:
            name = match.group(1)
            if name in ("phone_id", "contact_id"):
                return str(self.new_row(name, elder))
            return str(self.values(side)[name])

        return re.sub(r"\{(\w+)\}", one, template)

    def new_row(self, name: str, elder_id: int) -> int:
        with self.services.db.session_scope() as session:
            if name == "phone_id":
                return elders_service.add_phone(session=session, elder_id=elder_id, area_code="0411",
                                                phone_in=PhoneIn(number=fresh_mobile())).id
            return elders_service.add_contact(session=session, elder_id=elder_id, area_code="0411",
                                              contact_in=ContactIn(name="临时", phone=fresh_mobile())).id

    def as_account(self, account: str) -> None:
        self.client.cookies.clear()
        for name, value in self.cookies[account].items():
            self.client.cookies.set(name, value)

    def outcome(self, key: str, row: Row, account: str, side: str) -> tuple[str, str]:
        """(outcome, body text) of one request."""
        self.as_account(account)
        method, template = key.split(" ", 1)
        if method == "WS":
            try:
                with self.client.websocket_connect(template) as socket:
                    return "ok", socket.receive_text()
            except WebSocketDisconnect as closed:
                return {4401: "401", 4403: "403"}.get(closed.code, f"closed {closed.code}"), ""
        if method == "MOUNT":
            method, template = "GET", template + "/vendor/swagger-ui/favicon-32x32.png"
        url = self.path(template, side) + ("?" + self.path(row.query, side) if row.query else "")
        headers = {"X-CSRF-Token": self.client.cookies.get("cc_csrf") or "", "Accept": "*/*"}
        kwargs = {}
        if row.json is not None:
            kwargs["json"] = self.fill(row.json, side)
        elif row.form is not None:
            kwargs["data"] = self.fill(row.form, side)
        response = self.client.request(method, url, headers=headers, follow_redirects=False, **kwargs)
        if key in ENDS_SESSION:  # the account signs in again for the routes after this one
            self.cookies[account] = self.sign_in(account)
        status = response.status_code
        assert status < 500 or status == 503, f"{key} as {account} ({side}): {status} {response.text[:300]}"
        outcome = str(status) if status in (401, 403, 404) else "ok"
        return outcome, response.text if "json" in response.headers.get("content-type", "") or "html" in \
            response.headers.get("content-type", "") or "csv" in response.headers.get("content-type", "") else ""


def sign_in(client, city, account: str, csrf: str) -> dict:
    """The cookies of `account` freshly signed in (sessions are held on the server: a logout ends one)."""
    client.cookies.clear()
    client.cookies.set("cc_csrf", csrf)
    if account == "anonymous":
        return {"cc_csrf": csrf}
    if account in ("provider", "visitor"):
        door, phone = ("/m", city.sides["A"].staff_phone) if account == "provider" else ("/v", city.sides["A"].visitor_phone)
        response = client.post(f"{door}/login", data={"phone": phone, "password": PASSWORD}, headers={"X-CSRF-Token": csrf},
                               follow_redirects=False)
        assert response.status_code == 303, response.text
    else:
        response = client.post("/api/auth/login", json={"username": city.accounts[account].username, "password": PASSWORD})
        assert response.status_code == 200, response.text
    return dict(client.cookies) | {"cc_csrf": csrf}


@pytest.fixture
def walker(settings, services):
    matrix_settings = settings.model_copy(update={"ami_command_timeout": 0.2})
    app = create_app(matrix_settings)
    city = city_module.build(app.state.services, matrix_settings)
    with TestClient(app) as client:
        client.get("/healthz")
        csrf = client.cookies.get("cc_csrf")
        walker = Walker(client=client, city=city, services=app.state.services,
                        sign_in=lambda account: sign_in(client, city, account, csrf))
        walker.cookies = {account: walker.sign_in(account) for account in ACCOUNTS + ["visitor"]}
        yield walker


def test_authorization_matrix(app, walker):
    """Every route × account × side gives the outcome of its row; no answer to a scoped account
    names anything of the other district (except where hotline staff see a caller from anywhere)."""
    assert set(route_keys(app)) == set(TABLE)
    wrong, leaks = [], []
    for key, row in TABLE.items():
        for side, column in (("A", row.inside), ("B", row.outside or row.inside)):
            for account, expected in [*zip(ACCOUNTS, column.split()), ("visitor", row.expected_for_visitor(side))]:
                got, text = walker.outcome(key, row, account, side)
                if got != expected:
                    wrong.append(f"{key} as {account} with {side}'s objects: expected {expected}, got {got}")
                if account in SCOPED and not (row.citywide and account in HOTLINE):
                    named = [marker for marker in MARKERS["B"] if marker in text or json.dumps(marker)[1:-1] in text]
                    if named:
                        leaks.append(f"{key} as {account} with {side}'s objects names {named}")
    assert wrong == [] and leaks == [], "\n".join(wrong + leaks)
