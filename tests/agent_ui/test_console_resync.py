"""The console in headless Chromium when live events are lost while its socket stays open: the
web process's Redis link cut through a TCP proxy this test owns (the call ends meanwhile: a ghost
call until the hub's `resync` frame makes the console reload its snapshot), and a frame lost on
the way to the browser (the next frame's `seq` skips a number: the console reloads too)."""

from __future__ import annotations

import os
import re

import pytest
import redis
from playwright.sync_api import expect

from callcenter.realtime.events import event_channels
from callcenter.main import create_app
from tests.agent_ui.test_console import TIMEOUT, go_ready, make_elder, make_zhang, open_console
from tests.browser import screenshot, serving
from tests.conftest import make_user
from tests.telephony import LiveTelephony, call_rows, wait_for


@pytest.fixture
def agent(services):
    return make_user(services, "agent", username="wangfang", display_name="王芳", sip_extension="8001")


@pytest.fixture
def own_events(settings):
    """The test settings with a live-events prefix of this test's own (its hub is then the only
    subscriber on its channels, which the test watches from the Redis server)."""
    return settings.model_copy(update={"events_prefix": f"consoleresync{os.getpid()}"})


def subscribers(settings, channel: str) -> int:
    return redis.Redis.from_url(settings.redis_url).pubsub_numsub(channel)[0][1]


def until(page, predicate, message: str, timeout_ms: int = TIMEOUT) -> None:
    """Wait for `predicate` while Playwright runs (its route handlers run only then)."""
    for _ in range(timeout_ms // 100):
        if predicate():
            return
        page.wait_for_timeout(100)
    raise AssertionError(message)


def test_a_call_that_ended_while_the_server_lost_redis_leaves_no_ghost(page, settings, own_events, services, agent,
                                                                       redis_proxy):
    proxy, proxied_url = redis_proxy
    calls_channel = event_channels(own_events.events_prefix).calls
    make_zhang(services)
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket))
    telephony = LiveTelephony(own_events, services)  # the bridge publishes straight to Redis
    try:
        with serving(create_app(own_events.model_copy(update={"redis_url": proxied_url}))) as url:
            open_console(page, url, agent)
            go_ready(page)
            telephony.place_call("13800138000")
            expect(page.locator("#elder-name")).to_have_text("张大爷", timeout=TIMEOUT)
            expect(page.locator("#call-state")).to_have_text("通话中", timeout=TIMEOUT)
            call = wait_for(lambda: next((c for c in call_rows(services) if c.state == "talking"), None))

            proxy.reject()  # the web process loses Redis; the browser's socket stays open
            wait_for(lambda: subscribers(settings, calls_channel) == 0, message="the hub's subscription did not drop")
            telephony.caller_hangs_up(call.linkedid)
            wait_for(lambda: call_rows(services)[0].state == "ended")  # published, heard by nobody
            expect(page.locator("#call-state")).to_have_text("通话中")  # the ghost, for now

            proxy.heal()
            expect(page.locator("#call-state")).to_have_text("通话已结束", timeout=TIMEOUT)
            expect(page.locator("#btn-done")).to_be_visible()
            expect(page.locator("#link-state")).to_have_text("实时连接正常", timeout=TIMEOUT)
            screenshot(page, "console-after-resync")
    finally:
        telephony.close()
    assert len(sockets) == 1  # the same socket throughout: the resync frame did it, not a reconnect


def test_a_frame_lost_on_the_way_is_noticed_at_the_next_one(page, live_server, settings, services, agent):
    """The call's end never reaches the browser (dropped between server and page); the next
    call's frame skips a number, so the console reloads: the ghost ends and the new call pops."""
    make_zhang(services)
    make_elder(services, "李爷爷", "13900139000")
    dropped, lost = [], {"call": None}

    def route(ws):
        server = ws.connect_to_server()

        def from_server(message):
            if lost["call"] is not None and re.search(rf'"call_id": "{re.escape(lost["call"])}"', str(message)):
                dropped.append(message)
                return
            ws.send(message)

        server.on_message(from_server)

    page.route_web_socket(re.compile(r".*/ws$"), route)
    telephony = LiveTelephony(settings, services)
    try:
        open_console(page, live_server, agent)
        go_ready(page)
        telephony.place_call("13800138000")
        expect(page.locator("#call-state")).to_have_text("通话中", timeout=TIMEOUT)
        first = wait_for(lambda: next((c for c in call_rows(services) if c.state == "talking"), None))

        lost["call"] = first.linkedid  # from now on, nothing of this call reaches the page
        telephony.caller_hangs_up(first.linkedid)
        wait_for(lambda: call_rows(services)[0].state == "ended")
        until(page, lambda: dropped, "no frame of the ended call was sent")
        expect(page.locator("#call-state")).to_have_text("通话中")  # the ghost
        telephony.place_call("13900139000")
        expect(page.locator("#elder-name")).to_have_text("李爷爷", timeout=TIMEOUT)
        expect(page.locator("#call-caller")).to_have_text("139 0013 9000")
        expect(page.locator("#history li")).to_have_count(2, timeout=TIMEOUT)
    finally:
        telephony.close()
