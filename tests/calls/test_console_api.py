"""The console's HTTP API against a live telephony stack: the AMI simulator, the real bridge,
real Redis and the database. Buttons become AMI actions through the bridge; what Asterisk then
reports comes back as call and agent state."""

from __future__ import annotations

import json
import time
import threading

import pytest
import redis
from fastapi.testclient import TestClient
from sqlmodel import select

from callcenter.audit.models import AuditLog
from callcenter.calls import commands
from callcenter.realtime.events import event_channels
from callcenter.elders.models import ElderPhone
from tests.calls.test_bridge import add_elder
from tests.conftest import csrf_headers, login, make_user
from tests.telephony import LiveTelephony, agent_row, call_rows, wait_for

ELDER_NUMBER = "13800138000"


@pytest.fixture
def telephony(settings, services):
    live = LiveTelephony(settings, services, wrapup_seconds=5)
    yield live
    live.close()


def hang_up(client, call):
    """The console's 挂断 button: a bodiless POST carrying the CSRF token, as app JS sends it."""
    return client.post(f"/api/calls/{call.id}/hangup", headers=csrf_headers(client))


def answered_call(services, telephony, console, number=ELDER_NUMBER):
    """The agent goes ready, `number` calls, the call is answered by this agent."""
    assert console.post("/api/agent/state", json={"state": "ready"}).status_code == 200
    telephony.place_call(number)
    return wait_for(lambda: next((c for c in call_rows(services) if c.state == "talking"), None), message="call not answered")


def test_ready_and_pause_are_mirrored_to_the_queue(services, telephony, console):
    member = telephony.member("8001")
    assert not member.in_queue
    response = console.post("/api/agent/state", json={"state": "ready"})
    assert response.status_code == 200 and response.json()["message"] == "已切换为：就绪"
    assert member.in_queue and not member.paused
    assert wait_for(lambda: (row := agent_row(services, "8001")) and row.state == "ready")

    response = console.post("/api/agent/state", json={"state": "paused", "reason": "meal"})
    assert response.status_code == 200 and response.json()["message"] == "已切换为：暂停（就餐）", response.text
    assert (member.paused, member.reason) == (True, "meal")
    assert wait_for(lambda: agent_row(services, "8001").pause_reason == "meal")

    bad = console.post("/api/agent/state", json={"state": "paused", "reason": "nap"})
    assert bad.status_code == 422 and "小休" in bad.json()["message"]
    assert member.paused and member.reason == "meal"  # nothing sent for a refused request

    assert console.post("/api/agent/state", json={"state": "offline"}).status_code == 200
    assert not member.in_queue


def test_an_offered_call_pops_the_elder_and_takes_notes_hangup_and_wrapup(services, telephony, console, agent):
    elder_id = add_elder(services)
    call = answered_call(services, telephony, console)
    assert (call.agent_user_id, call.elder_id) == (agent.id, elder_id)

    pop = console.get(f"/api/calls/{call.id}/pop").json()
    assert pop["elder"]["name"] == "张大爷" and pop["candidates"] is None
    assert pop["call"]["caller"] == "+8613800138000"
    with services.db.session_scope() as session:
        views = session.exec(select(AuditLog).where(AuditLog.elder_id == elder_id, AuditLog.action == "view")).all()
    assert [v.detail for v in views] == [{"via": "screen_pop", "reason": "call", "call_id": call.id}]  # the call is the purpose
    assert pop["elder"]["access"]["level"] == "full" and "emergency_contacts" in pop["elder"]

    saved = console.put(f"/api/calls/{call.id}/summary", json={"disposition": "service_request", "notes": "需要助餐，每天午餐"})
    assert saved.status_code == 200 and saved.json()["disposition_label"] == "服务申请"

    assert hang_up(console, call).status_code == 200
    ended = wait_for(lambda: next((c for c in call_rows(services) if c.id == call.id and c.state == "ended"), None))
    assert (ended.hangup_by, ended.outcome, ended.notes, ended.disposition) == ("agent", "answered", "需要助餐，每天午餐", "service_request")

    # Wrap-up: paused with reason wrapup, then ready again by itself, and its end is recorded.
    assert wait_for(lambda: agent_row(services, "8001").pause_reason == "wrapup", 15)
    assert wait_for(lambda: agent_row(services, "8001").state == "ready", 15)
    assert wait_for(lambda: call_rows(services)[0].wrapup_ended_at is not None, 15)

    # Notes can still be completed after the call.
    later = console.put(f"/api/calls/{call.id}/summary", json={"notes": "已转助餐服务商"})
    assert later.status_code == 200 and later.json()["notes"] == "已转助餐服务商"
    assert hang_up(console, call).status_code == 409  # over already


