"""The wallboard and 今日通话 reload what they show when live events were lost: a `resync` frame
(the web process's Redis came back) or a frame whose `seq` skips a number. The page's socket is
played by the test (Playwright's WebSocket routing), and the pages' periodic reloads are switched
off, so every reload seen here comes from the frames the test sends."""

from __future__ import annotations

import json
import re

from playwright.sync_api import expect

from tests.agent_ui.test_console import TIMEOUT
from tests.browser import sign_in
from tests.conftest import PASSWORD, make_user

# No timer of a second or more fires: the wallboard's 10 s and the calls page's 3 s reloads are off.
NO_PERIODIC_RELOADS = """
  (function () {
    var setTimeoutFirst = window.setTimeout;
    window.setTimeout = function (f, ms) { return ms >= 1000 ? 0 : setTimeoutFirst.apply(window, arguments); };
    window.setInterval = function () { return 0; };
  })();
"""


def played_socket(page, role: str) -> list:
    """Route the page's /ws to the test: each socket (a WebSocketRoute) is appended to the list
    returned, after the server's greeting."""
    sockets = []

    def route(ws):
        ws.send(json.dumps({"type": "hello", "role": role, "extension": None}))
        sockets.append(ws)

    page.route_web_socket(re.compile(r".*/ws$"), route)
    page.add_init_script(NO_PERIODIC_RELOADS)
    return sockets


def frame(kind: str, seq: int, channel: str = "agents", epoch: str = "e1", **fields) -> str:
    return json.dumps({"type": kind, "seq": seq, "channel": channel, "epoch": epoch, **fields})


def test_the_wallboard_reloads_on_a_resync_frame(page, live_server, services):
    sockets = played_socket(page, "supervisor")
    sign_in(page, live_server, "/supervisor", make_user(services, "supervisor"), PASSWORD)
    expect(page.locator("#wb-link")).to_have_text("实时连接正常", timeout=TIMEOUT)
    page.wait_for_load_state("networkidle")
    with page.expect_request(re.compile(r"/api/stats/wallboard$"), timeout=TIMEOUT):
        sockets[-1].send(json.dumps({"type": "resync", "epoch": "e1", "reason": "redis"}))


def test_the_calls_page_reloads_on_a_resync_frame_and_on_a_gap(page, live_server, services):
    sockets = played_socket(page, "agent")
    sign_in(page, live_server, "/calls", make_user(services, "agent", sip_extension="8001"), PASSWORD)
    expect(page.locator("#calls-status")).to_contain_text("实时更新", timeout=TIMEOUT)  # loaded once the socket opened
    page.wait_for_load_state("networkidle")
    calls = re.compile(r"/api/calls\?")
    with page.expect_request(calls, timeout=TIMEOUT):
        sockets[-1].send(json.dumps({"type": "resync", "epoch": "e1", "reason": "redis"}))
    sockets[-1].send(frame("agent.state", 1, agent="8001", state="ready"))  # in sequence, and no call: no reload
    with page.expect_request(calls, timeout=TIMEOUT):
        sockets[-1].send(frame("agent.state", 3, agent="8001", state="paused"))  # number 2 never came
