"""The IVR scripts over real TCP, Asterisk's side scripted from the recorded dialogue, with the
real database and Redis: each menu path's variables, emergency and high-risk callers, silence,
a caller hanging up mid-menu, the survey, after hours and callback requests."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta

import pytest
import redis
import redis.asyncio as aioredis
from sqlmodel import select

from callcenter.calls.models import CallRecord
from callcenter.realtime.events import event_channels
from callcenter.db import Database
from callcenter.elders import service as elders_service
from callcenter.elders.schemas import ElderIn, PhoneIn
from callcenter.timeutil import as_utc, utcnow
from ivr import service as ivr_service
from ivr.models import CallbackRequest
from ivr.scripts import IvrScripts
from tests.conftest import login, make_user
from tests.ivr.fake_agi import LINKEDID, dial, recorded_dialogue
from workorders.models import WorkOrder, WorkOrderEvent

CALLER = "13800138000"  # the recorded caller


def make_elder(services, name="张建国", number=CALLER, **fields):
    with services.db.session_scope() as session:
        elder_in = ElderIn(name=name, gender=fields.pop("gender", "male"), phones=[PhoneIn(number=number)], **fields)
        return elders_service.create(session=session, elder_in=elder_in, sealer=services.sealer, area_code="0411").id


def record_call(services, linkedid=LINKEDID, **fields) -> int:
    """The call as the bridge recorded it from AMI (the IVR finds it by its Linkedid)."""
    with services.db.session_scope() as session:
        row = CallRecord(linkedid=linkedid, direction="inbound", context="from-elders-ivr", state="ivr",
                         caller_number=CALLER, started_at=utcnow(), **fields)
        session.add(row)
        session.flush()
        return row.id


def set_hours(services, user, **hours):
    with services.db.session_scope() as session:
        versions = ivr_service.setting_versions(session=session)
        ivr_service.save_config(session=session, data={"hours": hours}, user=user, versions=versions)


def closed_today(services, settings):
    """Make today a holiday: the centre is closed now and opens tomorrow at 08:00."""
    user = make_user(services, "supervisor")
    today = utcnow().astimezone(settings.tz).date()
    set_hours(services, user, always_open=False, periods=["08:00-20:00"], holidays=[today.isoformat()])
    return datetime.combine(today + timedelta(days=1), datetime.min.time().replace(hour=8), tzinfo=settings.tz)


def open_all_day(services):
    set_hours(services, make_user(services, "supervisor"), always_open=True)


def run_calls(services, settings, *calls, database=None):
    """Serve the IVR, place the calls one after another (each: dial kwargs), wait for what they
    write; returns (calls as Asterisk saw them, the alerts published on Redis)."""
    listener = redis.Redis.from_url(settings.redis_url).pubsub()
    listener.subscribe(event_channels(settings.events_prefix).calls)
    listener.get_message(timeout=1)

    async def main():
        scripts = IvrScripts(database=database or services.db, settings=settings, redis=aioredis.from_url(settings.redis_url))
        server = scripts.server(host="127.0.0.1", port=0)
        await server.start()
        try:
            seen = [await dial(server.port, **call) for call in calls]
            await scripts.settle()
            return seen
        finally:
            await server.close()

    seen = asyncio.run(main())
    alerts = []
    while (message := listener.get_message(timeout=0.5)) is not None:
        if message["type"] == "message" and json.loads(message["data"])["type"] == "ivr.emergency":
            alerts.append(json.loads(message["data"]))
    listener.close()
    return seen, alerts


def orders(services):
    with services.db.session_scope() as session:
        return list(session.exec(select(WorkOrder)))


def test_the_recorded_emergency_call(services, settings):
    """The recorded dialogue: a known elder presses 9 → emergency route, top priority, his id and
    Chinese name on the channel; supervisors alerted; a draft emergency order on the call."""
    open_all_day(services)
    elder_id = make_elder(services)
    call_id = record_call(services)
    (call,), alerts = run_calls(services, settings, {"keys": ["9"]})

    recorded = dict(recorded_dialogue("ivr"))
    assert recorded['SET VARIABLE CALLERID(name) "张大爷"'] == "200 result=1"
    assert call.variables["IVR_ROUTE"] == "emergency"
    assert call.variables["QUEUE_PRIO"] == "10"
    assert call.variables["ELDER_ID"] == str(elder_id)
    assert call.variables["CALLERID(name)"] == "张大爷"
    assert call.variables["IVR_QUEUE"] == "hotline"
    assert call.commands[0] == "ANSWER"
    assert call.played[-1] == "12349/emergency"
    (order,) = orders(services)
    assert (order.status, order.service_type, order.urgency, order.elder_id, order.call_id) == (
        "draft", "emergency", "emergency", elder_id, call_id)
    assert "按键9" in order.description
    (alert,) = alerts
    assert (alert["call_id"], alert["elder_id"], alert["order_number"], alert["elder_name"]) == (
        LINKEDID, elder_id, order.number, "张大爷")


@pytest.mark.parametrize("key,route", [("1", "meal"), ("2", "home_service"), ("3", "medical"), ("0", "agent")])
def test_each_menu_key_sets_its_route(services, settings, key, route):
    open_all_day(services)
    make_elder(services)
    (call,), alerts = run_calls(services, settings, {"keys": [key]})
    assert (call.variables["IVR_ROUTE"], call.variables["QUEUE_PRIO"], call.variables["IVR_QUEUE"]) == (route, "0", "hotline")
    assert call.played[-1] == "12349/to-agent"
    assert orders(services) == [] and alerts == []


def test_silence_reaches_an_agent_after_one_wait(services, settings):
    open_all_day(services)
    (call,), _ = run_calls(services, settings, {"keys": [None], "caller": "13911112222"})
    assert call.variables["IVR_ROUTE"] == "agent"
    assert call.count("WAIT FOR DIGIT") == 1 and call.played.count("12349/menu") == 1
    assert "ELDER_ID" not in call.variables and "CALLERID(name)" not in call.variables  # unknown caller


def test_an_invalid_key_repeats_the_menu_once_then_an_agent(services, settings):
    open_all_day(services)
    (second_try, twice_wrong), _ = run_calls(services, settings, {"keys": [None, "7", None, "2"]},
                                             {"keys": [None, "7", None, "8"]})
    assert second_try.variables["IVR_ROUTE"] == "home_service"
    assert twice_wrong.variables["IVR_ROUTE"] == "agent"
    assert twice_wrong.played == ["12349/welcome", "12349/menu", "12349/invalid", "12349/menu", "12349/to-agent"]


def test_a_high_risk_elder_goes_straight_to_an_agent_on_top(services, settings):
    open_all_day(services)
    elder_id = make_elder(services, name="李秀英", gender="female", living_situation="lives_alone", ability_level="severe")
    (call,), alerts = run_calls(services, settings, {"keys": []})
    assert (call.variables["IVR_ROUTE"], call.variables["QUEUE_PRIO"]) == ("high_risk", "10")
    assert call.variables["CALLERID(name)"] == "李奶奶"
    assert "12349/menu" not in call.played
    (order,) = orders(services)
    assert (order.status, order.elder_id, order.call_id) == ("draft", elder_id, None)  # the bridge has no row for it
    assert alerts[0]["reason"] == "高风险老人来电"


def test_a_relative_calling_about_a_high_risk_elder_gets_the_menu(services, settings):
    open_all_day(services)
    with services.db.session_scope() as session:
        from callcenter.elders.schemas import ContactIn

        elders_service.create(session=session, sealer=services.sealer, area_code="0411", elder_in=ElderIn(
            name="王桂兰", gender="female", risk_flags=["fall_history"], phones=[PhoneIn(number="13700001111")],
            emergency_contacts=[ContactIn(name="王强", relation="son", phone=CALLER)]))
    (call,), alerts = run_calls(services, settings, {"keys": ["1"]})
    assert (call.variables["IVR_ROUTE"], call.variables["QUEUE_PRIO"]) == ("meal", "0")
    assert call.variables["CALLERID(name)"] == "王奶奶（亲属）"
    assert alerts == [] and orders(services) == []


def test_an_unknown_caller_pressing_9_is_still_an_emergency(services, settings):
    open_all_day(services)
    (call,), alerts = run_calls(services, settings, {"keys": ["9"], "caller": "13911112222"})
    assert (call.variables["IVR_ROUTE"], call.variables["QUEUE_PRIO"]) == ("emergency", "10")
    assert orders(services) == []  # an order needs an elder
    assert alerts[0]["caller"] == "+8613911112222" and alerts[0]["order_id"] is None


def test_a_caller_hanging_up_mid_menu_leaves_nothing_behind(services, settings):
    open_all_day(services)
    make_elder(services)
    hung_up, after = run_calls(services, settings, {"keys": [], "hangup_at": "STREAM FILE 12349/menu"}, {"keys": ["1"]})[0]
    assert hung_up.closed_by_server and "IVR_ROUTE" not in hung_up.variables
    assert orders(services) == []
    with services.db.session_scope() as session:
        assert session.exec(select(CallbackRequest)).all() == []
    assert after.variables["IVR_ROUTE"] == "meal"  # the server serves the next call


def test_the_emergency_route_holds_without_the_database(services, settings):
    """Database unreachable: the caller still gets the menu from the file and the emergency priority."""
    dead = Database(settings.model_copy(update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:1/none"}))
    (call,), alerts = run_calls(services, settings, {"keys": ["9"]}, database=dead)
    assert (call.variables["IVR_ROUTE"], call.variables["QUEUE_PRIO"]) == ("emergency", "10")
    assert alerts and alerts[0]["order_id"] is None


def test_the_survey_stores_the_key_and_nothing_for_no_key(services, settings):
    record_call(services)
    record_call(services, linkedid="1795363999.1")
    agent = {"MEMBERINTERFACE": dict(recorded_dialogue("survey"))["GET VARIABLE MEMBERINTERFACE"].split("(")[1].rstrip(")")}
    (rated, silent, invalid), _ = run_calls(
        services, settings, {"script": "survey", "keys": ["5"], "channel": agent},
        {"script": "survey", "keys": [None], "channel": {**agent, "CHANNEL(linkedid)": "1795363999.1"}},
        {"script": "survey", "keys": ["7", "6"], "channel": {**agent, "CHANNEL(linkedid)": "1795363999.1"}})
    assert rated.variables == {"SURVEY_SCORE": "5"}
    assert silent.variables == {} and invalid.variables == {}
    assert invalid.played.count("12349/invalid") == 1
    with services.db.session_scope() as session:
        scores = dict(session.exec(select(CallRecord.linkedid, CallRecord.survey_score)).all())
    assert scores == {LINKEDID: 5, "1795363999.1": None}


def test_no_survey_when_no_agent_talked(services, settings):
    (call,), _ = run_calls(services, settings, {"script": "survey", "keys": ["5"]})
    assert call.commands[-1] == "GET VARIABLE MEMBERINTERFACE" and call.variables == {}


def test_after_hours_a_callback_request_waits_for_the_opening(services, settings, client):
    opening = closed_today(services, settings)
    elder_id = make_elder(services)
    (call, again), _ = run_calls(services, settings, {"keys": ["1"]}, {"keys": ["1"]})
    assert call.variables["IVR_ROUTE"] == "callback" and call.played[0] == "12349/closed"
    assert call.played[-1] == "12349/callback-saved"
    with services.db.session_scope() as session:
        (request,) = session.exec(select(CallbackRequest)).all()
    assert (request.elder_id, request.caller_e164, request.reason, request.requests) == (elder_id, "+8613800138000", "after_hours", 2)
    assert as_utc(request.due_at) == opening
    login(client, make_user(services, "agent"))
    listing = client.get("/api/callback-requests").json()
    assert listing == {"items": [], "waiting": 1}  # on the list from the opening, not before


def test_after_hours_emergency_and_silence_go_to_the_on_duty_queue(services, settings):
    closed_today(services, settings)
    (emergency, silence, anonymous), _ = run_calls(
        services, settings, {"keys": ["9"]}, {"keys": [None]}, {"keys": ["1"], "caller": "anonymous"})
    assert (emergency.variables["IVR_ROUTE"], emergency.variables["IVR_QUEUE"], emergency.variables["QUEUE_PRIO"]) == (
        "emergency", "emergency", "10")
    assert (silence.variables["IVR_ROUTE"], silence.variables["IVR_QUEUE"]) == ("agent", "emergency")
    assert anonymous.played[-1] == "12349/to-agent" and "12349/callback-no-number" in anonymous.played
    assert anonymous.variables["IVR_QUEUE"] == "emergency"


def test_nobody_answered_the_callback_request_is_on_the_list_at_once(services, settings, client):
    open_all_day(services)
    make_elder(services)
    (call, waits, emergency), _ = run_calls(services, settings, {"script": "afterhours", "keys": ["1"]},
                                            {"script": "afterhours", "keys": [None], "caller": "13911112222"},
                                            {"script": "afterhours", "keys": ["9"], "caller": "13911113333"})
    assert call.played[0] == "12349/busy" and call.variables["IVR_ROUTE"] == "callback"
    assert (waits.variables["IVR_ROUTE"], waits.variables["IVR_QUEUE"]) == ("agent", "hotline")  # back to the queue
    assert (emergency.variables["IVR_QUEUE"], emergency.variables["QUEUE_PRIO"]) == ("hotline", "10")  # in hours: the hotline, on top
    agent = make_user(services, "agent")
    login(client, agent)
    (item,) = client.get("/api/callback-requests").json()["items"]
    assert (item["caller_number"], item["elder_name"], item["reason_label"]) == (CALLER, "张建国", "坐席忙")
    done = client.post(f"/api/callback-requests/{item['id']}/finish", json={"status": "done", "note": "已联系，需助餐"})
    assert done.status_code == 200 and done.json()["status_label"] == "已回电"
    again = client.post(f"/api/callback-requests/{item['id']}/finish", json={"status": "unreached"})
    assert again.status_code == 409 and "已处理" in again.json()["detail"]
    assert client.get("/api/callback-requests").json() == {"items": [], "waiting": 0}


def test_an_agent_confirms_or_cancels_the_emergency_draft(services, settings, client):
    open_all_day(services)
    make_elder(services)
    record_call(services)
    run_calls(services, settings, {"keys": ["9"]})
    (draft,) = orders(services)
    login(client, make_user(services, "agent"))
    confirmed = client.post(f"/api/workorders/{draft.id}/confirm", json={"description": "老人跌倒，需上门"})
    assert confirmed.status_code == 200, confirmed.text
    assert (confirmed.json()["status"], confirmed.json()["description"]) == ("new", "老人跌倒，需上门")
    again = client.post(f"/api/workorders/{draft.id}/confirm", json={})
    assert again.status_code == 409
    with services.db.session_scope() as session:
        moves = [(e.from_status, e.to_status, e.actor) for e in session.exec(select(WorkOrderEvent).order_by(WorkOrderEvent.id))]
    assert moves[0] == (None, "draft", "语音导航") and moves[1][:2] == ("draft", "new")
