"""Scopes (callcenter/areas/scope.py): what each account's lists, exports, reports and live
frames hold, through the real routes. Who may call which route is tests/test_authorization_matrix.py."""

from __future__ import annotations

import pytest

from callcenter.realtime.events import encode
from callcenter.realtime.hub import Hub, Subscriber
from tests.areas import city as city_module
from tests.areas.city import MARKERS
from tests.conftest import PASSWORD, csrf_headers, login
from callcenter.calls.models import CallRecord
from workorders.models import WorkOrder


@pytest.fixture
def town(services, settings):
    return city_module.build(services, settings)


def as_(client, town, account: str):
    client.cookies.clear()
    login(client, town.accounts[account])
    return client


def names(items: list[dict], key: str = "name") -> set[str]:
    return {item[key] for item in items}


def test_an_officials_lists_and_figures_hold_only_its_area(client, town):
    official = as_(client, town, "district_official")
    assert names(official.get("/api/elders").json()["items"]) == {MARKERS["A"][0]}
    assert {o["number"] for o in official.get("/api/workorders").json()["items"]} == {MARKERS["A"][2]}
    assert names(official.get("/api/providers").json()) == {MARKERS["A"][1]}
    assert official.get("/api/callbacks").status_code == 403  # the hotline's callback list (elders' numbers): not theirs
    report = official.get("/api/stats/workorders").json()
    assert report["district_id"] == town.sides["A"].district and report["total"]["created"] == 1
    export = official.get("/api/stats/workorders/export?table=by_provider").text
    assert MARKERS["A"][1] in export and MARKERS["B"][1] not in export
    kpis = official.get("/api/stats/kpis").json()
    assert kpis["district_id"] == town.sides["A"].district
    city = as_(client, town, "supervisor").get("/api/stats/workorders").json()
    assert city["district_id"] is None and city["total"]["created"] == 2


def test_a_district_supervisors_lists_and_exports_follow_its_scope(client, town):
    boss = as_(client, town, "district_supervisor")
    export = boss.get("/api/elders/export", params={"reason": "quality_check"}).text
    assert MARKERS["A"][0] in export and MARKERS["B"][0] not in export
    assert {c["id"] for c in boss.get("/api/calls").json()["items"]} == {town.sides["A"].call}
    assert {r["id"] for r in boss.get("/api/callback-requests").json()["items"]} == {town.sides["A"].request}
    usernames = names(boss.get("/api/users").json(), "username")
    assert MARKERS["A"][4] in usernames and MARKERS["B"][4] not in usernames
    assert town.accounts["admin"].username not in usernames  # city accounts are the city's to manage
    outbox_orders = {m.get("order_id") for m in boss.get("/api/sms-outbox").json()}
    assert town.sides["B"].order not in outbox_orders


def test_a_street_office_also_checks_the_work_of_the_providers_serving_it(client, town, services):
    """An order of an elder in district B, served by district A's provider: the street office of
    that provider's street reads it; the district and community offices of A do not."""
    with services.db.session_scope() as session:
        template = session.get(WorkOrder, town.sides["B"].order)
        elsewhere = WorkOrder(**template.model_dump(exclude={"id", "number", "provider_id", "photo"}),
                              number="GD20990101-0003", provider_id=town.sides["A"].provider)
        session.add(elsewhere)
        session.flush()
        order_id = elsewhere.id
    street = as_(client, town, "street_official")
    assert order_id in {o["id"] for o in street.get("/api/workorders").json()["items"]}
    assert street.get(f"/api/workorders/{order_id}").status_code == 200
    assert street.get(f"/api/elders/{town.sides['B'].elder}").status_code == 404  # the order, not the elder's profile
    for account in ("district_official", "community_staff"):
        other = as_(client, town, account)
        assert other.get(f"/api/workorders/{order_id}").status_code == 404, account


