"""The realtime hub across two real web processes: a call replayed through the bridge reaches the
right agent only, whichever process holds the socket; the supervisor sees everything."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
import pytest
import redis
import websockets

from tests.ami.fake_asterisk import trace_events
from tests.calls.test_bridge import ended, run_replay
from tests.conftest import PASSWORD, claim_redis_db, make_user
from tests.test_cli import CALLCENTER, free_port


@contextmanager
def web_processes(settings, *overrides: dict):
    """`callcenter web` processes on the test settings, one per dict of environment overrides;
    yields their hosts."""
    env = {k: v for k, v in os.environ.items() if k not in ("AMI_HOST",)}
    env |= {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
            "SECRET_KEY": settings.secret_key.get_secret_value(), "DATA_DIR": str(settings.data_dir),
            "EVENTS_PREFIX": settings.events_prefix, "PASSWORD_HASH_TIME_COST": str(settings.password_hash_time_cost),
            "PASSWORD_HASH_MEMORY_KIB": str(settings.password_hash_memory_kib)}
    ports = [free_port() for _ in overrides]
    processes = [subprocess.Popen([CALLCENTER, "web", "--port", str(port)], env=env | extra, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for port, extra in zip(ports, overrides)]
    try:
        for port in ports:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            else:
                raise AssertionError(f"web process on {port} did not start")
        yield [f"127.0.0.1:{port}" for port in ports]
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


@pytest.fixture
def two_web_processes(settings, services):
    with web_processes(settings, {}, {}) as hosts:
        yield hosts


def session_cookie(host: str, user) -> str:
    response = httpx.post(f"http://{host}/api/auth/login", json={"username": user.username, "password": PASSWORD})
    assert response.status_code == 200
    return response.cookies["cc_session"]


async def collect(host: str, cookie: str, into: list, ready: asyncio.Event, stop: asyncio.Event) -> None:
    async with websockets.connect(f"ws://{host}/ws", additional_headers={"Cookie": f"cc_session={cookie}"}) as socket:
        hello = json.loads(await socket.recv())
        into.append(hello)
        while not hello.get("live"):  # the hub is still subscribing: its resync frame says when it is up
            frame = json.loads(await socket.recv())
            into.append(frame)
            if frame.get("type") == "resync":
                break
        ready.set()
        while not stop.is_set():
            try:
                into.append(json.loads(await asyncio.wait_for(socket.recv(), 0.2)))
            except asyncio.TimeoutError:
                continue


def test_a_call_reaches_its_agent_only_and_the_supervisor_sees_all(settings, services, two_web_processes):
    host_a, host_b = two_web_processes
    agent_1 = make_user(services, "agent", sip_extension="8001")
    agent_2 = make_user(services, "agent", sip_extension="8002")
    boss = make_user(services, "supervisor")
    cookies = {name: session_cookie(host_a, user) for name, user in (("a1", agent_1), ("a2", agent_2), ("boss", boss))}
    received = {"a1": [], "a2": [], "boss": []}

    async def scenario():
        stop = asyncio.Event()
        ready = {name: asyncio.Event() for name in received}
        where = {"a1": host_a, "a2": host_b, "boss": host_b}
        tasks = [asyncio.create_task(collect(where[n], cookies[n], received[n], ready[n], stop)) for n in received]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready.values())), 10)

        def waiting_counts(name: str) -> list[int]:
            return [e["waiting"] for e in received[name] if e.get("type") == "queue.waiting"]

        async def call_ended_everywhere():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if any(e.get("type") == "call.ended" for e in received["a1"]) and any(
                        e.get("type") == "call.ended" for e in received["boss"]) and waiting_counts("a2")[-1:] == [0]:
                    return
                await asyncio.sleep(0.1)

        await run_replay(settings, services, [trace_events("answered")], until=lambda rows: ended(rows, 1))
        await call_ended_everywhere()
        await asyncio.sleep(0.3)  # time for a stray event to arrive at a2
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    kinds = lambda name: [e["type"] for e in received[name] if e.get("call_id") == "1795363528.0"]  # noqa: E731
    hello = received["a1"][0]
    assert (hello["type"], hello["role"], hello["extension"]) == ("hello", "agent", "8001")
    assert kinds("a1")[0] == "call.offered" and "call.answered" in kinds("a1") and kinds("a1")[-1] == "call.ended"
    assert kinds("a2") == []  # someone else's call never reaches this console
    assert kinds("boss")[0] == "call.started" and kinds("boss")[-1] == "call.ended"
    assert any(e["type"] == "agent.state" and e["agent"] == "8001" for e in received["boss"])
    assert any(e["type"] == "agent.state" and e["agent"] == "8001" for e in received["a1"])
    assert not any(e["type"] == "agent.state" for e in received["a2"])
    waiting = [e["waiting"] for e in received["a2"] if e["type"] == "queue.waiting"]
    assert waiting and waiting[-1] == 0 and set(waiting) <= {0, 1}  # the latest count, at most every 0.25 s


def test_websocket_refuses_strangers_and_other_sites(settings, services, two_web_processes):
    host = two_web_processes[0]
    agent = make_user(services, "agent", sip_extension="8001")
    cookie = session_cookie(host, agent)

    async def close_code(headers) -> int | None:
        try:
            async with websockets.connect(f"ws://{host}/ws", additional_headers=headers) as socket:
                await socket.recv()
        except websockets.exceptions.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        except websockets.exceptions.InvalidStatus as exc:
            return exc.response.status_code
        return None

    assert asyncio.run(close_code({})) in (4401, 403)
    assert asyncio.run(close_code({"Cookie": "cc_session=forged"})) in (4401, 403)
    evil = {"Cookie": f"cc_session={cookie}", "Origin": "https://evil.example"}
    assert asyncio.run(close_code(evil)) in (4403, 403)


def test_snapshot_shows_an_agent_only_its_own_calls(settings, services, agent_client):
    from callcenter.calls import service as calls_service
    from callcenter.calls.tracker import Call
    from callcenter.calls.written import Written
    from callcenter.timeutil import utcnow

    me = agent_client.get("/api/auth/me").json()
    with services.db.session_scope() as session:
        from callcenter.auth.models import User

        session.get(User, me["id"]).sip_extension = "8001"
    for linkedid, interface, state in (("1.0", "Local/8001@agents", "talking"), ("2.0", "Local/8002@agents", "talking"),
                                       ("3.0", None, "queued")):
        call = Call(linkedid=linkedid, direction="inbound", context="from-elders", started_at=utcnow(), state=state,
                    agent_interface=interface, queue="hotline")
        with services.db.session_scope() as session:
            calls_service.record_call(session=session, call=call, area_code="0411", written=Written())  # never queued: no hour
    body = agent_client.get("/api/realtime/snapshot").json()
    assert [c["call_id"] for c in body["calls"]] == ["1.0"]
    assert body["waiting"] == {"hotline": 1}
    assert body["me"] == {"role": "agent", "extension": "8001", "wrapup_seconds": 30}


def test_a_simulated_call_reaches_the_agent_who_is_ready_on_either_process(settings, services, two_web_processes):
    """The AMI simulator (not a replay) places the call; 8001 is ready, 8002 is not."""
    from tests.telephony import LiveTelephony

    host_a, host_b = two_web_processes
    agents = {"a1": make_user(services, "agent", sip_extension="8001"), "a2": make_user(services, "agent", sip_extension="8002")}
    cookies = {name: session_cookie(host_b if name == "a1" else host_a, user) for name, user in agents.items()}
    cookies["boss"] = session_cookie(host_a, make_user(services, "supervisor"))
    received = {"a1": [], "a2": [], "boss": []}
    telephony = LiveTelephony(settings, services)
    try:
        telephony.member("8001").in_queue = True

        async def scenario():
            stop = asyncio.Event()
            ready = {name: asyncio.Event() for name in received}
            where = {"a1": host_b, "a2": host_a, "boss": host_a}
            tasks = [asyncio.create_task(collect(where[n], cookies[n], received[n], ready[n], stop)) for n in received]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready.values())), 30)
            await asyncio.sleep(0.5)
            telephony.place_call("13800138000")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (
                    any(e.get("type") == "call.answered" for e in received["a1"])
                    and any(e.get("type") == "call.answered" for e in received["boss"])):
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)  # time for a stray event to arrive at a2
            stop.set()
            await asyncio.gather(*tasks)

        asyncio.run(scenario())
    finally:
        telephony.close()
    calls_of = lambda name: [e for e in received[name] if e.get("type", "").startswith("call.")]  # noqa: E731
    assert [e["type"] for e in calls_of("a1")] == ["call.offered", "call.answered"]
    assert calls_of("a1")[-1]["caller"] == "+8613800138000" and calls_of("a1")[-1]["agent"] == "8001"
    assert calls_of("a2") == []
    assert [e["type"] for e in calls_of("boss")][:2] == ["call.started", "call.updated"]
    assert "call.answered" in [e["type"] for e in calls_of("boss")]


def test_waiting_counts_are_coalesced_to_the_latest_per_queue():
    from callcenter.realtime.hub import Hub, Subscriber

    hub = Hub("redis://unused")
    agent = Subscriber(user_id=1, role="agent", extension="8001")
    hub.add(agent)
    for call_id, state in (("a", "queued"), ("b", "queued"), ("a", "talking")):
        hub.dispatch(json.dumps({"type": "call.queued", "call_id": call_id, "queue": "hotline", "state": state, "agent": None}))
    assert agent.queue.empty()  # nothing yet: counts go out on the next tick
    hub.flush_waiting()
    assert json.loads(agent.queue.get_nowait()) == {"type": "queue.waiting", "queue": "hotline", "waiting": 1}
    hub.flush_waiting()
    assert agent.queue.empty()  # unchanged since: nothing more


def other_redis_db(url: str) -> str:
    """The same Redis server as `url`, another database of this run's own."""
    other = claim_redis_db()
    assert urlsplit(other).netloc == urlsplit(url).netloc and other != url
    return other


