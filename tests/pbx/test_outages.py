"""Issue 15 #5 on the real Asterisk: calls that ring, talk, are transferred and abandoned while
the bridge is down (kill -9) are recorded once it is back, from Asterisk's own records
(queue_log and CEL, calls/records.py): their real outcome, agents and legs, marked reconciled;
none missing, none twice, none left open, no agent left paused. Its own module: the bridge is
down for a while."""

from __future__ import annotations

import time

import pytest
import redis

from callcenter.calls.leader import LEADER_KEY

from tests.telephony import wait_for

pytestmark = pytest.mark.realpbx


def all_calls(pbx) -> list[dict]:
    with pbx.api("banzhang") as client:
        return client.get("/api/calls", params={"page_size": 500}).json()["items"]


def detail(pbx, row_id: int) -> dict:
    with pbx.api("banzhang") as client:
        return client.get(f"/api/calls/{row_id}").json()


def asterisk_calls(pbx) -> set[str]:
    """The inbound calls Asterisk's CEL says ended: their Linkedids."""
    import csv

    path = pbx.asterisk.state / "log" / "cel-custom" / "hotline.csv"
    rows = list(csv.reader(path.open(encoding="utf-8")))
    ended = {row[8] for row in rows if row[0] == "LINKEDID_END"}
    inbound = {row[8] for row in rows if row[0] == "CHAN_START" and row[7] == row[8] and row[4].startswith("from-elders")}
    return ended & inbound


def test_calls_during_a_bridge_outage_are_recorded_from_asterisks_records(pbx, consoles):
    wang, li = consoles("8001"), consoles("8002")
    wang.ready()
    li.ready()
    wait_for(lambda: "王芳" in pbx.queue_show() and "李娜" in pbx.queue_show(), 10, pbx.queue_show())
    open_call = pbx.call_id()
    pbx.ami.originate_caller(call_id=open_call, number="13800138000", keys="0", delay=3)
    wait_for(lambda: pbx.agent_channels("8001") or pbx.agent_channels("8002"), 15, "nobody rang")
    ringing = wang if pbx.agent_channels("8001") else li
    ringing.answer()
    talking = pbx.talking(open_call)
    target = "8002" if talking["agent"] == "8001" else "8001"
    connected = pbx.kill_bridge()

    # --- while the bridge is down -----------------------------------------------------------------
    # 1. the open call is transferred (what a phone or a supervisor's tool does without the console)
    caller_channel = pbx.ami.channel_of(open_call)
    response = pbx.ami.action("Redirect", Channel=caller_channel, Context=pbx.settings.transfer_context, Exten=target,
                              Priority="1")
    assert response.get("Response") == "Success", response
    other = li if target == "8002" else wang
    other.answer()
    time.sleep(2)
    other.page.click("#sp-hangup")
    wait_for(lambda: pbx.in_script(open_call, "survey"), 10, f"no survey\n{pbx.diagnostics()}")
    pbx.ami.hang_up_caller(open_call)
    # 2. a call answered and hung up by the caller
    answered = pbx.call_id()
    pbx.ami.originate_caller(call_id=answered, number="13900139000", keys="0", delay=3)
    wait_for(lambda: pbx.agent_channels("8001") or pbx.agent_channels("8002"), 15, "nobody rang")
    (wang if pbx.agent_channels("8001") else li).answer()
    time.sleep(3)
    pbx.ami.hang_up_caller(answered)
    # 3. a caller who hangs up in the IVR menu
    ivr_only = pbx.call_id()
    pbx.ami.originate_caller(call_id=ivr_only, number="13700137000", keys="", delay=1)
    time.sleep(3)
    pbx.ami.hang_up_caller(ivr_only)
    # 4. a caller who gives up in the queue (both agents paused)
    for interface in ("PJSIP/8001", "PJSIP/8002"):
        pbx.ami.action("QueuePause", Interface=interface, Paused="true", Reason="meeting")
    abandoned = pbx.call_id()
    pbx.ami.originate_caller(call_id=abandoned, number="13600136000", keys="0", delay=3)
    wait_for(lambda: pbx.in_queue(abandoned), 15, "not queued")
    time.sleep(7)
    pbx.ami.hang_up_caller(abandoned)
    time.sleep(1)
    for interface in ("PJSIP/8001", "PJSIP/8002"):
        pbx.ami.action("QueuePause", Interface=interface, Paused="false")

    # --- the bridge is back ---------------------------------------------------------------------
    pbx.start_bridge(connected)
    ours = {open_call, answered, ivr_only, abandoned}
    wait_for(lambda: ours <= {row["call_id"] for row in all_calls(pbx) if row["state"] == "ended"}, 20,
             f"calls of the outage not recorded: {all_calls(pbx)}\n{pbx.diagnostics()}")
    rows = all_calls(pbx)
    by_id = {row["call_id"]: row for row in rows}
    assert len(rows) == len(by_id), "a call recorded twice"
    assert asterisk_calls(pbx) == set(by_id), (asterisk_calls(pbx), set(by_id))  # none missing, none extra
    assert [row for row in rows if row["state"] != "ended"] == []

    transferred = detail(pbx, by_id[open_call]["id"])
    assert transferred["reconciled"] and transferred["outcome"] == "answered", transferred
    assert [(leg["agent"], leg["ended_by"], leg["transfer"]) for leg in transferred["legs"]] == \
           [(talking["agent"], "transfer", "agent"), (target, "agent", None)], transferred["legs"]
    assert (transferred["transfers"], transferred["agent"]) == (1, target)
    assert transferred["ivr_route"] == "agent"  # what only the live events knew is kept

    row = detail(pbx, by_id[answered]["id"])
    completed = [r for r in pbx.queue_events(answered) if r[4] == "COMPLETECALLER"]
    assert (row["reconciled"], row["outcome"], row["hangup_by"]) == (True, "answered", "caller"), row
    assert row["talk_seconds"] == int(completed[0][6]) and row["wait_seconds"] == int(completed[0][5]), (row, completed)
    connect = [r for r in pbx.queue_events(answered) if r[4] == "CONNECT"][0]
    assert row["agent"] == {"王芳": "8001", "李娜": "8002"}[connect[3]], (row, connect)

    assert (by_id[ivr_only]["outcome"], detail(pbx, by_id[ivr_only]["id"])["reconciled"]) == ("ivr_only", True)
    gave_up = detail(pbx, by_id[abandoned]["id"])
    abandon = [r for r in pbx.queue_events(abandoned) if r[4] == "ABANDON"][0]
    assert (gave_up["outcome"], gave_up["wait_seconds"]) == ("abandoned", int(abandon[7])), (gave_up, abandon)

    # nobody is left paused, and the next call is recorded live as before
    wait_for(lambda: "paused" not in pbx.queue_show(), 15, pbx.queue_show())
    live = pbx.call_id()
    pbx.ami.originate_caller(call_id=live, number="13500135000", keys="0", delay=3)
    wait_for(lambda: pbx.agent_channels("8001") or pbx.agent_channels("8002"), 15, "nobody rang")
    (wang if pbx.agent_channels("8001") else li).answer()
    assert pbx.talking(live)["reconciled"] is False
    pbx.ami.hang_up_caller(live)


