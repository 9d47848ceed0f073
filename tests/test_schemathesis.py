"""Schemathesis over the whole HTTP API (issue 17): every operation of `app.openapi()`, as each
role and anonymously, a bounded number of generated requests each, in process (a TestClient, no
server). Fails on any 500 and on a response that contradicts its declared schema.

Adding a role is one line in ROLES. The schema is read from `app.openapi()`, not from
/openapi.json, so it does not matter whether that route needs a login.
"""

from __future__ import annotations

import os

import pytest
import requests
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from callcenter.areas import service as areas_service
from callcenter.auth.models import OFFICIAL_LEVEL
from tests.conftest import login, make_user

ROLES = ["agent", "supervisor", "admin", "street_official", None]  # None: nobody signed in
# Per operation and role: 68 operations × 4 roles stay near a minute per database on two cores.
# SCHEMATHESIS_EXAMPLES=200 for a deeper search by hand.
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "6"))
CHECKS = [not_a_server_error, response_schema_conformance]

# Only what needs a live AMI bridge is left out: these wait up to AMI_COMMAND_TIMEOUT for the bridge
# to answer a telephony command (hang up, transfer, pause, originate a callback), which no test app runs.
NEEDS_BRIDGE = [
    ("POST", "/api/calls/{call_id}/hangup"),
    ("POST", "/api/calls/{call_id}/transfer"),
    ("POST", "/api/agent/state"),
    ("POST", "/api/agent/callback"),
    ("POST", "/api/callback-requests/{request_id}/dial"),
]


@pytest.fixture(scope="module")
def api_schema(app):
    schema = schemathesis.openapi.from_dict(app.openapi())
    for method, path in NEEDS_BRIDGE:
        schema = schema.exclude(method=method, path=path)
    return schema


def account(services, role: str):
    """A user of `role`; an area official sits at an area of its level (中山区 › 桃源街道 › 桃源社区)."""
    level = OFFICIAL_LEVEL.get(role)
    if level is None:
        return make_user(services, role)
    with services.db.session_scope() as session:
        area = None
        for name, area_level in (("中山区", "district"), ("桃源街道", "street"), ("桃源社区", "community")):
            area = areas_service.get_or_create(session=session, name=name, parent=area)
            if area_level == level:
                break
        area_id = area.id
    return make_user(services, role, area_id=area_id)


@pytest.fixture(scope="module")
def clients(app):
    """One signed-in client per role (and one anonymous), the app's lifespan running meanwhile."""
    services = app.state.services
    opened = {}
    with TestClient(app) as anonymous:
        anonymous.get("/healthz")  # the CSRF cookie
        opened[None] = anonymous
        for role in ROLES:
            if role is not None:
                client = TestClient(app)
                login(client, account(services, role))
                client.get("/api/auth/me")
                opened[role] = client
        for client in opened.values():
            client.signed_in_cookies = dict(client.cookies)
        yield opened


def send(client: TestClient, case) -> object:
    """The case as schemathesis serializes it (through requests' encoder, so multipart and odd
    bodies are byte-exact), sent with the role's session cookie and the CSRF header our pages add."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    kwargs.pop("cookies", None)
    client.cookies.clear()  # the role's own cookies, whatever an earlier response set or deleted
    client.cookies.update(client.signed_in_cookies)
    prepared = requests.Request(**kwargs).prepare()
    headers = dict(prepared.headers)
    token = client.cookies.get("cc_csrf")
    if token:
        headers.setdefault("X-CSRF-Token", token)
    body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
    return client.request(prepared.method, prepared.url, headers=headers, content=body)


# Run last for each role: they can end the role's own session (signing out, an admin deactivating or
# demoting the account it fuzzes with), which would leave every later operation answering 401.
LAST = ["POST /api/auth/logout", "PATCH /api/users/{user_id}"]


def first_failure(operation, client: TestClient, statuses: list[int]) -> str | None:
    """Run the operation's generated cases (valid and invalid inputs) through `client`; the first
    failure, with its response. Cases are not shrunk: the failure shows the request as sent."""
    found: list[str] = []
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate], database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        if found:
            return
        response = send(client, case)
        statuses.append(response.status_code)
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:  # schemathesis's FailureGroup
            found.append(f"{response.status_code} {response.text[:300]}\n{exc}"[:2000])

    run()
    return found[0] if found else None


def failures_of(schema, client: TestClient, statuses: list[int]) -> dict[str, str]:
    """The first failure of each operation, by its label; every status seen goes to `statuses`."""
    failures = {}
    operations = sorted((result.ok() for result in schema.get_all_operations()), key=lambda op: op.label in LAST)
    for operation in operations:
        failure = first_failure(operation, client, statuses)
        if failure is not None:
            failures[operation.label] = failure
    return failures


def api_test_as(role: str | None):
    def test(api_schema, clients):
        statuses: list[int] = []
        failures = failures_of(api_schema, clients[role], statuses)
        assert not failures, "\n\n".join(f"{label}: {text}" for label, text in failures.items())
        if role is not None:  # the run really was signed in: most operations answered more than 401
            assert statuses.count(401) < len(statuses) / 4, f"{role}: {statuses.count(401)} of {len(statuses)} answers were 401"

    return test


for _role in ROLES:  # one test per role
    globals()[f"test_api_as_{_role or 'anonymous'}"] = api_test_as(_role)