def test_another_agent_cannot_read_notes_or_act_on_the_call(app, services, telephony, console):
    published = []
    listener = redis.Redis.from_url(services.settings.redis_url).pubsub()
    listener.subscribe(event_channels(services.settings.events_prefix).calls)
    call = answered_call(services, telephony, console)
    console.put(f"/api/calls/{call.id}/summary", json={"disposition": "complaint", "notes": "投诉送餐迟到"})
    hang_up(console, call)
    wait_for(lambda: call_rows(services)[0].state == "ended")
    while (message := listener.get_message(timeout=0.5)) is not None:
        if message["type"] == "message":
            published.append(json.loads(message["data"]))
    assert published and all("notes" not in event for event in published)  # the socket never carries notes

    other = make_user(services, "agent", username="agent8002", sip_extension="8002")
    with TestClient(app) as client:
        login(client, other)
        seen = client.get(f"/api/calls/{call.id}").json()
        assert seen["notes"] is None and seen["notes_hidden"] is True
        listed = client.get("/api/calls").json()["items"]
        assert [c["notes"] for c in listed] == [None]
        assert client.get(f"/api/calls/{call.id}/pop").status_code == 403
        refused = client.put(f"/api/calls/{call.id}/summary", json={"notes": "篡改"})
        assert refused.status_code == 403 and refused.json()["detail"] == "这不是您接听的通话，无法查看或操作"
        assert client.get("/api/calls?mine=true").json()["total"] == 0
    assert call_rows(services)[0].notes == "投诉送餐迟到"

    with TestClient(app) as client:
        login(client, make_user(services, "supervisor"))
        assert client.get(f"/api/calls/{call.id}").json()["notes"] == "投诉送餐迟到"


def test_transfer_redirects_the_caller(services, telephony, console):
    call = answered_call(services, telephony, console)
    assert console.post(f"/api/calls/{call.id}/transfer", json={"target": "8001"}).status_code == 422  # to myself
    response = console.post(f"/api/calls/{call.id}/transfer", json={"target": "8002"})
    assert response.status_code == 200 and response.json()["message"] == "已转接至 8002"
    redirect = telephony.actions("Redirect")[-1]
    assert (redirect["Channel"], redirect["Context"], redirect["Exten"]) == (call.linkedid, "hotline-transfer", "8002")
    assert wait_for(lambda: call_rows(services)[0].hangup_by == "transfer")


def test_callback_dials_only_numbers_in_the_profile_and_records_the_call(services, telephony, console, agent):
    elder_id = add_elder(services)
    refused = console.post("/api/agent/callback", json={"elder_id": elder_id, "number": "13912345678"})
    assert refused.status_code == 422 and "不在老人档案" in refused.json()["message"]
    assert telephony.actions("Originate") == []

    response = console.post("/api/agent/callback", json={"elder_id": elder_id, "number": "138-0013-8000"})
    assert response.status_code == 200 and "138 0013 8000" in response.json()["message"]
    originate = telephony.actions("Originate")[-1]
    assert (originate["Channel"], originate["Context"], originate["Exten"]) == ("PJSIP/8001", "hotline-outbound", "13800138000")
    assert sorted(originate.getall("Variable")) == ["CC_AGENT=8001", f"ELDER_ID={elder_id}"]
    outbound = wait_for(lambda: next((c for c in call_rows(services) if c.direction == "outbound"), None))
    assert (outbound.agent_user_id, outbound.elder_id) == (agent.id, elder_id)


def test_unknown_caller_gets_a_new_profile_or_is_linked_as_a_relative(services, telephony, console):
    call = answered_call(services, telephony, console, number="13700137000")
    pop = console.get(f"/api/calls/{call.id}/pop").json()
    assert pop["elder"] is None and pop["candidates"] is None

    existing = add_elder(services, name="刘奶奶", number="13600136000")
    linked = console.post(f"/api/calls/{call.id}/elder", json={"elder_id": existing, "phone_relation": "son", "owner_name": "刘强"})
    assert linked.status_code == 200 and linked.json()["elder_id"] == existing
    with services.db.session_scope() as session:
        phones = {(p.number, p.relation) for p in session.exec(select(ElderPhone).where(ElderPhone.elder_id == existing))}
    assert ("+8613700137000", "son") in phones
    assert console.get(f"/api/calls/{call.id}/pop").json()["elder"]["name"] == "刘奶奶"

    missing = console.post(f"/api/calls/{call.id}/elder", json={"elder_id": 999999})
    assert missing.status_code == 404


