"""The bridge over real TCP: recorded Asterisk traces in, call rows in the real database and
JSON events on real Redis out."""

from __future__ import annotations

import asyncio
import json
import time
from typing import ClassVar

import pytest
import redis
import redis.asyncio as aioredis
from sqlalchemy.engine import make_url
from sqlmodel import select

from callcenter.calls.bridge import Bridge, Publisher
from callcenter.realtime.events import Event
from callcenter.calls.models import AgentStateLog, AgentStatus, CallLeg, CallRecord
from callcenter.realtime.events import event_channels
from callcenter.elders import service as elders_service
from callcenter.db import Database
from callcenter.elders.schemas import ElderIn, PhoneIn
from tests.ami.fake_asterisk import SECRET, USER, FakeAsterisk, channel_row, random_chunks, trace_events
from callcenter.stats import rollup
from tests.conftest import BACKEND
from tests.faults import TcpProxy


def calls(services) -> dict[str, CallRecord]:
    with services.db.session_scope() as session:
        return {c.linkedid: c for c in session.exec(select(CallRecord))}


async def eventually(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(interval)
    raise AssertionError("condition not reached in time")


def make_bridge(settings, services, port: int, **options) -> Bridge:
    defaults = {"ping_interval": 5.0, "ping_timeout": 2.0, "backoff_initial": 0.05, "backoff_max": 0.5, "database": services.db,
                "rollups": rollup.Keeper(tz=settings.tz)}
    return Bridge(redis=aioredis.from_url(settings.redis_url), area_code="0411", host="127.0.0.1",
                  port=port, username=USER, secret=SECRET, events_prefix=settings.events_prefix, **(defaults | options))


async def run_replay(settings, services, scripts, *, until, fake_options=None, bridge_options=None, between=None):
    """Start a fake Asterisk and a bridge, wait for `until(rows)`; returns (bridge, fake)."""
    fake = FakeAsterisk(scripts, **(fake_options or {}))
    port = await fake.start()
    bridge = make_bridge(settings, services, port, **(bridge_options or {}))
    task = asyncio.create_task(bridge.run())
    try:
        if between is not None:
            await between(fake, bridge)
        await eventually(lambda: until(calls(services)))
        await bridge.wait_idle()
    finally:
        bridge.stop()
        await asyncio.wait_for(task, 10)
        await fake.close()
    return bridge, fake


def ended(rows, count):
    return len(rows) == count and all(row.state == "ended" for row in rows.values())


def add_elder(services, name="张大爷", number="13800138000"):
    with services.db.session_scope() as session:
        return elders_service.create(session=session, elder_in=ElderIn(name=name, phones=[PhoneIn(number=number)]),
                                     sealer=services.sealer, area_code="0411").id


def test_answered_trace_gives_one_answered_call_with_its_elder(settings, services):
    elder_id = add_elder(services)
    asyncio.run(run_replay(settings, services, [trace_events("answered")], until=lambda rows: ended(rows, 1)))
    call = calls(services)["1795363528.0"]
    assert (call.direction, call.caller_number, call.caller_e164, call.elder_id) == ("inbound", "13800138000", "+8613800138000", elder_id)
    assert (call.queue, call.wait_seconds, call.talk_seconds, call.agent_extension) == ("hotline", 0, 5, "8001")
    assert (call.outcome, call.hangup_by, call.state) == ("answered", "agent", "ended")
    assert call.queued_at <= call.answered_at <= call.ended_at


def test_abandoned_trace_is_a_short_abandon_under_the_threshold(settings, services):
    asyncio.run(run_replay(settings, services, [trace_events("abandoned")], until=lambda rows: ended(rows, 1)))
    call = calls(services)["1795363538.4"]
    assert (call.caller_e164, call.wait_seconds, call.outcome, call.answered_at) == ("+8613900139000", 4, "short_abandon", None)
    assert call.elder_id is None and call.elder_candidates == []  # an unknown caller


def test_abandon_beyond_a_lower_threshold_counts_as_abandoned(settings, services):
    asyncio.run(run_replay(settings, services, [trace_events("abandoned")], until=lambda rows: ended(rows, 1),
                           bridge_options={"short_abandon_seconds": 3}))
    assert calls(services)["1795363538.4"].outcome == "abandoned"


def test_ivr_trace_priority_route_survey_and_chinese_name(settings, services):
    published = []

    async def listen(fake, bridge):
        client = aioredis.from_url(settings.redis_url)
        pubsub = client.pubsub()
        await pubsub.subscribe(*event_channels(settings.events_prefix))

        async def collect():
            async for message in pubsub.listen():
                if message["type"] == "message":
                    published.append(json.loads(message["data"]))

        bridge._listener = asyncio.create_task(collect())

    asyncio.run(run_replay(settings, services, [trace_events("ivr")], until=lambda rows: ended(rows, 3), between=listen))
    rows = calls(services)
    ivr = rows["1795363563.20"]
    assert (ivr.caller_name, ivr.priority, ivr.ivr_route, ivr.survey_score) == ("张大爷", 10, "emergency", 5)
    assert (ivr.outcome, ivr.wait_seconds, ivr.talk_seconds, ivr.agent_extension) == ("answered", 3, 5, "8001")
    assert ivr.ivr_at is not None and ivr.ivr_at <= ivr.queued_at
    neighbour, other = rows["1795363561.14"], rows["1795363562.18"]
    assert (neighbour.outcome, neighbour.talk_seconds, neighbour.priority) == ("answered", 6, 0)
    assert (other.outcome, other.wait_seconds) == ("abandoned", 8)
    pauses = [e for e in published if e["type"] == "agent.state" and e["interface"] == "Local/8002@agents"]
    assert [(e["state"], e["pause_reason"]) for e in pauses][:1] == [("paused", "meeting")]
    assert pauses[-1]["state"] == "ready"
    kinds = [e["type"] for e in published if e.get("call_id") == "1795363563.20"]
    assert kinds[0] == "call.started" and "call.ivr" in kinds and kinds[-1] == "call.ended"
    assert kinds.index("call.queued") < kinds.index("call.offered") < kinds.index("call.answered")


def test_resync_trace_gives_both_calls(settings, services):
    asyncio.run(run_replay(settings, services, [trace_events("resync")], until=lambda rows: ended(rows, 2)))
    rows = calls(services)
    assert (rows["1795363548.6"].outcome, rows["1795363548.6"].talk_seconds) == ("answered", 6)
    assert (rows["1795363550.10"].wait_seconds, rows["1795363550.10"].hangup_by) == (4, "caller")


def summary(rows):
    return sorted((r.linkedid, r.caller_number, r.caller_name, r.outcome, r.wait_seconds, r.talk_seconds, r.priority,
                   r.ivr_route, r.survey_score, r.agent_extension) for r in rows.values())


@pytest.mark.parametrize("seed", [1, 2])
def test_random_chunking_even_inside_utf8_characters_changes_nothing(settings, services, seed):
    asyncio.run(run_replay(settings, services, [trace_events("ivr")], until=lambda rows: ended(rows, 3)))
    whole = summary(calls(services))
    with services.db.engine.begin() as connection:
        connection.execute(CallLeg.__table__.delete())
        connection.execute(CallRecord.__table__.delete())
        connection.execute(AgentStatus.__table__.delete())
    # 1- to 7-byte pieces: 张大爷 is 9 bytes, so its characters are cut in every possible place
    asyncio.run(run_replay(settings, services, [trace_events("ivr")], until=lambda rows: ended(rows, 3),
                           fake_options={"chunk": random_chunks(seed, largest=7)}))
    assert summary(calls(services)) == whole
    assert calls(services)["1795363563.20"].caller_name == "张大爷"


def test_malformed_frames_are_skipped_and_later_events_applied(settings, services):
    events = trace_events("answered")
    junk = [b"This line has no colon\r\nEvent: Broken\r\n\r\n", b"\xff\xfe\x00binary junk\r\n\r\n",
            b"Event: Huge\r\nData: " + b"x" * 1_100_000 + b"\r\n\r\n"]
    script = events[:10] + junk + events[10:]
    bridge, _ = asyncio.run(run_replay(settings, services, [script], until=lambda rows: ended(rows, 1)))
    assert bridge.client.bad_frames == 3
    call = calls(services)["1795363528.0"]
    assert (call.outcome, call.talk_seconds) == ("answered", 5)


def test_replaying_the_same_events_twice_counts_nothing_twice(settings, services):
    events = trace_events("answered")
    bridge, _ = asyncio.run(run_replay(settings, services, [events + events], until=lambda rows: ended(rows, 1)))
    assert len(calls(services)) == 1
    assert calls(services)["1795363528.0"].talk_seconds == 5


def connect_index(events: list[bytes], marker: bytes) -> int:
    return next(i for i, e in enumerate(events) if e.startswith(marker))


def test_disconnect_mid_call_then_snapshot_shows_it_up_completes_normally(settings, services):
    events = trace_events("answered")
    cut = connect_index(events, b"Event: AgentConnect") + 1

    async def snapshot_still_up(fake, bridge):
        fake.set_snapshot(1, channels=[channel_row("1795363528.1", "1795363528.0", bridge="b1"),
                                       channel_row("1795363528.0", "1795363528.0")])

    asyncio.run(run_replay(settings, services, [events[:cut], events[cut:]], until=lambda rows: ended(rows, 1),
                           fake_options={"drop_after": {0: cut}}, between=snapshot_still_up))
    call = calls(services)["1795363528.0"]
    assert (call.outcome, call.talk_seconds, call.wait_seconds, call.outage_from) == ("answered", 5, 0, None)


def test_disconnect_mid_call_then_snapshot_shows_it_gone_closes_it_as_lost(settings, services):
    events = trace_events("answered")
    cut = connect_index(events, b"Event: AgentConnect") + 1
    bridge, fake = asyncio.run(run_replay(settings, services, [events[:cut], []], until=lambda rows: ended(rows, 1),
                                          fake_options={"drop_after": {0: cut}}))
    call = calls(services)["1795363528.0"]
    assert call.outcome == "lost_during_outage"
    assert call.outage_from is not None and call.outage_to is not None and call.outage_from <= call.outage_to
    assert fake.logins == 2 and bridge.stats.reconciles == 2


def test_a_call_that_started_during_the_outage_is_adopted(settings, services):
    async def snapshot(fake, bridge):
        fake.set_snapshot(0, channels=[channel_row("1795399999.1", "1795399999.0", number="13700137000", duration="00:00:12")],
                          entries=[[("Event", "QueueEntry"), ("Queue", "hotline"), ("Position", 1), ("Uniqueid", "1795399999.1"),
                                    ("CallerIDNum", "13700137000"), ("Wait", 3), ("Priority", 10)]])

    asyncio.run(run_replay(settings, services, [[]], until=lambda rows: len(rows) == 1, between=snapshot))
    call = calls(services)["1795399999.0"]
    assert (call.state, call.caller_e164, call.priority) == ("queued", "+8613700137000", 10)
    assert 2 <= (call.queued_at - call.started_at).total_seconds() <= 10  # started 12 s ago, queued 3 s ago


def test_bridge_restart_restores_open_calls_and_reconciles(settings, services):
    events = trace_events("answered")
    cut = connect_index(events, b"Event: AgentConnect") + 1
    asyncio.run(run_replay(settings, services, [events[:cut]], until=lambda rows: rows and list(rows.values())[0].state == "talking"))
    assert calls(services)["1795363528.0"].state == "talking"

    async def still_up(fake, bridge):
        fake.set_snapshot(0, channels=[channel_row("1795363528.1", "1795363528.0", bridge="b1")])

    # a new bridge process: the call comes back from the database and finishes normally
    asyncio.run(run_replay(settings, services, [events[cut:]], until=lambda rows: ended(rows, 1), between=still_up))
    assert (calls(services)["1795363528.0"].outcome, calls(services)["1795363528.0"].talk_seconds) == ("answered", 5)


def test_silent_peer_is_detected_by_ping_and_reconnected(settings, services):
    async def scenario():
        fake = FakeAsterisk([[], []], answer_pings=False)
        port = await fake.start()
        bridge = make_bridge(settings, services, port, ping_interval=0.2, ping_timeout=0.3)
        task = asyncio.create_task(bridge.run())
        started = time.monotonic()
        await eventually(lambda: fake.logins >= 2, timeout=5)
        elapsed = time.monotonic() - started
        bridge.stop()
        await asyncio.wait_for(task, 10)
        await fake.close()
        return elapsed

    assert asyncio.run(scenario()) < 3.0  # ping interval + timeout + backoff, not a TCP timeout


def test_a_connection_lost_while_the_snapshot_is_awaited_is_reconnected(settings, services):
    """Asterisk stops answering while the bridge waits for its login snapshot, and the ping drops
    the link: the bridge connects again and can be stopped (it once waited for the answer for ever,
    neither reconnecting nor stopping)."""
    async def scenario():
        fake = FakeAsterisk([[], []], answer_pings=False, answer_snapshots=False)
        port = await fake.start()
        bridge = make_bridge(settings, services, port, ping_interval=0.2, ping_timeout=0.3)
        bridge.client.action_timeout = 600  # the link's end must end the wait, not a timeout
        task = asyncio.create_task(bridge.run())
        try:
            await eventually(lambda: fake.logins >= 2, timeout=30)
        finally:
            bridge.stop()
            await asyncio.wait_for(task, 30)
            await fake.close()

    asyncio.run(scenario())


def test_bad_credentials_give_a_clear_error_and_back_off(settings, services, caplog):
    async def scenario():
        fake = FakeAsterisk(secret="another-secret")
        port = await fake.start()
        bridge = make_bridge(settings, services, port, backoff_initial=0.2, backoff_max=1.0)
        task = asyncio.create_task(bridge.run())
        await asyncio.sleep(2.0)
        bridge.stop()
        await asyncio.wait_for(task, 10)
        await fake.close()
        return fake.login_attempts, bridge.client.last_error

    attempts, error = asyncio.run(scenario())
    assert 2 <= attempts <= 6  # 0.1–0.2, 0.2–0.4, 0.4–0.8 s … : retries, but no tight loop
    assert "Authentication failed" in error and USER in error
    assert "AMI login to" in caplog.text and SECRET not in caplog.text


def _ping(client) -> bool:
    try:
        return client.ping()
    except redis.RedisError:
        return False


def test_events_wait_while_redis_is_down_and_go_out_when_it_returns(settings, services, tmp_path):
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"

    async def scenario():
        fake = FakeAsterisk([trace_events("answered")])
        ami_port = await fake.start()
        bridge = Bridge(database=services.db, rollups=rollup.Keeper(tz=settings.tz), redis=aioredis.from_url(url), area_code="0411", host="127.0.0.1",
                        port=ami_port, username=USER, secret=SECRET, backoff_initial=0.05)
        task = asyncio.create_task(bridge.run())
        await eventually(lambda: ended(calls(services), 1), timeout=30)  # recorded while Redis is down
        await bridge.wait_idle()
        kept = len(bridge.publisher.pending)
        server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                   "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis.from_url(url)
            await eventually(lambda: _ping(client), timeout=10)
            pubsub = client.pubsub()
            pubsub.subscribe(event_channels("hotline").calls)  # the bridge's default prefix
            received = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(m.get("type") == "call.ended" for m in received):
                message = await asyncio.to_thread(pubsub.get_message, timeout=0.2)
                if message and message["type"] == "message":
                    received.append(json.loads(message["data"]))
            bridge.stop()
            await asyncio.wait_for(task, 30)
            await fake.close()
            return kept, received, len(bridge.publisher.pending)
        finally:
            server.terminate()
            server.wait(10)

    kept, received, left = asyncio.run(scenario())
    assert kept > 5 and left == 0
    kinds = [m["type"] for m in received]
    assert kinds[0] == "call.started" and kinds[-1] == "call.ended"  # in order, from the first
    assert kinds.index("call.answered") < kinds.index("call.ended")


def test_every_published_event_is_already_in_the_database(settings, services):
    """Commit, then publish: whoever hears an event can read what it announces."""
    seen = []

    async def listen(fake, bridge):
        client = aioredis.from_url(settings.redis_url)
        pubsub = client.pubsub()
        await pubsub.subscribe(event_channels(settings.events_prefix).calls)

        def state_in_database(call_id):
            with services.db.session_scope() as session:
                return session.exec(select(CallRecord.state).where(CallRecord.linkedid == call_id)).first()

        async def check():
            async for message in pubsub.listen():
                if message["type"] == "message":
                    event = json.loads(message["data"])
                    seen.append((event["type"], await asyncio.to_thread(state_in_database, event["call_id"])))

        bridge._checker = asyncio.create_task(check())

    asyncio.run(run_replay(settings, services, [trace_events("answered")], between=listen,
                           until=lambda rows: ended(rows, 1) and ("call.ended", "ended") in seen))
    assert seen and all(state is not None for _, state in seen)
    assert seen[-1] == ("call.ended", "ended")


class Numbered(Event):
    stream: ClassVar[str] = "queue"
    n: int


def test_concurrent_flushes_publish_each_event_once_in_order(settings, services):
    """The batch loop and the retry loop may flush at the same moment: nothing is lost, doubled
    or reordered (they once raced on the same pending events and the bridge died)."""
    async def scenario():
        client = aioredis.from_url(settings.redis_url)
        pubsub = client.pubsub()
        prefix = f"{settings.events_prefix}-flush"
        await pubsub.subscribe(f"{prefix}:queue")
        publisher = Publisher(aioredis.from_url(settings.redis_url), prefix=prefix)
        for n in range(3000):
            publisher.add(Numbered(n=n))
        results = await asyncio.gather(*(publisher.flush() for _ in range(3)))
        received, deadline = [], time.monotonic() + 10
        while len(received) < 3000 and time.monotonic() < deadline:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message is not None:
                received.append(json.loads(message["data"])["n"])
        await pubsub.aclose()
        await client.aclose()
        return results, received, publisher.published

    results, received, published = asyncio.run(scenario())
    assert results == [True, True, True] and published == 3000
    assert received == list(range(3000))


def replay_with_the_database_behind_a_proxy(settings, services, fault, timeout: int = 15) -> Bridge:
    """Both traces through a bridge whose PostgreSQL link goes through a TcpProxy; `fault(proxy,
    fake, bridge)` runs meanwhile. Returns the bridge once both calls are recorded as ended.
    `timeout`: the bridge's DATABASE_TIMEOUT_SECONDS."""
    url = make_url(settings.database_url)
    proxy = TcpProxy(url.port or 5432)
    database = Database(settings.model_copy(update={"database_url": url.set(port=proxy.port).render_as_string(hide_password=False),
                                                    "database_timeout_seconds": timeout}))
    try:
        bridge, _ = asyncio.run(run_replay(settings, services, [trace_events("answered") + trace_events("abandoned")],
                                           until=lambda rows: ended(rows, 2),
                                           between=lambda fake, bridge: fault(proxy, fake, bridge),
                                           bridge_options={"database": database}))
    finally:
        proxy.close()
        database.engine.dispose()
    return bridge


@pytest.mark.skipif(BACKEND != "postgresql", reason="the outage is a cut connection to PostgreSQL (SQLite is a file)")
def test_calls_that_end_during_a_database_outage_are_recorded_when_it_returns(settings, services, caplog):
    """The database goes away just as calls come and end: the bridge keeps the changes, in order,
    retries, and records every call as it ended once the database is back (it used to drop the
    batch: those calls stayed open forever)."""
    async def outage(proxy, fake, bridge):
        await asyncio.wait_for(bridge.client.connected.wait(), 30)
        proxy.reject()  # before the first event arrives (the fake sends them after the bridge's snapshot)
        await asyncio.wait_for(fake.script_done.wait(), 30)
        await eventually(lambda: bridge.stats.errors >= 3 and bridge.held, 30)  # retried, still held
        proxy.heal()

    bridge = replay_with_the_database_behind_a_proxy(settings, services, outage)
    rows = calls(services)
    answered, abandoned = rows["1795363528.0"], rows["1795363538.4"]
    assert (answered.outcome, answered.talk_seconds, answered.agent_extension) == ("answered", 5, "8001")
    assert (abandoned.outcome, abandoned.wait_seconds) == ("short_abandon", 4)
    assert not bridge.held
    # one error per outage in the log, not one a second per retry
    assert len([r for r in caplog.records if "could not record" in r.getMessage()]) == 1
    assert len([r for r in caplog.records if "could not refresh the call rollup" in r.getMessage()]) <= 1


@pytest.mark.skipif(BACKEND != "postgresql", reason="the hung connection is PostgreSQL behind a TCP proxy (SQLite is a file)")
def test_a_hung_database_connection_is_reported_and_loses_no_call(settings, services, monkeypatch):
    """The link to PostgreSQL goes silent mid-write (a black hole: no error, no answer). The
    bridge says so (log, heartbeat) and /healthz answers 503 with the bridge not recording; once
    the link is back every call is recorded as it ended and /healthz is healthy again."""
    from fastapi.testclient import TestClient

    from callcenter.calls import bridge as bridge_module
    from callcenter.main import create_app

    monkeypatch.setattr(bridge_module, "DB_STALL_SECONDS", 0.5)
    health = []

    def healthz(expected: int) -> bool:
        """/healthz as an operator polls it, until it answers `expected`."""
        with TestClient(create_app(settings)) as client:
            response = client.get("/healthz")
        health.append((response.status_code, response.json()["bridge"]))
        return response.status_code == expected

    async def hang(proxy, fake, bridge):
        await asyncio.wait_for(bridge.client.connected.wait(), 5)
        proxy.blackhole()
        await asyncio.wait_for(fake.script_done.wait(), 5)
        await eventually(lambda: healthz(503), 10)
        assert bridge.db_stalled_since is not None and not ended(calls(services), 2)
        # Healed. The hung write fails (its connection cut, or, for a connection attempt whose
        # bytes the black hole ate, DATABASE_TIMEOUT_SECONDS later) and is retried.
        proxy.heal()
        await eventually(lambda: healthz(200), 15)

    replay_with_the_database_behind_a_proxy(settings, services, hang, timeout=3)
    stalled, healthy = next(bridge for code, bridge in health if code == 503), health[-1][1]
    assert (stalled["running"], stalled["recording"]) == (True, False)
    assert health[-1][0] == 200 and (healthy["recording"], healthy["held"]) == (True, 0)
    rows = calls(services)
    assert (rows["1795363528.0"].outcome, rows["1795363528.0"].talk_seconds) == ("answered", 5)
    assert rows["1795363538.4"].outcome == "short_abandon"


def member_row(queue: str, paused: str = "0", reason: str = "") -> list[tuple[str, object]]:
    return [("Event", "QueueMember"), ("Queue", queue), ("Name", "王芳"), ("Location", "PJSIP/8001"), ("Status", 1),
            ("Paused", paused), ("PausedReason", reason), ("InCall", 0)]


def test_a_restarted_bridge_keeps_each_agents_time_in_state_and_pause_per_queue(settings, services):
    """Issue 15 #3 and #4: the first bridge sees 王芳 paused for a meal in one of her two queues;
    a second bridge process finds her so in its snapshot: the same state since the same moment,
    not a new stretch starting at its start."""
    def agent_row():
        with services.db.session_scope() as session:
            return session.get(AgentStatus, "PJSIP/8001")

    async def run(members) -> None:
        fake = FakeAsterisk([[]])
        fake.set_snapshot(0, members=members)
        port = await fake.start()
        bridge = make_bridge(settings, services, port)
        task = asyncio.create_task(bridge.run())
        await eventually(lambda: (row := agent_row()) is not None and row.queues == ["emergency", "hotline"])
        await bridge.wait_idle()
        bridge.stop()
        await asyncio.wait_for(task, 10)
        await fake.close()

    members = [member_row("hotline", "1", "meal"), member_row("emergency")]
    asyncio.run(run(members))
    first = agent_row()
    assert (first.state, first.paused, first.paused_in) == ("ready", False, {"hotline": "meal"})
    time.sleep(1.1)
    asyncio.run(run(list(reversed(members))))
    again = agent_row()
    assert (again.state, again.paused_in, again.since) == ("ready", {"hotline": "meal"}, first.since)
    with services.db.session_scope() as session:
        stretches = session.exec(select(AgentStateLog).where(AgentStateLog.interface == "PJSIP/8001")).all()
    assert [(row.activity, row.ended_at) for row in stretches] == [("ready", None)]


def test_a_bridge_whose_redis_link_went_silent_keeps_recording_and_stops_when_told(settings, services, redis_proxy):
    """A half-open Redis link (a NAT that forgot it: nothing passes, nothing closes) must not hang
    the bridge built as `callcenter ami` builds it: the calls are still recorded, and told to stop
    it stops (it once waited forever on its first Redis command after the link went silent)."""
    from callcenter.calls import bridge as bridge_module

    proxy, proxied_url = redis_proxy

    async def scenario():
        fake = FakeAsterisk([trace_events("answered")])
        ami_port = await fake.start()
        proxy.blackhole()
        bridge = bridge_module.from_settings(settings.model_copy(update={"redis_url": proxied_url}), host="127.0.0.1", port=ami_port,
                                             username=USER, secret=SECRET, rollups=rollup.Keeper(tz=settings.tz), database=services.db)
        task = asyncio.create_task(bridge.run())
        try:
            await eventually(lambda: ended(calls(services), 1), timeout=60)  # recorded though Redis is unreachable
            bridge.stop()
            # Its last words get 3 s. Before, the AMI goodbye, the last batch and the last words each
            # waited out Redis's 5 s socket timeout, one after the other (and more under load).
            await asyncio.wait_for(asyncio.shield(task), 15)
        finally:
            task.cancel()
            await fake.close()
        return len(bridge.publisher.pending)

    assert asyncio.run(scenario()) > 5  # the events it could not publish are still held, not lost


def test_care_call_traces_record_how_the_elder_answered(settings, services):
    """Real Asterisk 22 traces of care calls (Originate's ChannelId is the Linkedid): the row
    keeps the elder's DialStatus, the elder's answer and talk, and the number called."""
    elder_id = add_elder(services, number="13800138001")
    scripts = [trace_events("care-answered") + trace_events("care-busy") + trace_events("care-agent-missed")]
    asyncio.run(run_replay(settings, services, scripts, until=lambda rows: ended(rows, 3)))
    rows = calls(services)
    answered, busy, missed = rows["care-answered"], rows["care-busy"], rows["care-agent-missed"]
    assert (answered.direction, answered.dial_status, answered.talk_seconds, answered.hangup_by) == ("outbound", "ANSWER", 2, "caller")
    assert (answered.caller_e164, answered.elder_id, answered.agent_extension) == ("+8613800138001", elder_id, "8001")
    assert answered.started_at < answered.answered_at < answered.ended_at
    assert (busy.dial_status, busy.answered_at, busy.talk_seconds, busy.caller_e164) == ("BUSY", None, None, "+8613800138007")
    assert (missed.dial_status, missed.answered_at, missed.caller_number) == (None, None, None)  # nothing was dialled
