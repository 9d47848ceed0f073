"""The main call flow on a real Asterisk 22 with the generated configuration used verbatim:
elders dial 12349 (Local channels that press keys on cue), agents answer in the console's web
softphone (JsSIP in Chromium, fake microphone), and what we record is checked against
Asterisk's own queue_log, CDR and `queue show`."""

from __future__ import annotations

import math
import time

import pytest
from playwright.sync_api import expect

from tests.browser import screenshot
from tests.pbx.conftest import TIMEOUT
from tests.telephony import wait_for

pytestmark = pytest.mark.realpbx


def ended(pbx, call_id: str, **expected):
    """Wait for the call to be recorded as ended (with `expected` fields); returns its row."""
    def check():
        row = pbx.call(call_id)
        return row if row and row["state"] == "ended" and all(row.get(k) == v for k, v in expected.items()) else None
    return wait_for(check, 20, f"call {call_id} not recorded as {expected}: {pbx.call(call_id)}\n{pbx.diagnostics()}")


def rate(pbx, call_id: str, digit: str) -> None:
    """The caller presses `digit` in the survey, again every 2 s until the score is recorded: a key
    that falls before the survey listens is lost (on a slow machine the prompt starts late)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        row = pbx.call(call_id)
        if row and (row["state"] == "ended" or row.get("survey_score") is not None):
            return
        try:
            pbx.ami.press(call_id, digit)
        except AssertionError:
            return  # the caller's channel is gone: the call ended
        time.sleep(2)


def test_answered_call_rated_after_the_agent_hangs_up(pbx, consoles):
    """#1 (setinterfacevar): the caller still on the line after the agent's 挂断 is asked to rate
    the call, not queued again; #9: the member's name is the agent's; #2: the softphone answers
    (ulaw/alaw: no Opus in a stock Asterisk) and audio flows both ways."""
    console = consoles("8001")
    console.ready()
    wait_for(lambda: "王芳 (PJSIP/8001)" in pbx.queue_show(), 10, f"agent not in the queue by name: {pbx.queue_show()}")

    call_id = pbx.call_id()
    pbx.ami.originate_caller(call_id=call_id, number="13800138000", keys="1", delay=3)
    console.answer()
    expect(console.page.locator("#call-caller")).to_contain_text("138", timeout=TIMEOUT)
    wait_for(lambda: min(console.audio_packets().values()) > 20, 10, f"no audio both ways: {console.audio_packets()}")
    screenshot(console.page, "pbx-console-talking")  # for people to look at (test-artifacts/)

    console.page.click("#btn-hangup")
    wait_for(lambda: not pbx.agent_channels("8001"), 10, "挂断 left the agent's channel up")
    wait_for(lambda: pbx.in_script(call_id, "survey"), 10, f"no survey after the agent hung up\n{pbx.diagnostics()}")
    rate(pbx, call_id, "5")
    row = ended(pbx, call_id, survey_score=5)
    assert (row["outcome"], row["agent"], row["ivr_route"], row["hangup_by"]) == ("answered", "8001", "meal", "agent")
    assert (row["direction"], row["caller"]) == ("inbound", "+8613800138000")
    events = [r[4] for r in pbx.queue_events(call_id)]
    assert events.count("ENTERQUEUE") == 1, events  # not queued again after the agent hung up
    assert "CONNECT" in events and "COMPLETEAGENT" in events, events


def test_hangup_from_the_server_ends_the_agent_leg_and_the_talk(pbx, consoles):
    """#3: 挂断 for a desk phone (AMI Hangup of the agent's leg) ends the call in Asterisk; the talk
    ends then (app_queue only reports it when the caller hangs up, survey included), the agent
    goes into wrap-up at once, and the caller still gets the survey."""
    console = consoles("8002")
    console.ready()
    call_id = pbx.call_id()
    pbx.ami.originate_caller(call_id=call_id, number="13900139000", keys="0", delay=3)
    answering = time.monotonic()
    console.answer()
    time.sleep(3)
    row = pbx.talking(call_id)
    with pbx.api("lina") as client:
        response = client.post(f"/api/calls/{row['id']}/hangup")
        assert response.status_code == 200, response.text
        most = math.ceil(time.monotonic() - answering) + 1  # the talk lasted at most this long
        wait_for(lambda: not pbx.agent_channels("8002"), 10, "the agent's leg is still up")
        talking = wait_for(lambda: (r := pbx.call(call_id)) and r["state"] == "wrapup" and r, 10,
                           f"the agent's end was not recorded while the caller is in the survey: {pbx.call(call_id)}")
        assert talking["hangup_by"] == "agent" and 2 <= talking["talk_seconds"] <= most, (talking, most)
        wait_for(lambda: pbx.in_script(call_id, "survey"), 10, "no survey after the agent's leg was hung up")
        time.sleep(4)  # the caller listens to the survey, then hangs up without rating
        pbx.ami.hang_up_caller(call_id)
        row = ended(pbx, call_id)
        assert row["talk_seconds"] == talking["talk_seconds"] and row["survey_score"] is None  # the survey is not talk
        again = client.post(f"/api/calls/{row['id']}/hangup")
        assert again.status_code == 409 and "已结束" in again.json()["detail"]
    agent_leg = [r for r in pbx.asterisk.cdr() if r[6].startswith("PJSIP/8002-") or r[5].startswith("PJSIP/8002-")]
    assert agent_leg, pbx.asterisk.cdr()


def test_abandoned_in_the_queue(pbx, consoles):
    """Nobody ready: the caller waits and hangs up: abandoned with Asterisk's wait."""
    call_id = pbx.call_id()
    pbx.ami.originate_caller(call_id=call_id, number="13700137000", keys="0", delay=3)
    wait_for(lambda: pbx.in_queue(call_id), 15, f"caller not in the queue\n{pbx.diagnostics()}")
    time.sleep(6.5)
    pbx.ami.hang_up_caller(call_id)
    row = ended(pbx, call_id)
    abandon = [r for r in pbx.queue_events(call_id) if r[4] == "ABANDON"]
    assert abandon, pbx.queue_events(call_id)
    assert row["outcome"] == "abandoned" and row["wait_seconds"] == int(abandon[0][7]), (row, abandon)


