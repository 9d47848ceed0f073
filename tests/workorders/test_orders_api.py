"""Work orders through HTTP: the catalog, providers, orders created from a call or for an elder,
numbers, SLA deadlines, and the state machine refusing what it does not allow."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from fastapi.testclient import TestClient
from sqlmodel import select

from callcenter.calls.models import CallRecord
from callcenter.timeutil import as_utc, today_in, utcnow
from callcenter.elders.models import Elder
from tests.calls import test_bridge
from tests.conftest import login, make_user
from workorders import jobs
from workorders.models import WorkOrder, WorkOrderEvent


def add_elder(services, name="张大爷", number="13800138000", subsidy="500") -> int:
    """An elder with a subsidy balance (government-purchased services draw on it)."""
    elder_id = test_bridge.add_elder(services, name=name, number=number)
    with services.db.session_scope() as session:
        session.get(Elder, elder_id).subsidy_balance = Decimal(subsidy)
    return elder_id


def answered_call(services, agent, elder_id: int | None) -> int:
    with services.db.session_scope() as session:
        call = CallRecord(linkedid=f"1795{utcnow().timestamp()}", direction="inbound", state="talking", started_at=utcnow(),
                          caller_e164="+8613800138000", elder_id=elder_id, agent_extension=agent.sip_extension,
                          agent_user_id=agent.id)
        session.add(call)
        session.flush()
        return call.id


def test_the_catalog_has_the_five_helps_and_nursing(console):
    types = {t["code"]: t for t in console.get("/api/service-types").json()}
    assert [types[c]["name"] for c in ("meal", "bathing", "cleaning", "emergency", "medical_escort", "nursing")] == \
        ["助餐", "助浴", "助洁", "助急", "助医", "护理"]
    assert types["emergency"]["accept_minutes"] < types["meal"]["accept_minutes"]
    assert {"companionship", "repair", "consultation"} <= set(types)


def test_an_order_from_a_call_is_numbered_with_its_deadlines_and_history(services, console, agent):
    elder_id = add_elder(services)
    call_id = answered_call(services, agent, elder_id)
    before = utcnow()
    response = console.post("/api/workorders", json={"call_id": call_id, "service_type": "meal", "description": "每天午餐一份，少盐"})
    assert response.status_code == 201, response.text
    order = response.json()
    today = today_in(services.settings.tz)
    assert order["number"] == f"GD{today:%Y%m%d}-0001"
    assert (order["elder_id"], order["call_id"], order["status_label"], order["service_name"]) == (elder_id, call_id, "待派单", "助餐")
    assert [(e["actor"], e["to_label"], e["note"]) for e in order["events"]] == [("王芳", "待派单", "来电建单")]
    with services.db.session_scope() as session:
        row = session.exec(select(WorkOrder)).one()
    assert timedelta(minutes=60) <= as_utc(row.accept_due) - before < timedelta(minutes=61)
    assert as_utc(row.arrive_due) - as_utc(row.created_at) == timedelta(minutes=180)

    second = console.post("/api/workorders", json={"elder_id": elder_id, "service_type": "cleaning"}).json()
    assert second["number"] == f"GD{today:%Y%m%d}-0002" and second["events"][0]["note"] == "建单"
    listed = console.get(f"/api/workorders?elder_id={elder_id}&open=true").json()
    assert [o["number"] for o in listed["items"]] == [second["number"], order["number"]]


def test_bad_orders_are_refused_and_nothing_is_written(app, services, console, agent):
    elder_id = add_elder(services)
    bad_type = console.post("/api/workorders", json={"elder_id": elder_id, "service_type": "massage"})
    assert bad_type.status_code == 422 and "助餐" in bad_type.json()["message"]
    unknown_elder = console.post("/api/workorders", json={"call_id": answered_call(services, agent, None), "service_type": "meal"})
    assert unknown_elder.status_code == 409 and "尚未关联老人档案" in unknown_elder.json()["detail"]
    window = console.post("/api/workorders", json={"elder_id": elder_id, "service_type": "meal",
                                                   "window_start": "2026-11-23T12:00:00+08:00", "window_end": "2026-11-23T11:00:00+08:00"})
    assert window.status_code == 422
    other = make_user(services, "agent", sip_extension="8002")
    call_id = answered_call(services, agent, elder_id)
    with TestClient(app) as client:
        login(client, other)
        assert client.post("/api/workorders", json={"call_id": call_id, "service_type": "meal"}).status_code == 403
    with services.db.session_scope() as session:
        assert session.exec(select(WorkOrder)).all() == []


def test_the_state_machine_refuses_illegal_moves_and_records_each_one(services, console):
    elder_id = add_elder(services)
    order = console.post("/api/workorders", json={"elder_id": elder_id, "service_type": "bathing"}).json()
    escalated = console.post(f"/api/workorders/{order['id']}/escalate", json={"note": "老人独居，急需"})
    assert escalated.status_code == 200 and escalated.json()["status_label"] == "已升级督办"
    cancelled = console.post(f"/api/workorders/{order['id']}/cancel", json={"note": "家属已自行安排"})
    assert cancelled.status_code == 200
    again = console.post(f"/api/workorders/{order['id']}/cancel", json={"note": "重复"})
    assert again.status_code == 409
    assert again.json()["detail"] == f"工单 {order['number']} 当前状态为“已取消”，不能变更为“已取消”"
    assert console.post(f"/api/workorders/{order['id']}/cancel", json={"note": ""}).status_code == 422  # a reason is required
    with services.db.session_scope() as session:
        events = session.exec(select(WorkOrderEvent).order_by(WorkOrderEvent.id)).all()
    assert [(e.from_status, e.to_status, e.note) for e in events] == [
        (None, "new", "建单"), ("new", "escalated", "老人独居，急需"), ("escalated", "cancelled", "家属已自行安排")]
    assert console.get(f"/api/workorders/{order['id']}").json()["status"] == "cancelled"


def test_providers_are_managed_by_supervisors_with_checked_fields(app, services, console):
    assert console.get("/api/providers").status_code == 403
    with TestClient(app) as client:
        login(client, make_user(services, "supervisor"))
        payload = {"name": "幸福里助餐中心", "contact_name": "李经理", "phone": "0411-8888 1234", "service_types": ["meal", "cleaning"],
                   "daily_capacity": 40, "contract_start": "2026-01-01", "contract_end": "2026-12-31"}
        created = client.post("/api/providers", json=payload)
        assert created.status_code == 201 and created.json()["phone"] == "+8641188881234"
        assert created.json()["status_label"] == "合作中"
        assert client.post("/api/providers", json=payload).status_code == 409
        bad = client.post("/api/providers", json=payload | {"name": "另一家", "phone": "12", "service_types": ["spa"],
                                                            "contract_end": "2025-01-01"})
        assert bad.status_code == 422
        assert {d["loc"][-1] for d in bad.json()["detail"]} == {"phone", "service_types", "contract_end"}
        no_reason = client.patch(f"/api/providers/{created.json()['id']}", json={"status": "suspended"})
        assert no_reason.status_code == 422 and no_reason.json()["detail"][0]["msg"] == "请填写暂停派单的原因"
        suspended = client.patch(f"/api/providers/{created.json()['id']}", json={"status": "suspended", "status_reason": "资质年检"})
        assert (suspended.json()["status_label"], suspended.json()["status_reason"]) == ("暂停派单", "资质年检")
        assert [p["name"] for p in client.get("/api/providers").json()] == ["幸福里助餐中心"]


def test_an_order_made_on_the_elders_page_is_listed_there_and_routed(services, console, rq_redis):
    elder_id = add_elder(services, subsidy="20")
    console.get(f"/elders/{elder_id}")  # the page sets the CSRF cookie its form repeats
    form = {"csrf_token": console.cookies.get("cc_csrf"), "service_type": "meal", "urgency": "urgent", "description": "送午餐"}
    made = console.post(f"/elders/{elder_id}/workorders", data=form, follow_redirects=False)
    assert made.status_code == 303 and "created=GD" in made.headers["location"]
    page = console.get(made.headers["location"]).text
    assert "已建工单 GD" in page and "助餐（加急）" in page and "待派单" in page
    assert jobs.queue(rq_redis).count == 1  # routing kicked once the order was committed
    refused = console.post(f"/elders/{elder_id}/workorders", data=form)  # 20.00 less 15.00 committed cannot pay 15.00
    assert refused.status_code == 409 and "补贴余额不足：余额 20.00 元，未结算工单已占用 15.00 元" in refused.text
    self_paid = console.post(f"/elders/{elder_id}/workorders", data=form | {"self_paid": "true"}, follow_redirects=False)
    assert self_paid.status_code == 303
    with services.db.session_scope() as session:
        orders = session.exec(select(WorkOrder).where(WorkOrder.elder_id == elder_id).order_by(WorkOrder.id)).all()
        assert [(o.urgency, o.self_paid, o.description) for o in orders] == [("urgent", False, "送午餐"), ("urgent", True, "送午餐")]
    assert "自费" in console.get(f"/elders/{elder_id}").text


def test_orders_created_at_the_same_moment_get_distinct_numbers(app, services, agent):
    """Twenty agents' orders at once: each gets the day's next number, none is refused."""
    from concurrent.futures import ThreadPoolExecutor

    elder_id = add_elder(services)
    with services.db.session_scope() as session:
        session.add(WorkOrder(number=f"GD{today_in(services.settings.tz):%Y%m%d}-0007", elder_id=elder_id, service_type="meal",
                              accept_due=utcnow(), arrive_due=utcnow(), complete_due=utcnow()))  # numbered before the counter

    def create(_):
        with TestClient(app) as client:
            login(client, agent)
            return client.post("/api/workorders", json={"service_type": "meal", "elder_id": elder_id, "self_paid": True})

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(create, range(20)))
    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses if r.status_code != 201]
    suffixes = sorted(int(r.json()["number"].rsplit("-", 1)[1]) for r in responses)
    assert suffixes == list(range(8, 28))


def test_subsidy_moves_only_through_the_ledger(app, services):
    """Finding 1: the balance changes through a supervisor's adjustment (a ledger row and an audit
    entry with old and new balance), never below zero, and agents cannot adjust."""
    from callcenter.audit.models import AuditLog
    from tests.conftest import csrf_headers

    elder_id = add_elder(services, subsidy="100")
    agent, supervisor = TestClient(app), TestClient(app)
    login(agent, make_user(services, "agent"))
    login(supervisor, make_user(services, "supervisor"))
    body = {"elder_id": elder_id, "amount": "300.00", "note": "2026年第四季度补贴"}
    assert agent.post("/api/subsidy-ledger", json=body).status_code == 403
    response = supervisor.post("/api/subsidy-ledger", json=body)
    assert response.status_code == 201, response.text
    assert (response.json()["amount"], response.json()["balance_after"]) == ("300.00", "400.00")
    refused = supervisor.post("/api/subsidy-ledger", json=body | {"amount": "-500"})
    assert refused.status_code == 409 and "不能为负数" in refused.json()["detail"]
    assert supervisor.post("/api/subsidy-ledger", json=body | {"amount": "0"}).status_code == 422
    assert supervisor.patch(f"/api/elders/{elder_id}", json={"subsidy_balance": "1"}, headers=csrf_headers(supervisor)).status_code == 422
    assert supervisor.get(f"/api/elders/{elder_id}", params={"reason": "correction"}).json()["subsidy_balance"] == "400.00"
    ledger = supervisor.get("/api/subsidy-ledger", params={"elder_id": elder_id}).json()
    assert [(row["amount"], row["note"]) for row in ledger] == [("300.00", "班长调整：2026年第四季度补贴")]
    with services.db.session_scope() as session:
        entry = session.exec(select(AuditLog).where(AuditLog.action == "subsidy_adjust")).one()
    assert entry.detail["changes"] == {"subsidy_balance": {"old": "100.00", "new": "400.00"}}