def test_a_standby_bridge_takes_over_and_records_every_call_once(pbx, consoles):
    """Two `callcenter ami` processes share the leader lease in Redis: the standby stays off AMI
    until the leader is killed (-9) mid-call, then takes over: the call in progress ends normally,
    a call that began and ended in between is recorded from the records, none twice."""
    from tests.pbx.harness import Process

    wang = consoles("8001")
    wang.ready()
    standby = Process("bridge-standby", ["ami"], pbx.env, pbx.workdir)
    try:
        wait_for(lambda: "standby: bridge" in standby.output(), 15, f"no standby\n{standby.output()}")
        assert "AMI connected to" not in standby.output()
        talking = pbx.call_id()
        pbx.ami.originate_caller(call_id=talking, number="13800138000", keys="0", delay=3)
        wang.answer()
        pbx.talking(talking)
        pbx.kill_bridge()
        # The test holds the lease while a call comes and goes, so that it falls between the two
        # bridges however slowly this machine runs (the dead leader's lease alone lasts 3 s).
        lease = redis.Redis.from_url(pbx.env["REDIS_URL"])
        lease.set(LEADER_KEY, "the-test", px=120_000)
        between = pbx.call_id()  # calls and gives up in the IVR while no bridge follows AMI
        pbx.ami.originate_caller(call_id=between, number="13900139000", keys="", delay=1)
        time.sleep(1.5)
        pbx.ami.hang_up_caller(between)
        assert "AMI connected to" not in standby.output()
        lease.delete(LEADER_KEY)
        wait_for(lambda: "AMI connected to" in standby.output(), 15, f"the standby did not take over\n{standby.output()}")
        assert "is the leader" in standby.output()
        time.sleep(1)
        pbx.ami.hang_up_caller(talking)
        rows = wait_for(lambda: (r := {row["call_id"]: row for row in all_calls(pbx)}) and
                        all(r.get(c, {}).get("state") == "ended" for c in (talking, between)) and r, 20,
                        f"not recorded: {all_calls(pbx)}\n{standby.output()[-3000:]}")
        assert (rows[talking]["outcome"], rows[talking]["hangup_by"], rows[talking]["agent"]) == ("answered", "caller", "8001")
        assert rows[between]["outcome"] == "ivr_only" and detail(pbx, rows[between]["id"])["reconciled"]
        assert len(all_calls(pbx)) == len(rows)
        assert asterisk_calls(pbx) <= set(rows)
    finally:
        pbx.bridge = standby  # the module's teardown stops whichever bridge runs now
