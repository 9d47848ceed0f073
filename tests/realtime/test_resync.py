"""Live events across a Redis outage, through a real `callcenter web` process whose Redis link
goes through a TCP proxy this test owns (tests/faults.py): frames are numbered per channel, and
when the hub's subscription comes back every socket is told to reload its snapshot, since the
events published meanwhile are gone (pub/sub keeps nothing for an absent subscriber)."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
import redis
import redis.asyncio as aioredis
import websockets
from sqlmodel import select

from callcenter.realtime.events import event_channels
from tests.conftest import make_user
from tests.realtime.test_hub import session_cookie, web_processes

TIMEOUT = 20.0


@pytest.fixture
def outage_settings(settings):
    """The test settings with a live-events prefix of this test's own: only this test's hub
    listens on its channels, so the subscription can be watched from the Redis server."""
    return settings.model_copy(update={"events_prefix": f"resync{os.getpid()}"})


async def subscribed(url: str, channel: str, count: int) -> None:
    """Wait until the Redis server sees `count` subscribers on `channel` (the hub's subscription
    as Redis sees it, not through the proxy)."""
    client = aioredis.Redis.from_url(url)
    try:
        async with asyncio.timeout(TIMEOUT):
            while (await client.pubsub_numsub(channel))[0][1] != count:
                await asyncio.sleep(0.05)
    finally:
        await client.aclose()


async def next_frame(socket, kind: str) -> dict:
    """The next frame of type `kind` (heartbeats and others skipped)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            frame = json.loads(await socket.recv())
            if frame.get("type") == kind:
                return frame


def test_frames_are_numbered_and_a_redis_outage_ends_in_a_resync(settings, outage_settings, services, redis_proxy):
    proxy, proxied_url = redis_proxy
    channels = event_channels(outage_settings.events_prefix)
    publisher = redis.Redis.from_url(settings.redis_url)  # the bridge's side, not through the proxy
    boss = make_user(services, "supervisor")

    def publish(channel: str, **event) -> None:
        publisher.publish(channel, json.dumps(event))

    async def scenario(host: str, cookie: str) -> dict:
        got = {}
        async with websockets.connect(f"ws://{host}/ws", additional_headers={"Cookie": f"cc_session={cookie}"}) as socket:
            assert json.loads(await socket.recv())["type"] == "hello"
            await subscribed(settings.redis_url, channels.calls, 1)
            publish(channels.calls, type="call.started", call_id="1.1", state="ringing")
            publish(channels.agents, type="agent.state", agent="8001", state="ready")
            publish(channels.calls, type="call.queued", call_id="1.1", state="queued", queue="hotline")
            got["before"] = [await next_frame(socket, t) for t in ("call.started", "agent.state", "call.queued")]

            proxy.reject()  # Redis is gone for the hub (and only for it)
            await subscribed(settings.redis_url, channels.calls, 0)
            publish(channels.calls, type="call.ended", call_id="1.1", state="ended")  # nobody hears this one
            await asyncio.sleep(1.0)  # an outage of a few seconds: the hub retries meanwhile
            async with websockets.connect(f"ws://{host}/ws", additional_headers={"Cookie": f"cc_session={cookie}"}) as late:
                got["hello during"] = json.loads(await late.recv())  # a page opened in the outage is told so
                proxy.heal()
                got["resync"] = await next_frame(socket, "resync")
                got["late resync"] = await next_frame(late, "resync")
            await subscribed(settings.redis_url, channels.calls, 1)
            async with websockets.connect(f"ws://{host}/ws", additional_headers={"Cookie": f"cc_session={cookie}"}) as again:
                got["hello after"] = json.loads(await again.recv())
            publish(channels.calls, type="call.started", call_id="2.2", state="ringing")
            got["after"] = await next_frame(socket, "call.started")
        return got

    with web_processes(settings, {"REDIS_URL": proxied_url, "EVENTS_PREFIX": outage_settings.events_prefix}) as (host,):
        got = asyncio.run(scenario(host, session_cookie(host, boss)))

    started, agent, queued = got["before"]
    assert [(f["channel"], f["seq"]) for f in got["before"]] == [("calls", 1), ("agents", 1), ("calls", 2)]
    assert started["call_id"] == "1.1" and agent["agent"] == "8001" and queued["queue"] == "hotline"
    epoch = started["epoch"]
    assert epoch and agent["epoch"] == queued["epoch"] == epoch
    assert got["resync"] == got["late resync"] == {"type": "resync", "epoch": epoch, "reason": "redis"}
    assert (got["hello during"]["type"], got["hello during"]["live"]) == ("hello", False)
    assert (got["hello after"]["type"], got["hello after"]["live"]) == ("hello", True)
    # The same socket goes on numbering where it was: the lost call.ended never took a number.
    assert (got["after"]["call_id"], got["after"]["channel"], got["after"]["seq"], got["after"]["epoch"]) == ("2.2", "calls", 3, epoch)


