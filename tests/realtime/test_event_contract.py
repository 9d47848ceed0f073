"""The live events' contract (callcenter/realtime/events.py): its schema is pinned, and every frame a
real bridge (recorded AMI traces over TCP), the IVR (over FastAGI) and the hub send to a browser's
websocket keeps it: no field missing, none unknown, numbered on the right channel."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import httpx

from callcenter.realtime import events
from callcenter.realtime.events import AgentStateEvent
from tests.ami.fake_asterisk import trace_events
from tests.calls.test_bridge import run_replay
from tests.conftest import make_user
from tests.ivr.test_scripts import make_elder, open_all_day, record_call, run_calls
from tests.realtime.test_hub import collect, session_cookie, web_processes

PINNED = Path(__file__).with_name("live-events.schema.json")
TRACES = ("ivr", "transfer-agent", "transfer-queue", "abandoned")


def test_the_live_events_schema_is_pinned():
    pinned = json.loads(PINNED.read_text(encoding="utf-8"))
    assert events.contract_schema() == pinned, (
        "the live events changed: update what reads them (agent_ui/static/*.js, realtime/hub.py), then "
        "`python -m callcenter.realtime.events > tests/realtime/live-events.schema.json`")


def test_every_frame_of_real_calls_keeps_the_contract(settings, services):
    boss = make_user(services, "supervisor")
    agent = make_user(services, "agent", sip_extension="8001")
    open_all_day(services)
    make_elder(services)
    record_call(services)  # the IVR call, as the bridge recorded it
    received: dict[str, list[dict]] = {"boss": [], "agent": []}

    with web_processes(settings, {}) as (host,):
        cookies = {"boss": session_cookie(host, boss), "agent": session_cookie(host, agent)}

        async def scenario():
            stop = asyncio.Event()
            ready = {name: asyncio.Event() for name in received}
            tasks = [asyncio.create_task(collect(host, cookies[name], received[name], ready[name], stop)) for name in received]
            await asyncio.wait_for(asyncio.gather(*(event.wait() for event in ready.values())), 30)
            for trace in TRACES:
                await run_replay(settings, services, [trace_events(trace)],
                                 until=lambda rows: rows and all(row.state == "ended" for row in rows.values()))
            await asyncio.to_thread(run_calls, services, settings, {"keys": ["9"]})  # an elder presses 9
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(f["type"] == "ivr.emergency" for f in received["boss"]):
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.gather(*tasks)

        asyncio.run(scenario())
        snapshot = httpx.get(f"http://{host}/api/realtime/snapshot", cookies={"cc_session": cookies["boss"]}).json()

    for frames in received.values():
        for frame in frames:
            events.parse_frame(json.dumps(frame, ensure_ascii=False))  # raises on any breach of the contract
    kinds = {frame["type"] for frame in received["boss"]}
    assert {"hello", "call.started", "call.ivr", "call.queued", "call.offered", "call.answered", "call.transferred",
            "call.agent_done", "call.ended", "agent.state", "queue.waiting", "ivr.emergency"} <= kinds
    assert any(f["type"] == "call.offered" for f in received["agent"])  # the agent's own calls, numbered on its socket too
    assert snapshot["agents"], "the snapshot lists the agents the traces signed in"
    for row in snapshot["agents"]:
        AgentStateEvent.model_validate(row)  # the snapshot's agents have the live event's shape


STATIC = Path(__file__).resolve().parents[2] / "agent_ui" / "static"


def _schema_fields_and_types() -> tuple[set[str], set[str]]:
    schema = events.contract_schema()
    fields, types = set(schema["numbered"]["properties"]), set()
    for model in schema["events"].values():
        fields |= set(model["properties"])
        kind = model["properties"]["type"]
        types |= set(kind.get("enum", [kind.get("const")]))
    return fields, types


def test_the_pages_read_only_event_fields_and_types_the_contract_has():
    """The console and wallboard name event fields by hand (a live event is always `ev` there; the
    softphone's SIP events are `sipEvent`) and event types as
    strings: each must be in the contract, so renaming a field there fails here, not on a screen."""
    fields, types = _schema_fields_and_types()
    for page in ("console.js", "wallboard.js", "live.js"):
        source = (STATIC / page).read_text(encoding="utf-8")
        read = set(re.findall(r"\bev\.([a-z_]+)\b", source))
        named = set(re.findall(r'"((?:call|agent|ivr|queue)\.[a-z_]+)"', source))
        assert len(read) >= 4, f"{page}: live events are no longer read as `ev` (update this test)"
        assert read <= fields, f"{page} reads fields no event has: {sorted(read - fields)}"
        assert named <= types, f"{page} names event types that do not exist: {sorted(named - types)}"