def test_a_hotline_agent_finds_a_caller_anywhere_but_its_lists_follow_its_scope(client, town):
    agent = as_(client, town, "district_agent")
    b = town.sides["B"]
    found = agent.get(f"/api/elders/lookup?phone={b.phone_number}").json()["matches"]
    assert [m["id"] for m in found] == [b.elder]
    assert b.elder in {e["id"] for e in agent.get("/api/elders?q=乙区").json()["items"]}  # search during a call
    assert {e["id"] for e in agent.get("/api/elders").json()["items"]} == {town.sides["A"].elder}  # the list page
    pop = agent.get(f"/api/calls/{b.call}/pop").json()  # the agent's own call from district B
    assert pop["elder"]["id"] == b.elder
    assert b.call not in {c["id"] for c in agent.get("/api/calls").json()["items"]}
    assert agent.get(f"/api/elders/{b.elder}").status_code == 404
    made = agent.post("/api/workorders", json={"service_type": "meal", "call_id": b.call})
    assert made.status_code == 201, made.text  # an order for the caller on the line
    assert agent.post("/api/workorders", json={"service_type": "meal", "elder_id": b.elder}).status_code == 404


def test_while_a_caller_is_on_the_line_its_elder_is_the_agents_business(client, town, services):
    """A district agent on a live call from district B: the caller's profile, open orders and the
    IVR's emergency draft are in its scope until the call ends."""
    b = town.sides["B"]
    with services.db.session_scope() as session:
        draft = session.get(WorkOrder, b.order)
        draft.status = "draft"
        session.get(CallRecord, b.call).state = "talking"
    agent = as_(client, town, "district_agent")
    assert agent.get(f"/api/elders/{b.elder}").status_code == 200
    assert [o["id"] for o in agent.get(f"/api/workorders?open=true&elder_id={b.elder}").json()["items"]] == [b.order]
    assert agent.post(f"/api/workorders/{b.order}/confirm", json={}).status_code == 200
    assert agent.get(f"/api/subsidy-ledger?elder_id={b.elder}").json() != []
    with services.db.session_scope() as session:
        session.get(CallRecord, b.call).state = "ended"
    assert agent.get(f"/api/elders/{b.elder}").status_code == 404
    assert agent.get(f"/api/workorders?open=true&elder_id={b.elder}").json()["items"] == []
    assert agent.get(f"/api/calls/{b.call}").status_code == 200  # the agent's own call stays readable


def test_official_accounts_sit_at_their_level_and_scoped_managers_stay_in_their_area(client, town):
    a, b = town.sides["A"], town.sides["B"]
    admin = as_(client, town, "admin")

    def create(client, role, area_id):
        return client.post("/api/users", json={"username": f"u-{city_module.fresh_mobile()}", "role": role,
                                               "password": "correct-horse-1", "area_id": area_id})

    assert create(admin, "district_official", None).status_code == 422
    wrong_level = create(admin, "district_official", a.street)
    assert wrong_level.status_code == 422 and "须属于一个区" in wrong_level.text
    made = create(admin, "street_official", a.street)
    assert made.status_code == 201 and made.json()["area_id"] == a.street and made.json()["role_label"] == "街道"
    assert create(admin, "agent", 10**6).status_code == 422
    supervisor = as_(client, town, "supervisor")
    assert create(supervisor, "community_staff", a.community).status_code == 403
    boss = as_(client, town, "district_supervisor")
    assert create(boss, "agent", a.community).status_code == 201
    assert create(boss, "agent", b.district).status_code == 403
    assert create(boss, "agent", None).status_code == 403  # a city account is beyond a district
    assert boss.patch(f"/api/users/{b.user}", json={"display_name": "x"}).status_code == 404
    assert boss.patch(f"/api/users/{a.user}", json={"area_id": b.district}).status_code == 403
    assert boss.patch(f"/api/users/{a.user}", json={"area_id": a.street}).json()["area_id"] == a.street


def test_officials_have_no_hotline_role(client, town):
    """Not a rank above or below agents: no console, no telephony, no accounts."""
    for account in ("district_official", "street_official", "community_staff"):
        official = as_(client, town, account)
        assert official.get("/console").status_code == 403
        assert official.post("/api/agent/state", json={"state": "ready"}).status_code == 403
        assert official.get("/api/users").status_code == 403
        assert official.get("/api/elders/lookup?phone=13800000000").status_code == 403


