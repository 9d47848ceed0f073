"""The web softphone recovers on a real Asterisk: a console reloaded mid-call leaves no zombie
call, a call that ends while the softphone's WebSocket is down does not leave it "in call", a
half-open or closed WebSocket pauses the agent (话机离线) instead of leaving them 就绪 in the
queue, and they are ready again as soon as the phone registers. The WebSocket runs through a TCP
proxy the tests own (`pbx.ws_proxy`) to cut it or make it half-open."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.pbx.conftest import TIMEOUT
from tests.telephony import wait_for

pytestmark = pytest.mark.realpbx


def test_a_reload_mid_call_hangs_up_and_the_next_call_works(pbx, consoles):
    """#5: the reload sends BYE (Asterisk's rtp_timeout is the safety net): the agent's leg ends,
    the caller goes on to the survey, the reloaded console shows no stale call, and the next call
    is answered."""
    console = consoles("8001")
    console.ready()
    first = pbx.call_id()
    pbx.ami.originate_caller(call_id=first, number="13800138000", keys="0", delay=3)
    console.answer()
    pbx.talking(first)
    console.page.reload()
    wait_for(lambda: not pbx.agent_channels("8001"), 12, "a zombie call: the agent's leg stayed up after the reload")
    wait_for(lambda: pbx.in_script(first, "survey"), 10, "the caller was not passed on to the survey")
    pbx.ami.hang_up_caller(first)
    expect(console.page.locator("#phone-mode")).to_contain_text("软电话已注册", timeout=TIMEOUT)
    expect(console.page.locator("#call-state")).not_to_have_text("通话中", timeout=TIMEOUT)

    wait_for(lambda: "(paused" not in pbx.member_line("王芳"), 15, f"wrap-up never ended: {pbx.queue_show()}")
    second = pbx.call_id()
    pbx.ami.originate_caller(call_id=second, number="13900139000", keys="0", delay=3)
    console.answer()
    expect(console.page.locator("#call-caller")).to_contain_text("139", timeout=TIMEOUT)
    pbx.talking(second, agent="8001")


def test_a_call_that_ends_while_the_websocket_is_down_does_not_block_the_next(pbx, consoles):
    """#6: the softphone's WebSocket drops mid-call and stays down while the caller hangs up; once
    it is back the softphone is idle and registered, and the next call rings and is answered
    (it used to stay "in call" and refuse every call with 486)."""
    console = consoles("8002")
    console.ready()
    first = pbx.call_id()
    pbx.ami.originate_caller(call_id=first, number="13700137000", keys="0", delay=3)
    console.answer()
    pbx.talking(first)
    pbx.ws_proxy.blackhole()
    pbx.ws_proxy.cut()
    expect(console.page.locator("#phone-mode")).to_contain_text("正在重连", timeout=TIMEOUT)
    pbx.ami.hang_up_caller(first)
    time.sleep(2)
    pbx.ws_proxy.heal()
    expect(console.page.locator("#phone-mode")).to_contain_text("软电话已注册", timeout=30_000)
    expect(console.page.locator("#softphone-controls")).to_be_hidden()
    wait_for(lambda: "Not in use" in pbx.member_line("李娜") and "(paused" not in pbx.member_line("李娜"), 20,
             f"agent not ready again: {pbx.queue_show()}")
    second = pbx.call_id()
    pbx.ami.originate_caller(call_id=second, number="13600136000", keys="0", delay=3)
    console.answer()
    pbx.talking(second, agent="8002")


def test_a_half_open_websocket_pauses_the_agent_until_the_phone_is_back(pbx, consoles):
    """#6: a WebSocket that silently passes nothing is found (Asterisk's qualify, the console's
    keep-alive): the agent is paused 话机离线, not rung, and made ready again after re-registering."""
    console = consoles("8001")
    console.ready()
    wait_for(lambda: "Not in use" in pbx.member_line("王芳"), 10, pbx.queue_show())
    pbx.ws_proxy.blackhole()
    wait_for(lambda: "paused:phone_offline" in pbx.member_line("王芳"), 45,
             f"not paused while the phone is unreachable: {pbx.queue_show()}")
    expect(console.page.locator("#agent-state")).to_have_text("话机离线", timeout=TIMEOUT)
    caller = pbx.call_id()
    pbx.ami.originate_caller(call_id=caller, number="13500135000", keys="0", delay=3)
    wait_for(lambda: pbx.in_queue(caller), 15, "caller not queued")
    time.sleep(3)
    assert not pbx.agent_channels("8001")  # not rung while offline
    pbx.ws_proxy.heal()
    expect(console.page.locator("#phone-mode")).to_contain_text("软电话已注册", timeout=45_000)
    console.answer()  # made ready again: the waiting caller is offered
    pbx.talking(caller, agent="8001")


def test_closing_the_console_pauses_the_agent_and_signing_in_again_resumes(pbx, consoles, media_browser):
    """An agent who closed the console (no phone registered) is not left 就绪 in the queue."""
    console = consoles("8002")
    console.ready()
    wait_for(lambda: "Not in use" in pbx.member_line("李娜"), 10, pbx.queue_show())
    console.page.context.close()
    wait_for(lambda: "paused:phone_offline" in pbx.member_line("李娜"), 30, f"not paused: {pbx.queue_show()}")
    with pbx.api("banzhang") as client:
        agents = client.get("/api/realtime/snapshot").json()["agents"]
        assert [a["state"] for a in agents if a["agent"] == "8002"] == ["unavailable"], agents
    again = consoles("8002")
    wait_for(lambda: "Not in use" in pbx.member_line("李娜") and "(paused" not in pbx.member_line("李娜"), 20,
             f"not ready after the phone registered again: {pbx.queue_show()}")
    expect(again.page.locator("#agent-state")).to_have_text("就绪", timeout=TIMEOUT)
