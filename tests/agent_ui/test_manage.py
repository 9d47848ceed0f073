"""Supervisor management pages through HTTP (forms as the browser posts them) and, for queue
membership, through the real bridge to the AMI simulator; the agents page also in Chromium."""

from __future__ import annotations


import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from callcenter.auth.models import User
from tests.browser import screenshot, sign_in
from tests.conftest import PASSWORD, csrf_headers, make_user
from tests.telephony import LiveTelephony, agent_row, wait_for
from workorders.models import Provider, ServiceType

PAGES = ("/supervisor/agents", "/supervisor/service-types", "/supervisor/providers", "/supervisor/ivr")


def post(client, path: str, data: dict):
    client.get(PAGES[0]) if "cc_csrf" not in client.cookies else None
    return client.post(path, data=data, headers=csrf_headers(client), follow_redirects=False)


def user_named(services, username) -> User:
    with services.db.session_scope() as session:
        return session.exec(select(User).where(User.username == username)).one()


def test_agents_cannot_open_management_pages_or_post_to_them(console, agent):
    for path in PAGES:
        assert console.get(path).status_code == 403, path
    assert post(console, "/supervisor/agents", {"username": "x", "password": "long-password"}).status_code == 403
    assert post(console, f"/supervisor/agents/{agent.id}", {"action": "deactivate"}).status_code == 403
    assert post(console, "/supervisor/service-types/meal", {"accept_minutes": 1, "arrive_minutes": 1, "complete_minutes": 1}).status_code == 403
    assert post(console, "/supervisor/ivr", {"periods": "00:00-24:00"}).status_code == 403


def test_supervisor_creates_resets_and_deactivates_an_agent(app, services, supervisor_client):
    made = post(supervisor_client, "/supervisor/agents", {"username": "lixiu", "display_name": "李秀", "password": "long-password-1",
                                                         "role": "agent", "sip_extension": "8009", "queues": "hotline emergency",
                                                         "queue_penalty": "2"})
    assert made.status_code == 303 and "lixiu" in supervisor_client.get(made.headers["location"]).text
    created = user_named(services, "lixiu")
    assert (created.display_name, created.sip_extension, created.queues, created.queue_penalty) == ("李秀", "8009", ["hotline", "emergency"], 2)

    short = post(supervisor_client, "/supervisor/agents", {"username": "x2", "password": "short", "role": "agent"})
    assert short.status_code == 422 and "密码至少" in short.text
    boss = post(supervisor_client, "/supervisor/agents", {"username": "boss", "password": "long-password-1", "role": "admin"})
    assert boss.status_code == 403 and "只有管理员可以管理班长、管理员和区、街道、社区账号" in boss.text
    bad_queue = post(supervisor_client, f"/supervisor/agents/{created.id}", {"action": "queues", "queues": "热线", "queue_penalty": "0"})
    assert bad_queue.status_code == 422 and "队列名只能含字母" in bad_queue.text
    assert user_named(services, "lixiu").queues == ["hotline", "emergency"]  # unchanged

    assert post(supervisor_client, f"/supervisor/agents/{created.id}", {"action": "password", "password": "new-password-22"}).status_code == 303
    with TestClient(app) as browser:
        assert browser.post("/api/auth/login", json={"username": "lixiu", "password": "new-password-22"}).status_code == 200
    assert post(supervisor_client, f"/supervisor/agents/{created.id}", {"action": "deactivate"}).status_code == 303
    with TestClient(app) as browser:
        assert browser.post("/api/auth/login", json={"username": "lixiu", "password": "new-password-22"}).status_code == 401


@pytest.fixture
def telephony(settings, services):
    live = LiveTelephony(settings, services)
    yield live
    live.close()


def test_queue_membership_and_penalty_reach_asterisk_through_the_bridge(services, telephony, console, agent, supervisor_client):
    assert console.post("/api/agent/state", json={"state": "ready"}).status_code == 200
    member = telephony.member("8001")
    assert member.in_queue and member.other_queues == {}
    wait_for(lambda: (row := agent_row(services, "8001")) and row.queues == ["hotline"], message="agent not in hotline")

    changed = post(supervisor_client, f"/supervisor/agents/{agent.id}", {"action": "queues", "queues": "hotline emergency",
                                                                           "queue_penalty": "3"})
    assert changed.status_code == 303, changed.text
    added = [a for a in telephony.actions("QueueAdd") if a.get("Queue") == "emergency"]
    assert [(a.get("Interface"), a.get("Penalty"), a.get("Paused")) for a in added] == [("PJSIP/8001", "3", "false")]
    assert [(a.get("Queue"), a.get("Penalty")) for a in telephony.actions("QueuePenalty")] == [("hotline", "3")]
    assert (member.other_queues, member.penalty) == ({"emergency": 3}, 3)
    wait_for(lambda: sorted(agent_row(services, "8001").queues) == ["emergency", "hotline"], message="bridge did not see the join")
    assert "emergency hotline" in supervisor_client.get("/supervisor/agents").text  # the live queues, as Asterisk reports them

    dropped = post(supervisor_client, f"/supervisor/agents/{agent.id}", {"action": "queues", "queues": "emergency", "queue_penalty": "3"})
    assert dropped.status_code == 303
    assert [a.get("Queue") for a in telephony.actions("QueueRemove")] == ["hotline"] and not member.in_queue
    # Going offline and ready again uses the stored membership.
    assert console.post("/api/agent/state", json={"state": "offline"}).status_code == 200
    assert member.other_queues == {} and not member.in_queue
    assert console.post("/api/agent/state", json={"state": "ready"}).status_code == 200
    assert member.other_queues == {"emergency": 3} and not member.in_queue


