"""A caller through the whole chain: the simulator as Asterisk runs the dialplan's AGI against
our FastAGI server, the variables it sets come back as AMI events, the bridge records the call."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import redis.asyncio as aioredis
from sqlmodel import select

from ivr.scripts import IvrScripts
from tests.calls.test_bridge import calls, eventually, make_bridge
from tests.calls.test_simulator import FAST, SECRET, USER, simulator
from tests.ivr.test_scripts import make_elder, open_all_day
from workorders.models import WorkOrder


def test_an_ivr_emergency_call_is_routed_recorded_and_rated(settings, services):
    open_all_day(services)
    elder_id = make_elder(services, name="张建国", number="13800138000")

    async def scenario():
        scripts = IvrScripts(database=services.db, settings=settings, redis=aioredis.from_url(settings.redis_url))
        server = scripts.server(host="127.0.0.1", port=0)
        await server.start()
        mix = replace(FAST, emergency_share=1.0, survey_share=1.0, patience_seconds=(60, 60), talk_seconds=(600, 600))
        sim = simulator(agi=("127.0.0.1", server.port), mix=mix)
        port = await sim.start()
        bridge = make_bridge(settings, services, port)
        bridge.client.username, bridge.client._secret = USER, SECRET
        task = asyncio.create_task(bridge.run())
        served = asyncio.create_task(sim.serve())
        await asyncio.wait_for(bridge.client.connected.wait(), 5)
        caller = asyncio.create_task(sim.inbound_call(number="13800138000", name="", ivr=True))
        await eventually(lambda: any(c.state == "talking" for c in calls(services).values()))
        (linkedid,) = sim.calls
        assert sim.end_talk(linkedid, "agent")  # the agent hangs up: the caller goes on to the survey
        await asyncio.wait_for(caller, 30)
        await eventually(lambda: any(c.state == "ended" for c in calls(services).values()))
        await scripts.settle()
        await bridge.wait_idle()
        bridge.stop()
        served.cancel()
        await asyncio.gather(task, served, return_exceptions=True)
        await sim.close()
        await server.close()

    asyncio.run(scenario())
    (call,) = calls(services).values()
    assert (call.ivr_route, call.priority, call.elder_id, call.caller_name) == ("emergency", 10, elder_id, "张大爷")
    assert call.outcome == "answered" and call.survey_score in (1, 2, 3, 4, 5)
    with services.db.session_scope() as session:
        (order,) = session.exec(select(WorkOrder)).all()
    assert (order.status, order.call_id, order.elder_id) == ("draft", call.id, elder_id)