def test_deployments_sharing_a_redis_server_hear_only_their_own_events(settings, services):
    """Two cities on one Redis server, each on its own database, EVENTS_PREFIX cityA / cityB:
    pub/sub ignores the database number, so only the prefix keeps a console from popping the
    other city's calls and an emergency alert from naming the other city's elder. (Both share
    the test's SQL database: what is under test is Redis.)"""
    from tests.ivr.fake_agi import LINKEDID as IVR_CALL
    from tests.ivr.test_scripts import make_elder, open_all_day, record_call, run_calls

    url_b = other_redis_db(settings.redis_url)
    redis.Redis.from_url(url_b).flushdb()
    prefix = {name: f"city{name.upper()}{os.getpid()}" for name in "ab"}  # runs side by side must not meet either
    city = {"a": settings.model_copy(update={"events_prefix": prefix["a"]}),
            "b": settings.model_copy(update={"events_prefix": prefix["b"], "redis_url": url_b})}
    call_of = {"a": "1795363528.0", "b": "1795363538.4"}  # the answered and the abandoned traces
    boss = make_user(services, "supervisor")
    open_all_day(services)
    make_elder(services)
    record_call(services)  # the IVR call, as the bridge recorded it
    received = {"a": [], "b": []}

    def has(name: str, kind: str, call_id: str) -> bool:
        return any(e.get("type") == kind and e.get("call_id") == call_id for e in received[name])

    with web_processes(settings, {"EVENTS_PREFIX": prefix["a"]}, {"EVENTS_PREFIX": prefix["b"], "REDIS_URL": url_b}) as hosts:
        host = dict(zip("ab", hosts))
        cookies = {name: session_cookie(host[name], boss) for name in host}

        async def scenario():
            stop = asyncio.Event()
            ready = {name: asyncio.Event() for name in received}
            tasks = [asyncio.create_task(collect(host[n], cookies[n], received[n], ready[n], stop)) for n in received]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready.values())), 30)
            for name, trace in (("a", "answered"), ("b", "abandoned")):
                await run_replay(city[name], services, [trace_events(trace)],
                                 until=lambda rows, c=call_of[name]: c in rows and rows[c].state == "ended")
            _, alerts = await asyncio.to_thread(run_calls, services, city["a"], {"keys": ["9"]})  # city A's elder presses 9
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not (
                    has("a", "call.ended", call_of["a"]) and has("b", "call.ended", call_of["b"])
                    and has("a", "ivr.emergency", IVR_CALL)):
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # time for a stray event to arrive
            stop.set()
            await asyncio.gather(*tasks)
            return alerts

        alerts = asyncio.run(scenario())

    call_ids = {name: {e.get("call_id") for e in received[name]} - {None} for name in received}
    assert has("a", "call.ended", call_of["a"]) and has("b", "call.ended", call_of["b"])
    assert call_ids["a"] == {call_of["a"], IVR_CALL}  # nothing of city B
    assert call_ids["b"] == {call_of["b"]}  # nothing of city A: neither its call nor its alert
    assert [a["call_id"] for a in alerts] == [IVR_CALL]  # published on cityA:calls
    assert has("a", "ivr.emergency", IVR_CALL) and not any(e.get("type") == "ivr.emergency" for e in received["b"])


def test_the_hub_stops_even_if_closing_its_redis_connection_never_ends(settings, monkeypatch):
    """redis-py's close can wait forever on a socket that never finishes closing (redis/redis-py#3941;
    once seen here as a test's app teardown hanging 13 min): a web process must stop all the same."""
    import redis.asyncio as aioredis

    from callcenter.realtime.hub import Hub

    async def never_closes(self, *args, **kwargs):
        await asyncio.sleep(3600)

    monkeypatch.setattr(aioredis.Redis, "aclose", never_closes)

    async def scenario():
        hub = Hub(settings.redis_url, events_prefix=settings.events_prefix)
        await hub.start()
        deadline = time.monotonic() + 30
        while not hub.live and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert hub.live, "the hub did not subscribe"
        await asyncio.wait_for(hub.stop(), 30)

    asyncio.run(scenario())