@pytest.fixture
def meal_restored(services):
    """Service types are reference data kept between tests: put the meal's SLA back."""
    with services.db.session_scope() as session:
        before = session.get(ServiceType, "meal").model_dump()
    yield
    with services.db.session_scope() as session:
        row = session.get(ServiceType, "meal")
        for key, value in before.items():
            setattr(row, key, value)
        session.add(row)


def test_service_type_slas_are_edited_and_checked(services, supervisor_client, console, meal_restored):
    form = {"name": "助餐", "accept_minutes": "40", "arrive_minutes": "100", "complete_minutes": "200", "unit_cost": "16.50",
            "government_purchased": "true", "active": "true"}
    assert post(supervisor_client, "/supervisor/service-types/meal", form).status_code == 303
    with services.db.session_scope() as session:
        meal = session.get(ServiceType, "meal")
        assert (meal.accept_minutes, meal.arrive_minutes, meal.complete_minutes, str(meal.unit_cost)) == (40, 100, 200, "16.50")
    backwards = post(supervisor_client, "/supervisor/service-types/meal", form | {"arrive_minutes": "20"})
    assert backwards.status_code == 422 and "接单 ≤ 上门 ≤ 完成" in backwards.text
    bad_cost = post(supervisor_client, "/supervisor/service-types/meal", form | {"unit_cost": "十元"})
    assert bad_cost.status_code == 422 and "单价应为数字" in bad_cost.text
    assert supervisor_client.patch("/api/service-types/meal", json={"accept_minutes": 0}).status_code == 422
    assert console.patch("/api/service-types/meal", json={"accept_minutes": 10}).status_code == 403
    with services.db.session_scope() as session:
        assert session.get(ServiceType, "meal").accept_minutes == 40  # the refusals changed nothing


def test_providers_are_created_and_suspended_with_a_reason(services, supervisor_client):
    from callcenter.areas import service as areas_service

    with services.db.session_scope() as session:
        district = areas_service.get_or_create(session=session, name="中山区", parent=None)
        street = areas_service.get_or_create(session=session, name="桃源街道", parent=district).id
    form = {"name": "康乐居家服务中心", "contact_name": "赵经理", "phone": "13904119999", "daily_capacity": "30",
            "contract_start": "2026-01-01", "contract_end": "2026-12-31", "service_types": ["meal", "cleaning"],
            "coverage": [str(street)], "status": "active"}
    assert post(supervisor_client, "/supervisor/providers", form).status_code == 303
    with services.db.session_scope() as session:
        provider = session.exec(select(Provider).where(Provider.name == "康乐居家服务中心")).one()
    assert (provider.phone, provider.service_types, provider.coverage, provider.daily_capacity) == (
        "+8613904119999", ["meal", "cleaning"], [street], 30)
    assert "桃源街道" in supervisor_client.get("/supervisor/providers").text

    edit = form | {"id": str(provider.id), "status": "suspended"}
    no_reason = post(supervisor_client, "/supervisor/providers", edit)
    assert no_reason.status_code == 422 and "请填写暂停派单的原因" in no_reason.text
    backwards = post(supervisor_client, "/supervisor/providers", edit | {"contract_end": "2025-12-31", "status_reason": "x"})
    assert backwards.status_code == 422 and "合同结束日期早于开始日期" in backwards.text
    assert post(supervisor_client, "/supervisor/providers", edit | {"status_reason": "投诉核查中"}).status_code == 303
    with services.db.session_scope() as session:
        provider = session.get(Provider, provider.id)
    assert (provider.status, provider.status_reason) == ("suspended", "投诉核查中")


def test_agents_page_in_chromium(page, live_server, services):
    supervisor = make_user(services, "supervisor")
    sign_in(page, live_server, "/supervisor/agents", supervisor, PASSWORD)
    form = page.locator("#new-agent")
    form.locator("input[name=username]").fill("zhoumin")
    form.locator("input[name=display_name]").fill("周敏")
    form.locator("input[name=password]").fill("long-password-1")
    form.locator("input[name=sip_extension]").fill("8010")
    form.locator("input[name=queues]").fill("hotline emergency")
    form.locator("button[type=submit]").click()
    assert page.inner_text("#manage-ok") == "已创建账号：zhoumin"
    row = page.locator("#agents tr[data-username=zhoumin]")
    assert row.locator("input[name=queues]").input_value() == "hotline emergency"
    row.locator(".queues-form input[name=queue_penalty]").fill("5")
    row.locator(".queues-form button").click()
    assert page.inner_text("#manage-ok") == "zhoumin：已更新队列与优先级"
    assert user_named(services, "zhoumin").queue_penalty == 5
    screenshot(page, "manage-agents")