def test_a_shared_number_offers_a_choice(services, telephony, console):
    husband = add_elder(services, name="陈爷爷", number="041187654321")
    wife = add_elder(services, name="陈奶奶", number="87654321")
    call = answered_call(services, telephony, console, number="041187654321")
    assert call.elder_id is None and sorted(call.elder_candidates) == sorted([husband, wife])
    pop = console.get(f"/api/calls/{call.id}/pop").json()
    assert pop["elder"] is None and sorted(c["name"] for c in pop["candidates"]) == ["陈奶奶", "陈爷爷"]
    chosen = console.post(f"/api/calls/{call.id}/elder", json={"elder_id": wife})
    assert chosen.status_code == 200
    assert console.get(f"/api/calls/{call.id}/pop").json()["elder"]["name"] == "陈奶奶"
    assert call_rows(services)[0].elder_id == wife  # and the bridge's later writes keep the choice
    telephony.caller_hangs_up(call.linkedid)
    assert wait_for(lambda: call_rows(services)[0].state == "ended")
    assert call_rows(services)[0].elder_id == wife


def test_history_of_my_calls_today_is_searchable(services, telephony, console):
    add_elder(services)
    first = answered_call(services, telephony, console)
    console.put(f"/api/calls/{first.id}/summary", json={"disposition": "consultation"})
    telephony.caller_hangs_up(first.linkedid)
    wait_for(lambda: call_rows(services)[0].state == "ended")
    telephony.place_call("13700137000")
    wait_for(lambda: len(call_rows(services)) == 2 and call_rows(services)[1].state == "talking")
    mine = console.get("/api/calls?mine=true").json()
    assert mine["total"] == 2
    assert console.get("/api/calls?mine=true&q=8000").json()["total"] == 1
    assert console.get("/api/calls?mine=true&q=张").json()["items"][0]["id"] == first.id
    assert console.get("/api/calls?mine=true&disposition=consultation").json()["total"] == 1


def test_without_the_bridge_a_button_fails_clearly_and_never_runs_late(settings, services, console):
    live = LiveTelephony(settings, services, with_bridge=False)
    try:
        response = console.post("/api/agent/state", json={"state": "ready"})
        detail = response.json()["detail"]
        # no bridge running: said at once, and not blamed on Redis (which is fine)
        assert response.status_code == 503 and "callcenter ami）未运行" in detail and "Redis" not in detail
        assert services.redis.llen(commands.COMMANDS_KEY) == 0
        # a bridge that beats but does not serve (stuck): the button gives up after its timeout
        services.redis.set(commands.BRIDGE_KEY, commands.heartbeat(ami_connected=True), ex=30)
        response = console.post("/api/agent/state", json={"state": "ready"})
        assert response.status_code == 503 and "桥接服务未响应" in response.json()["detail"]
        live.start_bridge()  # the bridge comes back: the stale command must not run now
        time.sleep(1.5)
        assert live.actions("QueueAdd") == [] and not live.member("8001").in_queue
        assert services.redis.llen(commands.COMMANDS_KEY) == 0
        assert console.post("/api/agent/state", json={"state": "ready"}).status_code == 200
        assert live.member("8001").in_queue
        live.run(live.sim.close())  # now Asterisk goes away under a running bridge
        wait_for(lambda: b'"ami": false' in (services.redis.get(commands.BRIDGE_KEY) or b""), 10)
        response = console.post("/api/agent/state", json={"state": "paused", "reason": "meal"})
        assert response.status_code == 503 and "与电话交换机（Asterisk）的连接已中断" in response.json()["detail"]
    finally:
        live.close()


def test_an_agent_without_extension_is_told_so(app, services, telephony):
    with TestClient(app) as client:
        login(client, make_user(services, "agent"))
        response = client.post("/api/agent/state", json={"state": "ready"})
        assert response.status_code == 409 and "未绑定分机号" in response.json()["detail"]
        assert client.get("/api/agent/softphone").json()["mode"] == "none"


