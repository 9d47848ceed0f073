"""Issue 15 #2 on the real Asterisk: `core restart now` with one call talking and one waiting.
Asterisk hangs both up (SoftHangupRequest Cause 4, Shutdown) and queue_log calls the waiting one
an abandon; we record them as cut off by the PBX and put both callers on the recall list until
they get through again. Its own module: the restart takes the deployment down for a moment."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.pbx.conftest import TIMEOUT
from tests.telephony import wait_for

pytestmark = pytest.mark.realpbx


def recall_numbers(pbx) -> list[str]:
    with pbx.api("banzhang") as client:
        return [row["caller"] for row in client.get("/api/calls/recall").json()["items"]]


def test_calls_cut_off_by_a_pbx_restart_go_on_the_recall_list(pbx, consoles):
    console = consoles("8001")
    console.ready()
    talking, waiting = pbx.call_id(), pbx.call_id()
    pbx.ami.originate_caller(call_id=talking, number="13800138000", keys="0", delay=3)
    console.answer()
    pbx.talking(talking)
    pbx.ami.originate_caller(call_id=waiting, number="13900139000", keys="0", delay=3)
    wait_for(lambda: pbx.in_queue(waiting), 15, "second caller not queued")

    pbx.restart_asterisk()
    assert "ABANDON" in [row[4] for row in pbx.queue_events(waiting)]  # Asterisk's own word for it
    rows = {call_id: wait_for(lambda c=call_id: (r := pbx.call(c)) and r["state"] == "ended" and r, 20,
                              f"call {call_id} not closed after the restart\n{pbx.diagnostics()}")
            for call_id in (talking, waiting)}
    assert (rows[talking]["outcome"], rows[talking]["hangup_by"]) == ("answered", "pbx")
    assert (rows[waiting]["outcome"], rows[waiting]["hangup_by"]) == ("cut_off", "pbx")
    assert sorted(recall_numbers(pbx)) == ["+8613800138000", "+8613900139000"]
    console.page.reload()
    expect(console.page.locator("#recall li")).to_have_count(2, timeout=TIMEOUT)
    expect(console.page.locator("#recall-block")).to_contain_text("系统中断待回拨")

    # the softphone registers again, the agent is still a member (persistentmembers), and once the
    # first elder gets through again, they leave the recall list
    expect(console.page.locator("#phone-mode")).to_contain_text("软电话已注册", timeout=30_000)
    console.ready()
    again = pbx.call_id()
    pbx.ami.originate_caller(call_id=again, number="13800138000", keys="0", delay=3)
    console.answer()
    pbx.talking(again)
    assert recall_numbers(pbx) == ["+8613900139000"]


def test_a_restart_while_the_bridge_is_away_is_recognised(pbx, consoles):
    """No Shutdown reaches a bridge that is down (or cut off) when Asterisk restarts or crashes:
    FullyBooted's Uptime at the next login says it restarted meanwhile, so its calls are cut off
    by the PBX and go on the recall list, not recorded as hung up by the caller."""
    console = consoles("8001")
    expect(console.page.locator("#phone-mode")).to_contain_text("软电话已注册", timeout=30_000)
    console.ready()
    talking = pbx.call_id()
    pbx.ami.originate_caller(call_id=talking, number="13700137000", keys="0", delay=3)
    console.answer()
    pbx.talking(talking)
    connected = pbx.kill_bridge()
    pbx.asterisk.cli("core restart now")
    wait_for(lambda: "fully booted" in pbx.asterisk.cli("core waitfullybooted", timeout=5), 40, "Asterisk did not come back")
    pbx.ami.sock.close()
    pbx.ami = type(pbx.ami)(int(pbx.env["AMI_PORT"]), pbx.env["AMI_USER"], pbx.env["AMI_SECRET"])
    pbx.start_bridge(connected)
    row = wait_for(lambda: (r := pbx.call(talking)) and r["state"] == "ended" and r, 20, f"not closed\n{pbx.diagnostics()}")
    assert (row["outcome"], row["hangup_by"]) == ("answered", "pbx"), row
    assert "+8613700137000" in recall_numbers(pbx)