def test_an_emergency_caller_jumps_the_queue(pbx, consoles):
    """Key 9 gives priority 10: the emergency caller, who came second, is answered first."""
    first, emergency = pbx.call_id(), pbx.call_id()
    pbx.ami.originate_caller(call_id=first, number="13600136000", keys="0", delay=3)
    wait_for(lambda: pbx.in_queue(first), 15, "first caller not queued")
    pbx.ami.originate_caller(call_id=emergency, number="13500135000", keys="9", delay=3)
    wait_for(lambda: pbx.in_queue(emergency), 15, "emergency caller not queued")
    assert "wait:" in pbx.queue_show()
    console = consoles("8001")
    console.ready()
    console.answer()
    expect(console.page.locator("#call-caller")).to_contain_text("135", timeout=TIMEOUT)
    connects = wait_for(lambda: [r[1] for r in pbx.asterisk.queue_log() if len(r) > 4 and r[4] == "CONNECT" and r[1] in (first, emergency)],
                        15, "no CONNECT in queue_log")
    assert connects[:1] == [emergency], connects
    row = pbx.talking(emergency)
    assert row["priority"] == 10 and row["ivr_route"] == "emergency"


def test_free_agents_are_all_offered_callers_and_a_busy_agent_is_not(pbx, consoles):
    """#4 autofill: two ready agents take two waiting callers at once; ringinuse = no: an agent
    on a call is not rung for the third caller, who waits."""
    callers = [pbx.call_id() for _ in range(3)]
    for call_id, number in zip(callers[:2], ("13100131000", "13200132000")):
        pbx.ami.originate_caller(call_id=call_id, number=number, keys="0", delay=3)
    for call_id in callers[:2]:
        wait_for(lambda c=call_id: pbx.in_queue(c), 15, "callers not queued")
    wang, li = consoles("8001"), consoles("8002")
    wang.ready()
    li.ready()
    for console in (wang, li):  # both ring before either answers: not one caller at a time
        expect(console.page.locator("#sp-answer")).to_be_enabled(timeout=TIMEOUT)
    wang.answer()
    li.answer()
    pbx.ami.originate_caller(call_id=callers[2], number="13300133000", keys="0", delay=3)
    wait_for(lambda: pbx.in_queue(callers[2]), 15, "third caller not queued")
    time.sleep(5)
    assert pbx.in_queue(callers[2])  # still waiting: nobody free
    rung = [r for r in pbx.queue_events(callers[2]) if r[4] == "RINGNOANSWER"]
    assert not rung, rung
    assert pbx.queue_show().count("(in call)") == 2, pbx.queue_show()  # both busy, neither rung again


