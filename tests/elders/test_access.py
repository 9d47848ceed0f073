"""Purpose-bound access to profiles through HTTP (issue 17, PIPL): the full profile only while the
user has a call or task open with the elder, or (supervisors) with a stated reason; otherwise the
reduced card; every view audited with its reason."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from callcenter.audit.models import AuditLog
from callcenter.calls.models import CallRecord
from callcenter.elders import service as elders_service
from callcenter.elders.schemas import ContactIn, ElderIn, PhoneIn
from callcenter.timeutil import utcnow
from ivr.models import CallbackRequest
from tests.conftest import id_number, login, make_user
from workorders.models import WorkOrder

ID = id_number(date(1942, 2, 14), "male", 31)
SECRETS = ("中山路12号3单元402室", "高血压", "青霉素", "张伟", "夜间独自在家", ID[-4:])


def add_zhang(services) -> int:
    """An elder with everything the card must not show: address, health, contact, notes, ID."""
    with services.db.session_scope() as session:
        elder_in = ElderIn(name="张大爷", id_number=ID, address="中山路12号3单元402室", chronic_conditions="高血压", allergies="青霉素",
                           ability_level="moderate", risk_flags=["fall_history"], notes="夜间独自在家",
                           phones=[PhoneIn(number="13800138000")], emergency_contacts=[ContactIn(name="张伟", relation="son", phone="15840112233")])
        return elders_service.create(session=session, elder_in=elder_in, sealer=services.sealer, area_code="0411").id


def add_call(services, agent, elder_id: int, *, state: str = "talking", ended_ago: timedelta | None = None,
             wrapup_done: bool = False) -> int:
    """A call as the bridge records it: held by `agent`, linked to the elder."""
    now = utcnow()
    with services.db.session_scope() as session:
        call = CallRecord(linkedid=f"1795{now.timestamp()}", direction="inbound", state=state, started_at=now - timedelta(hours=2),
                          caller_e164="+8613800138000", elder_id=elder_id, agent_extension=agent.sip_extension, agent_user_id=agent.id)
        if ended_ago is not None:
            call.ended_at = now - ended_ago
            call.wrapup_ended_at = now if wrapup_done else None
        session.add(call)
        session.flush()
        return call.id


def views(services, elder_id: int) -> list[tuple[str, dict]]:
    with services.db.session_scope() as session:
        rows = session.exec(select(AuditLog).where(AuditLog.elder_id == elder_id, AuditLog.action.in_(("view", "view_card")))
                            .order_by(AuditLog.id))
        return [(row.action, row.detail) for row in rows]


def assert_card(body: dict) -> None:
    assert body["access"]["level"] == "card"
    assert body["name"] == "张大爷" and body["age"] is not None and body["active"] is True
    assert [phone["masked"] for phone in body["phones"]] == ["138****8000"]
    for key in ("address", "chronic_conditions", "allergies", "ability_level", "risk_flags", "emergency_contacts", "notes", "id_number"):
        assert key not in body, key
    assert not any(secret in str(body) for secret in SECRETS)


def test_an_agent_without_an_open_call_gets_the_reduced_card(console, services):
    elder_id = add_zhang(services)
    body = console.get(f"/api/elders/{elder_id}").json()
    assert_card(body)
    assert body["access"]["reasons"] == {}  # an agent cannot state a reason …
    assert_card(console.get(f"/api/elders/{elder_id}", params={"reason": "search"}).json())  # … nor use one
    assert views(services, elder_id) == [("view_card", {"via": "api"})] * 2


def test_with_the_call_open_the_agent_gets_the_full_profile_audited_with_the_call(console, agent, services):
    elder_id = add_zhang(services)
    call_id = add_call(services, agent, elder_id)
    body = console.get(f"/api/elders/{elder_id}").json()
    assert body["access"] == {"level": "full", "reason": "call", "reason_label": "通话中", "call_id": call_id}
    assert body["address"] == "中山路12号3单元402室" and body["emergency_contacts"][0]["name"] == "张伟"
    assert body["id_number"] == ID[:4] + "*" * 10 + ID[-4:]  # the full profile still masks the ID for agents
    assert views(services, elder_id) == [("view", {"via": "api", "reason": "call", "call_id": call_id})]


def test_the_call_stays_open_through_the_wrapup_only(console, agent, services):
    elder_id = add_zhang(services)
    call_id = add_call(services, agent, elder_id, state="ended", ended_ago=timedelta(seconds=20))
    assert console.get(f"/api/elders/{elder_id}").json()["access"]["call_id"] == call_id  # wrapping up
    with services.db.session_scope() as session:
        session.get(CallRecord, call_id).wrapup_ended_at = utcnow()
    assert_card(console.get(f"/api/elders/{elder_id}").json())  # wrap-up over
    add_call(services, agent, elder_id, state="ended", ended_ago=timedelta(hours=1))  # wrap-up never recorded, long ago
    assert_card(console.get(f"/api/elders/{elder_id}").json())


def test_another_agents_call_gives_no_purpose(app, agent, services):
    elder_id = add_zhang(services)
    add_call(services, agent, elder_id)
    with TestClient(app) as client:
        login(client, make_user(services, "agent", sip_extension="8002"))
        assert_card(client.get(f"/api/elders/{elder_id}").json())


def test_an_open_order_of_the_agent_is_a_purpose_until_it_is_closed(app, console, services):
    elder_id = add_zhang(services)
    created = console.post("/api/workorders", json={"elder_id": elder_id, "service_type": "meal", "self_paid": True})
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    body = console.get(f"/api/elders/{elder_id}").json()
    assert (body["access"]["reason"], body["access"]["order_id"]) == ("order", order_id)
    with TestClient(app) as client:  # not theirs, not on the shared list (only completed orders wait there)
        login(client, make_user(services, "agent"))
        assert_card(client.get(f"/api/elders/{elder_id}").json())
        with services.db.session_scope() as session:
            session.get(WorkOrder, order_id).status = "completed"  # waiting for any agent's callback (回访)
        assert client.get(f"/api/elders/{elder_id}").json()["access"]["reason"] == "order"
    assert console.post(f"/api/workorders/{order_id}/escalate", json={"note": "投诉"}).status_code == 200
    assert console.get(f"/api/elders/{elder_id}").json()["access"]["reason"] == "order"  # escalated: still open, still theirs
    with services.db.session_scope() as session:
        session.get(WorkOrder, order_id).status = "closed"
    assert_card(console.get(f"/api/elders/{elder_id}").json())


def test_a_due_callback_request_is_a_purpose_for_any_agent(console, services):
    elder_id = add_zhang(services)
    with services.db.session_scope() as session:
        request = CallbackRequest(caller_number="13800138000", caller_e164="+8613800138000", elder_id=elder_id, reason="busy",
                                  due_at=utcnow() + timedelta(hours=1))
        session.add(request)
        session.flush()
        request_id = request.id
    assert_card(console.get(f"/api/elders/{elder_id}").json())  # not due yet: not on the list
    with services.db.session_scope() as session:
        session.get(CallbackRequest, request_id).due_at = utcnow() - timedelta(minutes=1)
    body = console.get(f"/api/elders/{elder_id}").json()
    assert (body["access"]["reason"], body["access"]["callback_request_id"]) == ("callback", request_id)


def test_a_supervisor_sees_the_full_profile_with_a_stated_reason(supervisor_client, services):
    elder_id = add_zhang(services)
    body = supervisor_client.get(f"/api/elders/{elder_id}").json()
    assert_card(body)
    assert body["access"]["reasons"]["search"] == "班长查询核实"
    full = supervisor_client.get(f"/api/elders/{elder_id}", params={"reason": "search"}).json()
    assert full["access"]["reason"] == "search" and full["allergies"] == "青霉素"
    bad = supervisor_client.get(f"/api/elders/{elder_id}", params={"reason": "curious"})
    assert bad.status_code == 422 and "查看理由无效" in bad.text
    assert views(services, elder_id) == [("view_card", {"via": "api"}), ("view", {"via": "api", "reason": "search"})]


def test_lookup_and_search_show_cards(console, services):
    add_zhang(services)
    match = console.get("/api/elders/lookup", params={"phone": "13800138000"}).json()["matches"][0]
    assert match["relation_label"] == "本人" and match["phones"][0]["masked"] == "138****8000"
    assert not any(secret in str(match) for secret in SECRETS)
    found = console.get("/api/elders", params={"q": "张大爷"}).json()["items"]
    assert [item["name"] for item in found] == ["张大爷"] and not any(secret in str(found) for secret in SECRETS)


@pytest.mark.parametrize("role", ["agent", "supervisor"])
def test_the_profile_page_shows_the_card_without_a_purpose(client, services, role):
    elder_id = add_zhang(services)
    login(client, make_user(services, role))
    page = client.get(f"/elders/{elder_id}")
    assert page.status_code == 200 and "张大爷" in page.text and "138****8000" in page.text
    assert not any(secret in page.text for secret in SECRETS)
    assert ('id="reason-form"' in page.text) is (role == "supervisor")
    if role == "supervisor":
        full = client.get(f"/elders/{elder_id}", params={"reason": "complaint"})
        assert "中山路12号3单元402室" in full.text and "投诉处理" in full.text
        assert views(services, elder_id)[-1] == ("view", {"via": "page", "reason": "complaint"})