def test_a_pause_chosen_during_the_call_survives_the_wrapup(services, telephony, console):
    call = answered_call(services, telephony, console)
    assert console.post("/api/agent/state", json={"state": "paused", "reason": "training"}).status_code == 200
    assert wait_for(lambda: agent_row(services, "8001").pause_reason == "training")
    assert hang_up(console, call).status_code == 200
    wait_for(lambda: call_rows(services)[0].state == "ended")
    time.sleep(6)  # longer than the wrap-up (5 s): nobody unpauses the agent
    row = agent_row(services, "8001")
    assert (row.state, row.pause_reason) == ("paused", "training")
    assert (telephony.member("8001").paused, telephony.member("8001").reason) == (True, "training")


def test_a_call_transferred_to_the_queue_pops_for_the_next_agent(app, services, telephony, console, agent):
    other = make_user(services, "agent", username="agent8002", sip_extension="8002")
    telephony.member("8002").in_queue = True  # 8002 is ready, and has taken no call yet
    call = answered_call(services, telephony, console)
    assert call.agent_user_id == agent.id
    assert console.post(f"/api/calls/{call.id}/transfer", json={"target": "hotline"}).status_code == 200
    moved = wait_for(lambda: (row := call_rows(services)[0]).state == "talking" and row.agent_extension == "8002" and row)
    assert (moved.agent_user_id, moved.transfers, moved.answered_at) == (other.id, 1, call.answered_at)
    # the first agent still reads the call and writes their notes, but no longer acts on the line
    assert console.get(f"/api/calls/{call.id}/pop").status_code == 200
    refused = hang_up(console, call)
    assert refused.status_code == 403 and "已转接给其他坐席" in refused.json()["detail"], refused.text
    assert moved.leg_agents == ["8001", "8002"]
    with TestClient(app) as client:
        login(client, other)
        assert client.get(f"/api/calls/{call.id}/pop").status_code == 200
        assert hang_up(client, call).status_code == 200
    ended = wait_for(lambda: (row := call_rows(services)[0]).state == "ended" and row)
    assert (ended.outcome, ended.hangup_by) == ("answered", "agent")


def test_a_button_waiting_for_the_bridge_holds_no_database_connection(services, console, agent, supervisor_client):
    """Telephony buttons wait up to AMI_COMMAND_TIMEOUT for the bridge: meanwhile the request holds
    no pooled database connection (a slow bridge would otherwise exhaust the pool), and a
    supervisor's queue change is committed before Asterisk is told, then put back when Asterisk
    refuses it. The test is the bridge: it takes each command off Redis and answers it."""
    from callcenter.auth.models import User
    from callcenter.calls.models import AgentStatus

    services.redis.set(commands.BRIDGE_KEY, commands.heartbeat(ami_connected=True), ex=30)
    with services.db.session_scope() as session:  # 王芳 is in the hotline queue now, as the bridge recorded her
        session.add(AgentStatus(interface="PJSIP/8001", extension="8001", state="ready", status="not_in_use", queues=["hotline"]))
    seen = []

    def bridge(answers: list[bool]) -> None:
        for ok in answers:
            _, text = services.redis.blpop([commands.COMMANDS_KEY], timeout=10)
            command = json.loads(text)
            held = services.db.engine.pool.checkedout()  # before this thread takes one of its own
            with services.db.session_scope() as session:
                stored = session.get(User, agent.id)
                seen.append((held, [step["action"] for step in command["steps"]], stored.queues, stored.queue_penalty))
            refusal = "" if ok else "Unable to add interface to queue 'emergency': Not there"
            services.redis.rpush(commands.reply_key(command), commands.encode_reply(commands.Outcome(ok=ok, message=refusal)))

    worker = threading.Thread(target=bridge, args=([True, False],), daemon=True)
    worker.start()
    assert console.post("/api/agent/state", json={"state": "paused", "reason": "meal"}).status_code == 200
    refused = supervisor_client.patch(f"/api/users/{agent.id}", json={"queues": ["hotline", "emergency"], "queue_penalty": 2})
    worker.join(10)
    assert refused.status_code == 409 and "电话系统拒绝了该操作" in refused.json()["detail"], refused.text
    assert [(held, actions) for held, actions, _, _ in seen] == [(0, ["QueueAdd", "QueuePause"]), (0, ["QueueAdd", "QueuePenalty"])]
    assert seen[1][2:] == (["hotline", "emergency"], 2)  # committed before Asterisk was told …
    with services.db.session_scope() as session:
        stored = session.get(User, agent.id)
        assert (stored.queues, stored.queue_penalty) == ([], 0)  # … and put back when it refused