def test_a_half_open_link_is_found_and_replaced(settings, outage_settings, services, redis_proxy):
    """The proxy keeps the hub's connection open but passes nothing (a NAT that forgot it): the
    hub's PING goes unanswered, it drops the link by itself, and resyncs once Redis is reachable."""
    proxy, proxied_url = redis_proxy
    channels = event_channels(outage_settings.events_prefix)
    boss = make_user(services, "supervisor")

    async def scenario(host: str, cookie: str) -> dict:
        async with websockets.connect(f"ws://{host}/ws", additional_headers={"Cookie": f"cc_session={cookie}"}) as socket:
            assert json.loads(await socket.recv())["type"] == "hello"
            await subscribed(settings.redis_url, channels.calls, 1)
            proxy.blackhole()
            await subscribed(settings.redis_url, channels.calls, 0)  # the hub gave the silent link up itself
            proxy.heal()
            return await next_frame(socket, "resync")

    with web_processes(settings, {"REDIS_URL": proxied_url, "EVENTS_PREFIX": outage_settings.events_prefix,
                                  "LIVE_PING_SECONDS": "1"}) as (host,):
        resync = asyncio.run(scenario(host, session_cookie(host, boss)))
    assert resync["type"] == "resync" and resync["reason"] == "redis"


def test_waiting_counts_are_read_again_after_an_outage(settings, outage_settings, services, redis_proxy):
    """A caller who left the queue while the hub heard nothing must not stay counted: after the
    resync the hub counts the waiting callers from the database again and sends the count."""
    from callcenter.calls.models import CallRecord
    from callcenter.timeutil import utcnow

    proxy, proxied_url = redis_proxy
    channels = event_channels(outage_settings.events_prefix)
    publisher = redis.Redis.from_url(settings.redis_url)
    agent = make_user(services, "agent", sip_extension="8001")

    def set_state(state: str) -> None:
        """What the bridge writes before it publishes."""
        with services.db.session_scope() as session:
            row = session.exec(select(CallRecord).where(CallRecord.linkedid == "7.7")).first()
            if row is None:
                row = CallRecord(linkedid="7.7", direction="inbound", context="from-elders", queue="hotline",
                                 caller_number="13800138000", started_at=utcnow())
                session.add(row)
            row.state = state

    def call_event(state: str) -> str:
        return json.dumps({"type": f"call.{state}", "call_id": "7.7", "state": state, "queue": "hotline", "agent": None})

    async def scenario(host: str, cookie: str) -> list[int]:
        counts = []
        async with websockets.connect(f"ws://{host}/ws", additional_headers={"Cookie": f"cc_session={cookie}"}) as socket:
            assert json.loads(await socket.recv())["type"] == "hello"
            await subscribed(settings.redis_url, channels.calls, 1)
            set_state("queued")
            publisher.publish(channels.calls, call_event("queued"))
            counts.append((await next_frame(socket, "queue.waiting"))["waiting"])
            proxy.reject()
            await subscribed(settings.redis_url, channels.calls, 0)
            set_state("ended")  # the caller hangs up …
            publisher.publish(channels.calls, call_event("ended"))  # … and nobody hears it
            proxy.heal()
            await next_frame(socket, "resync")
            counts.append((await next_frame(socket, "queue.waiting"))["waiting"])
        return counts

    with web_processes(settings, {"REDIS_URL": proxied_url, "EVENTS_PREFIX": outage_settings.events_prefix}) as (host,):
        counts = asyncio.run(scenario(host, session_cookie(host, agent)))
    assert counts == [1, 0]
