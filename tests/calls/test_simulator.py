"""The simulator as the bridge sees it: real TCP, real database, real Redis."""

import asyncio
from dataclasses import replace

import pytest

from callcenter.ami.client import ActionFailed, AMIClient
from callcenter.calls.models import AgentStatus
from callcenter.simulator.traffic import Simulator, TrafficMix
from tests.calls.test_bridge import add_elder, calls, eventually, make_bridge

USER, SECRET = "bridge", "s3cret-for-tests"
FAST = TrafficMix(calls_per_minute=600, ivr_share=0.5, emergency_share=0.5, patience_seconds=(2, 40), ring_seconds=(0.5, 1),
                  talk_seconds=(3, 10), survey_share=1.0, unknown_share=0.3)


def simulator(**options) -> Simulator:
    defaults = {"agents": [("8001", "Agent 8001"), ("8002", "Agent 8002"), ("8003", "Agent 8003")],
                "callers": [("13800138000", "张大爷"), ("13900139000", "李秀英")], "mix": FAST, "speed": 20, "seed": 7}
    return Simulator(username=USER, secret=SECRET, port=0, **(defaults | options))


def test_simulated_traffic_is_recorded_call_by_call(settings, services):
    elder_id = add_elder(services)

    async def scenario():
        sim = simulator()
        port = await sim.start()
        bridge = make_bridge(settings, services, port)
        bridge.client.username, bridge.client._secret = USER, SECRET
        task = asyncio.create_task(bridge.run())
        await asyncio.wait_for(bridge.client.connected.wait(), 5)
        await bridge.client.queue_pause("PJSIP/8003", True, queue="hotline", reason="小休")
        await asyncio.wait_for(sim.run(calls=25), 60)
        await eventually(lambda: sum(c.state == "ended" for c in calls(services).values()) == 25)
        await bridge.wait_idle()
        bridge.stop()
        await asyncio.wait_for(task, 10)
        await sim.close()
        return sim

    sim = asyncio.run(scenario())
    rows = list(calls(services).values())
    assert len(rows) == 25 and all(r.state == "ended" for r in rows)
    outcomes = {r.outcome for r in rows}
    assert outcomes <= {"answered", "abandoned", "short_abandon"} and "answered" in outcomes
    assert sum(r.outcome == "answered" for r in rows) == sim.stats["answered"]
    answered = [r for r in rows if r.outcome == "answered"]
    assert all(r.agent_extension in ("8001", "8002") for r in answered)  # 8003 was paused: no calls
    assert all(r.talk_seconds is not None and r.wait_seconds is not None for r in answered)
    emergencies = [r for r in rows if r.ivr_route == "emergency"]
    assert emergencies and all(r.priority == 10 for r in emergencies)
    known = [r for r in rows if r.caller_e164 == "+8613800138000"]
    assert all(r.elder_id == elder_id for r in known)
    with services.db.session_scope() as session:
        paused = session.get(AgentStatus, "PJSIP/8003")
    assert (paused.state, paused.pause_reason) == ("paused", "小休")


def test_actions_get_their_answers(settings, services):
    async def scenario():
        sim = simulator(mix=TrafficMix(calls_per_minute=1))
        port = await sim.start()
        events = []

        async def on_event(message):
            events.append(message)

        client = AMIClient("127.0.0.1", port, USER, SECRET, on_event=on_event)
        task = asyncio.create_task(client.run())
        await asyncio.wait_for(client.connected.wait(), 5)
        paused = await client.queue_pause("PJSIP/8001", True, queue="hotline", reason="会议")
        added = await client.queue_add("hotline", "PJSIP/8009", member_name="Agent 8009")
        with pytest.raises(ActionFailed, match="Already there"):
            await client.queue_add("hotline", "PJSIP/8009")
        with pytest.raises(ActionFailed, match="Interface not found"):
            await client.queue_pause("PJSIP/9999", True)
        status = await client.queue_status("hotline")
        originate = await client.originate(channel="PJSIP/8001", context="outbound", exten="13800138000",
                                           variables={"ELDER_ID": "42", "CALL_PURPOSE": "callback"})
        await asyncio.sleep(0.1)
        client.stop()
        await asyncio.wait_for(task, 10)
        await sim.close()
        return paused, added, status, originate, events, sim

    paused, added, status, originate, events, sim = asyncio.run(scenario())
    assert paused.ok and paused.response["Message"] == "Interface paused successfully"
    assert added.response["Message"] == "Added interface to queue"
    members = {e["Location"]: e for e in status.events if e.event == "QueueMember"}
    assert members["PJSIP/8001"]["Paused"] == "1" and members["PJSIP/8001"]["PausedReason"] == "会议"
    assert "PJSIP/8009" in members
    assert originate.response["Message"] == "Originate successfully queued"
    sent = next(m for m in sim.actions_seen if m.get("Action") == "Originate")
    assert sent.getall("Variable") == ["ELDER_ID=42", "CALL_PURPOSE=callback"]
    assert [e.event for e in events if e.event in ("QueueMemberPause", "QueueMemberAdded")] == ["QueueMemberPause", "QueueMemberAdded"]
    assert any(e.event == "Newchannel" and e.get("Channel", "").startswith("PJSIP/8001-") for e in events)  # the callback rings the agent's phone