def test_a_scoped_supervisor_gets_no_live_frame_about_another_agents_call():
    """A call event names no area: a city supervisor gets every one; a scoped supervisor, like an
    agent, only those of its own extension."""
    from callcenter.realtime.events import QueueWaiting

    hub = Hub("redis://unused")
    city = Subscriber(user_id=1, role="supervisor", extension=None)
    scoped = Subscriber(user_id=2, role="supervisor", extension=None, city=False)
    scoped_agent = Subscriber(user_id=3, role="agent", extension="8002", city=False)
    for subscriber in (city, scoped, scoped_agent):
        hub.add(subscriber)
    hub.dispatch('{"type": "call.answered", "call_id": "x", "elder_id": 7, "agent": "8001", "queue": "hotline", "state": "talking"}')
    hub.dispatch('{"type": "call.answered", "call_id": "y", "elder_id": 8, "agent": "8002", "queue": "hotline", "state": "talking"}')
    hub.dispatch(encode(QueueWaiting(queue="hotline", waiting=0)))
    assert city.queue.qsize() == 3 and scoped.queue.qsize() == 1 and scoped_agent.queue.qsize() == 2


def test_a_scoped_supervisors_snapshot_holds_no_other_agents_call(client, town):
    snapshot = as_(client, town, "district_supervisor").get("/api/realtime/snapshot").json()
    assert snapshot["calls"] == []
    assert [c["id"] for c in as_(client, town, "supervisor").get("/api/realtime/snapshot").json()["calls"]] == [town.sides["A"].call]


def test_the_city_wide_pages_and_settings_are_the_citys(client, town):
    boss = as_(client, town, "district_supervisor")
    assert boss.get("/api/stats/wallboard").status_code == 403
    assert boss.patch("/api/service-types/meal", json={"accept_minutes": 30}).status_code == 403
    assert "仅限市级账号" in boss.get("/supervisor").text


def test_an_official_signs_in_to_its_reports(client, town):
    client.get("/login")
    official = town.accounts["street_official"]
    signed_in = client.post("/login", data={"username": official.username, "password": PASSWORD}, headers=csrf_headers(client),
                            follow_redirects=False)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/supervisor/reports"
    page = client.get("/supervisor/reports", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "统计报表" in page.text and "坐席工作台" not in page.text


def test_an_official_sees_only_the_card_even_where_a_callback_is_due(client, town, services):
    """Purpose-bound access is the hotline's: an order waiting for its callback opens the profile
    to agents, never to an area official reading its area."""
    from workorders.models import OrderStatus, WorkOrder

    with services.db.session_scope() as session:
        order = session.get(WorkOrder, town.sides["A"].order)
        order.status = OrderStatus.COMPLETED
        session.add(order)
    for role in ("district_official", "street_official", "community_staff"):
        shown = as_(client, town, role).get(f"/api/elders/{town.sides['A'].elder}").json()
        assert shown["access"]["level"] == "card" and "emergency_contacts" not in shown, role


def test_a_scoped_account_registers_and_moves_elders_only_within_its_area(client, town):
    agent = as_(client, town, "district_agent")
    other = town.sides["B"].community
    created = agent.post("/api/elders", json={"name": "跨区老人", "community_id": other})
    assert created.status_code == 422 and "管辖范围" in created.text
    moved = agent.patch(f"/api/elders/{town.sides['A'].elder}", json={"community_id": other})
    assert moved.status_code == 422 and "管辖范围" in moved.text


def test_an_id_number_registered_in_another_district_is_a_clear_refusal_not_a_server_error(client, town, services):
    from callcenter.elders import service as elders_service
    from callcenter.elders.schemas import ElderIn
    from tests.conftest import id_number

    number = id_number(sequence=77)
    with services.db.session_scope() as session:
        elders_service.create(session=session, sealer=services.sealer, area_code="0411",
                              elder_in=ElderIn(name="乙区登记", id_number=number, community_id=town.sides["B"].community))
    boss = as_(client, town, "district_supervisor")
    response = boss.post("/api/elders", json={"name": "甲区重复", "id_number": number, "community_id": town.sides["A"].community})
    assert response.status_code == 422 and "已登记" in response.text


def test_an_admin_makes_an_account_a_district_official_by_patch(client, town, services):
    from tests.conftest import make_user

    agent = make_user(services, "agent")
    admin = as_(client, town, "admin")
    response = admin.patch(f"/api/users/{agent.id}", json={"role": "district_official", "area_id": town.sides["A"].district})
    assert response.status_code == 200, response.text
    assert response.json()["role"] == "district_official"