def test_pause_ready_and_sign_out_reach_the_queue(pbx, consoles):
    console = consoles("8001")
    console.ready()
    wait_for(lambda: "王芳 (PJSIP/8001)" in pbx.queue_show(), 10, pbx.queue_show())
    console.page.select_option("#pause-reason", "meal")
    console.page.click("#btn-pause")
    wait_for(lambda: "(paused:meal" in pbx.queue_show(), 10, f"not paused in Asterisk: {pbx.queue_show()}")
    console.ready()
    wait_for(lambda: "paused" not in pbx.queue_show() and "王芳" in pbx.queue_show(), 10, pbx.queue_show())
    console.page.click("#btn-offline")
    wait_for(lambda: "王芳" not in pbx.queue_show(), 10, f"still a member after 签出: {pbx.queue_show()}")


def test_transfer_to_an_agent_and_to_a_queue(pbx, consoles):
    """转接 redirects the caller: to an extension, that agent's softphone rings and talks with the
    caller, who is asked to rate the call afterwards; to a queue, the next free agent's console
    pops the caller."""
    wang, li = consoles("8001"), consoles("8002")
    wang.ready()
    call_id = pbx.call_id()
    pbx.ami.originate_caller(call_id=call_id, number="13800138000", keys="0", delay=3)
    wang.answer()
    row = pbx.talking(call_id)
    with pbx.api("wangfang") as client:
        response = client.post(f"/api/calls/{row['id']}/transfer", json={"target": "8002"})
        assert response.status_code == 200, response.text
    li.answer()
    wait_for(lambda: pbx.agent_channels("8002") and not pbx.agent_channels("8001"), 10, "not with 李娜 now")
    wait_for(lambda: min(li.audio_packets().values()) > 20, 10, f"no audio with 李娜: {li.audio_packets()}")
    li.page.click("#sp-hangup")
    wait_for(lambda: pbx.in_script(call_id, "survey"), 10, f"no survey after the transfer\n{pbx.diagnostics()}")
    pbx.ami.hang_up_caller(call_id)
    first = ended(pbx, call_id)
    # each agent's own part (app_queue's queue_log credits 王芳 with both agents' talk: COMPLETECALLER at the end)
    assert [(leg["agent"], leg["ended_by"], leg["transfer"]) for leg in first["legs"]] == \
           [("8001", "transfer", "agent"), ("8002", "agent", None)], first["legs"]
    assert (first["transfers"], first["agent"], first["hangup_by"]) == (1, "8002", "agent")
    assert first["talk_seconds"] == sum(leg["talk_seconds"] for leg in first["legs"])
    assert first["legs"][0]["ended_at"] <= first["legs"][1]["connected_at"], first["legs"]  # one after the other

    wait_for(lambda: "(paused" not in pbx.member_line("王芳"), 15, pbx.queue_show())
    second = pbx.call_id()
    pbx.ami.originate_caller(call_id=second, number="13900139000", keys="0", delay=3)
    wang.answer()
    row = pbx.talking(second)
    li.ready()
    with pbx.api("wangfang") as client:
        response = client.post(f"/api/calls/{row['id']}/transfer", json={"target": "hotline"})
        assert response.status_code == 200, response.text
    li.answer()
    expect(li.page.locator("#call-caller")).to_contain_text("139", timeout=TIMEOUT)
    moved = pbx.talking(second, agent="8002")
    connects = [r for r in pbx.queue_events(second) if r[4] == "CONNECT"]
    assert len(connects) == 2, connects
    # the caller's first wait stays the call's wait: app_queue's hold time until 王芳 answered
    assert moved["wait_seconds"] == int(connects[0][5]), connects
    # 王芳's console shows the call passed on, and she can no longer hang it up
    expect(wang.page.locator("#call-state")).to_have_text("已转接", timeout=TIMEOUT)
    with pbx.api("wangfang") as client:
        assert client.post(f"/api/calls/{row['id']}/hangup").status_code == 403
    li.page.click("#sp-hangup")
    pbx.ami.hang_up_caller(second)
    done = ended(pbx, second)
    assert [(leg["agent"], leg["queue"], leg["ended_by"], leg["transfer"]) for leg in done["legs"]] == \
           [("8001", "hotline", "transfer", "queue"), ("8002", "hotline", "agent", None)], done["legs"]
    assert done["transfers"] == 1