def test_calls_placed_from_an_agents_phone_end_by_the_number_called(settings, services):
    """Originate's ChannelId is the agent's channel's Uniqueid, so the call's Linkedid; the number's
    last digit decides the far end (7 busy, 8 rings out, 9 fails, else answers), and the bridge
    records each as a real Asterisk's events would have it (DialBegin/DialEnd of the trunk leg)."""
    numbers = {"care-1": "13800138001", "care-7": "13800138007", "care-8": "13800138008", "care-9": "13800138009"}

    async def scenario():
        sim = simulator(outbound_ring_seconds=20, mix=replace(FAST, outbound_talk_seconds=(3, 10)))  # 1 s, ≤ 0.5 s at speed 20
        port = await sim.start()
        serving = asyncio.create_task(sim.serve())
        bridge = make_bridge(settings, services, port)
        task = asyncio.create_task(bridge.run())
        await asyncio.wait_for(bridge.client.connected.wait(), 5)
        events = []
        listener = AMIClient("127.0.0.1", port, USER, SECRET, on_event=lambda message: _append(events, message))
        listening = asyncio.create_task(listener.run())
        await asyncio.wait_for(listener.connected.wait(), 5)

        def originate(channel_id, number):
            return bridge.client.action("Originate", [("Channel", "PJSIP/8001"), ("Context", "hotline-outbound"), ("Exten", number),
                                                      ("Priority", "1"), ("CallerID", "12349 <12349>"), ("Async", "true"),
                                                      ("Variable", "CC_AGENT=8001"), ("ChannelId", channel_id)])
        for channel_id, number in numbers.items():
            await originate(channel_id, number)
        with pytest.raises(ActionFailed, match="already in use"):
            await originate("care-1", "13800138001")  # a Uniqueid Asterisk has already
        await eventually(lambda: sum(c.state == "ended" for c in calls(services).values()) == 4, 20)
        await bridge.wait_idle()
        for client, running in ((bridge, task), (listener, listening)):
            client.stop()
            await asyncio.wait_for(running, 10)
        serving.cancel()
        await sim.close()
        return events

    events = asyncio.run(scenario())
    rows = calls(services)
    assert {linkedid: (row.direction, row.dial_status, row.caller_e164) for linkedid, row in rows.items()} == {
        "care-1": ("outbound", "ANSWER", "+8613800138001"), "care-7": ("outbound", "BUSY", "+8613800138007"),
        "care-8": ("outbound", "NOANSWER", "+8613800138008"), "care-9": ("outbound", "CONGESTION", "+8613800138009")}
    answered = rows["care-1"]
    assert answered.started_at < answered.answered_at < answered.ended_at and answered.talk_seconds is not None
    assert answered.agent_extension == "8001" and answered.hangup_by == "caller"
    assert all(rows[key].answered_at is None and rows[key].talk_seconds is None for key in ("care-7", "care-8", "care-9"))
    agent_legs = {e["Uniqueid"] for e in events if e.event == "Newchannel" and e["Channel"].startswith("PJSIP/8001-")}
    assert agent_legs == set(numbers)
    dialled = {(e["Uniqueid"], e["DialStatus"]) for e in events if e.event == "DialEnd" and e.get("Uniqueid")}
    assert dialled == {("care-1", "ANSWER"), ("care-7", "BUSY"), ("care-8", "NOANSWER"), ("care-9", "CONGESTION")}
    begun = [e for e in events if e.event == "DialBegin" and e.get("Uniqueid")]
    assert sorted(e["DialString"] for e in begun) == sorted(f"{number}@trunk" for number in numbers.values())


async def _append(events, message):
    events.append(message)