def test_a_blind_transfer_from_the_agents_phone(pbx, consoles):
    """The agent's phone transfers the caller blind (AMI BlindTransfer of the agent's channel, as a
    SIP REFER does): the target's console pops the call, and each leg is the agent's own."""
    wang, li = consoles("8001"), consoles("8002")
    wang.ready()
    li.page.click("#btn-offline")  # only reachable by extension, not from the queue
    wait_for(lambda: "李娜" not in pbx.queue_show(), 10, pbx.queue_show())
    call_id = pbx.call_id()
    pbx.ami.originate_caller(call_id=call_id, number="13800138000", keys="0", delay=3)
    wang.answer()
    pbx.talking(call_id)
    channel = pbx.agent_channels("8001")[0]
    response = pbx.ami.action("BlindTransfer", Channel=channel, Context=pbx.settings.transfer_context, Exten="8002")
    assert response.get("Response") == "Success", response
    li.answer()
    expect(li.page.locator("#call-caller")).to_contain_text("138", timeout=TIMEOUT)
    pbx.talking(call_id, agent="8002")
    li.page.click("#sp-hangup")
    wait_for(lambda: pbx.in_script(call_id, "survey"), 10, f"no survey after the transfer\n{pbx.diagnostics()}")
    pbx.ami.hang_up_caller(call_id)
    row = ended(pbx, call_id)
    assert [(leg["agent"], leg["ended_by"], leg["transfer"]) for leg in row["legs"]] == \
           [("8001", "transfer", "blind"), ("8002", "agent", None)], row["legs"]
    assert [r[4] for r in pbx.queue_events(call_id)][-1] == "BLINDTRANSFER"
    assert (row["transfers"], row["outcome"]) == (1, "answered")


def test_a_failed_screen_pop_never_shows_the_previous_elder(pbx, consoles):
    """#5: the next caller's pop fails to load: the card of the elder before must not stay under
    the new caller's number."""
    from tests.agent_ui.test_console import make_elder

    make_elder(pbx.services, "张大爷", "13800138000", gender="male", birth_date="1941-03-02")
    console = consoles("8001")
    console.ready()
    first = pbx.call_id()
    pbx.ami.originate_caller(call_id=first, number="13800138000", keys="0", delay=3)
    console.answer()
    expect(console.page.locator("#elder-name")).to_have_text("张大爷", timeout=TIMEOUT)
    pbx.ami.hang_up_caller(first)
    assert ended(pbx, first)["hangup_by"] == "caller"  # the agent's leg went after the caller's: not the agent's doing
    wait_for(lambda: "(paused" not in pbx.member_line("王芳"), 15, pbx.queue_show())

    console.page.route("**/api/calls/*/pop", lambda route: route.abort())
    second = pbx.call_id()
    pbx.ami.originate_caller(call_id=second, number="13900139000", keys="0", delay=3)
    console.answer()
    expect(console.page.locator("#call-caller")).to_contain_text("139", timeout=TIMEOUT)
    expect(console.page.locator("#console-message")).to_contain_text("无法加载来电信息", timeout=TIMEOUT)
    expect(console.page.locator("#elder-card")).to_be_hidden()


def test_a_wrap_up_ends_even_when_the_bridge_is_killed_during_it(pbx, consoles):
    """Issue 15 #4: the bridge that paused the agent for wrap-up dies (kill -9) before making them
    ready again; its successor takes the wrap-up over and ends it (the agent used to stay paused,
    taking no calls, until someone noticed)."""
    console = consoles("8001")
    console.ready()
    call_id = pbx.call_id()
    pbx.ami.originate_caller(call_id=call_id, number="13800138000", keys="0", delay=3)
    console.answer()
    pbx.talking(call_id)
    pbx.ami.hang_up_caller(call_id)
    wait_for(lambda: "paused:wrapup" in pbx.member_line("王芳"), 10, f"no wrap-up: {pbx.queue_show()}")
    before = pbx.kill_bridge()
    assert "paused:wrapup" in pbx.member_line("王芳")  # the old bridge died before ending it
    pbx.start_bridge(before)
    wait_for(lambda: "(paused" not in pbx.member_line("王芳") and "王芳" in pbx.member_line("王芳"), 15,
             f"still paused after the bridge restarted: {pbx.queue_show()}\n{pbx.diagnostics()}")
    expect(console.page.locator("#agent-state")).to_have_text("就绪", timeout=TIMEOUT)
