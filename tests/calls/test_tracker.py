"""The call tracker on its own: the recorded traces, applied twice, with timing from their timelines."""

from datetime import datetime, timedelta, timezone

from callcenter.ami.protocol import FrameParser, Message
from callcenter.calls.tracker import CallTracker
from tests.ami.fake_asterisk import TRACES

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)


def timed_events(name: str) -> list[tuple[datetime, Message]]:
    messages = FrameParser().feed((TRACES / f"ami-trace-{name}.txt").read_bytes())
    offsets = [float(line.split()[0]) for line in (TRACES / f"ami-trace-{name}.timeline.txt").read_text().splitlines()
               if line.strip() and line.split()[1] != "BANNER"]
    assert len(offsets) == len(messages)
    return [(T0 + timedelta(seconds=off), m) for off, m in zip(offsets, messages) if m.event and not m.action_id]


def run(name: str, twice: bool = False, **options):
    tracker = CallTracker(**options)
    changes = []
    for at, message in timed_events(name):
        changes += tracker.apply(message, at)
        if twice:
            assert tracker.apply(message, at) == [] or message.event in ("QueueMemberStatus", "QueueMemberPause")
    ended = {c.call.linkedid: c.call for c in changes if c.kind == "call.ended"}
    return tracker, changes, ended


def test_answered_call_times_come_from_the_timeline_and_asterisk():
    tracker, _, ended = run("answered")
    call = ended["1795363528.0"]
    assert call.started_at == T0 + timedelta(seconds=0.504)
    assert call.queued_at == T0 + timedelta(seconds=1.006)
    assert call.answered_at == T0 + timedelta(seconds=1.007)
    assert call.ended_at == T0 + timedelta(seconds=6.514)
    assert (call.wait_seconds, call.talk_seconds, call.hangup_by, call.agent_interface) == (0, 5, "agent", "Local/8001@agents")
    assert tracker.calls == {}


def test_applying_every_event_twice_changes_nothing():
    for name in ("answered", "abandoned", "ivr", "resync"):
        _, _, once = run(name)
        _, _, twice = run(name, twice=True)
        assert {k: (c.outcome, c.wait_seconds, c.talk_seconds) for k, c in once.items()} == \
               {k: (c.outcome, c.wait_seconds, c.talk_seconds) for k, c in twice.items()}


def test_ivr_call_gets_priority_10_and_jumps_the_queue():
    tracker, changes, ended = run("ivr")
    ivr = ended["1795363563.20"]
    assert (ivr.priority, ivr.ivr_route, ivr.elder_ref, ivr.survey_score, ivr.caller_name) == (10, "emergency", "E-0001", 5, "张大爷")
    other = ended["1795363562.18"]
    assert other.answered_at is None and ivr.answered_at < other.ended_at  # joined later, answered first
    pauses = [(c.agent.state, c.agent.pause_reason) for c in changes if c.kind == "agent.state" and c.agent.interface == "Local/8002@agents"]
    assert pauses[0] == ("paused", "meeting") and pauses[-1] == ("ready", None)


def test_short_abandon_threshold_is_configurable():
    assert run("abandoned")[2]["1795363538.4"].outcome == "short_abandon"
    assert run("abandoned", short_abandon_seconds=3)[2]["1795363538.4"].outcome == "abandoned"


def test_leaving_the_queue_unanswered_without_hanging_up_is_a_timeout():
    tracker = CallTracker()
    base = {"Linkedid": "9.0", "Uniqueid": "9.0", "Context": "from-elders", "CallerIDNum": "13800138000"}
    steps = [("Newchannel", {}), ("QueueCallerJoin", {"Queue": "hotline", "Position": "1"}),
             ("QueueCallerLeave", {"Queue": "hotline"}), ("Hangup", {})]
    ended = []
    for i, (event, extra) in enumerate(steps):
        message = Message([("Event", event), *(base | extra).items()])
        ended += [c.call for c in tracker.apply(message, T0 + timedelta(seconds=i * 30)) if c.kind == "call.ended"]
    assert (ended[0].outcome, ended[0].wait_seconds) == ("timeout", 30)


def scripted(tracker, steps, base=None):
    """Apply (event, fields) steps 10 s apart to one call; returns all changes."""
    base = base or {"Linkedid": "7.0", "Uniqueid": "7.0", "Context": "from-elders", "CallerIDNum": "13800138000"}
    changes = []
    for i, (event, extra) in enumerate(steps):
        changes += tracker.apply(Message([["Event", event], *[[k, v] for k, v in (base | extra).items()]]),
                                 T0 + timedelta(seconds=i * 10))
    return changes


def test_ring_no_answer_puts_the_call_back_in_the_queue_and_counts_the_attempt():
    tracker = CallTracker()
    changes = scripted(tracker, [
        ("Newchannel", {}), ("QueueCallerJoin", {"Queue": "hotline", "Position": "1"}),
        ("AgentCalled", {"Interface": "Local/8001@agents", "MemberName": "Agent 8001", "DestUniqueid": "7.2"}),
        ("AgentRingNoAnswer", {"Interface": "Local/8001@agents", "DestUniqueid": "7.2", "RingTime": "15"}),
        ("AgentCalled", {"Interface": "Local/8002@agents", "MemberName": "Agent 8002", "DestUniqueid": "7.4"}),
        ("AgentConnect", {"Interface": "Local/8002@agents", "HoldTime": "40", "DestUniqueid": "7.4"}),
        ("BlindTransfer", {"TransfererLinkedid": "7.0", "Extension": "8003"}),
        ("AgentComplete", {"Interface": "Local/8002@agents", "TalkTime": "20", "Reason": "transfer"}),
        ("Hangup", {}),
    ])
    kinds = [c.kind for c in changes]
    assert kinds == ["call.started", "call.queued", "call.offered", "call.ring_no_answer", "call.offered", "call.answered",
                     "call.transferred", "call.ended"]  # app_queue's AgentComplete after the transfer ends no leg
    call = changes[-1].call
    assert (call.ring_attempts, call.agent_interface, call.wait_seconds, call.transfers, call.hangup_by, call.outcome) == \
           (1, "Local/8002@agents", 40, 1, "transfer", "answered")


def test_caller_hanging_up_in_the_ivr_is_ivr_only():
    tracker = CallTracker()
    changes = scripted(tracker, [("Newchannel", {"Context": "from-elders-ivr"}), ("AGIExecStart", {"Command": "ANSWER"}),
                                 ("Hangup", {})])
    assert [c.kind for c in changes] == ["call.started", "call.ivr", "call.ended"]
    assert changes[-1].call.outcome == "ivr_only"


def test_calls_cut_off_by_a_pbx_restart_are_neither_abandoned_nor_hung_up_by_the_caller():
    """`core restart`: SoftHangupRequest Cause 4 (AST_SOFTHANGUP_SHUTDOWN) for every channel, then
    Shutdown; a waiting caller's QueueCallerAbandon and Hangup follow. They are cut_off / answered
    with hangup_by `pbx` (the recall list), not an abandon and not the caller's hang-up."""
    tracker = CallTracker()
    waiting = scripted(tracker, [("Newchannel", {}), ("QueueCallerJoin", {"Queue": "hotline", "Position": "1"}),
                                 ("SoftHangupRequest", {"Cause": "4"}), ("QueueCallerAbandon", {"Queue": "hotline", "HoldTime": "30"}),
                                 ("Hangup", {"Cause": "0"})])
    assert (waiting[-1].call.outcome, waiting[-1].call.hangup_by) == ("cut_off", "pbx")
    talking = scripted(tracker, [("Newchannel", {}), ("QueueCallerJoin", {"Queue": "hotline", "Position": "1"}),
                                 ("AgentConnect", {"Interface": "PJSIP/8001", "HoldTime": "3", "DestUniqueid": "8.1"}),
                                 ("Shutdown", {"Restart": "True"}), ("Hangup", {"Cause": "0"})],
                       base={"Linkedid": "8.0", "Uniqueid": "8.0", "Context": "from-elders", "CallerIDNum": "13900139000"})
    assert (talking[-1].call.outcome, talking[-1].call.hangup_by) == ("answered", "pbx")
    other = scripted(tracker, [("Newchannel", {}), ("QueueCallerJoin", {"Queue": "hotline", "Position": "1"}),
                               ("SoftHangupRequest", {"Cause": "32"}), ("QueueCallerAbandon", {"Queue": "hotline", "HoldTime": "30"}),
                               ("Hangup", {})], base={"Linkedid": "9.0", "Uniqueid": "9.0", "Context": "from-elders"})
    assert (other[-1].call.outcome, other[-1].call.hangup_by) == ("abandoned", None)  # an AMI Hangup is no restart


def test_the_talk_ends_when_the_agents_leg_hangs_up_and_the_caller_stays():
    """The console's 挂断 for a desk phone hangs up the agent's leg by AMI: app_queue says nothing
    until the caller leaves the survey (then AgentComplete, Reason caller, the survey as talk). The
    leg's Hangup ends the talk, by the agent; a caller who hangs up first stays the one who did."""
    tracker = CallTracker()
    steps = [("Newchannel", {}), ("QueueCallerJoin", {"Queue": "hotline", "Position": "1"}),
             ("AgentConnect", {"Interface": "PJSIP/8001", "HoldTime": "3", "DestUniqueid": "7.1"}),
             ("Newchannel", {"Uniqueid": "7.1"})]
    agent_first = scripted(tracker, steps + [("Hangup", {"Uniqueid": "7.1"}),
                                             ("AgentComplete", {"Interface": "PJSIP/8001", "TalkTime": "60", "Reason": "caller"}),
                                             ("Hangup", {})])
    assert [c.kind for c in agent_first][-2:] == ["call.agent_done", "call.ended"]
    call = agent_first[-1].call
    assert (call.hangup_by, call.talk_seconds, call.outcome) == ("agent", 20, "answered")  # not the 60 s with the survey

    caller_first = scripted(tracker, [
        ("Newchannel", {}), ("QueueCallerJoin", {"Queue": "hotline", "Position": "1"}),
        ("AgentConnect", {"Interface": "PJSIP/8001", "HoldTime": "3", "DestUniqueid": "8.1"}), ("Newchannel", {"Uniqueid": "8.1"}),
        ("Hangup", {}), ("Hangup", {"Uniqueid": "8.1"})],
        base={"Linkedid": "8.0", "Uniqueid": "8.0", "Context": "from-elders", "CallerIDNum": "13900139000"})
    assert [c.kind for c in caller_first][-2:] == ["call.agent_done", "call.ended"]
    assert (caller_first[-1].call.hangup_by, caller_first[-1].call.talk_seconds) == ("caller", 20)  # the caller's hang-up ends the talk
    assert [(leg.ended_by, leg.talk_seconds) for leg in caller_first[-1].call.legs] == [("caller", 20)]


def stamped_events(name: str) -> list[tuple[datetime, Message]]:
    """A trace recorded with `timestampevents`: each event at its own Timestamp."""
    from callcenter.calls.bridge import event_time

    messages = FrameParser().feed((TRACES / f"ami-trace-{name}.txt").read_bytes())
    return [(event_time(m), m) for m in messages if m.event]


def replay(name: str, twice: bool = False) -> tuple[CallTracker, list]:
    tracker, changes = CallTracker(), []
    for at, message in stamped_events(name):
        changes += tracker.apply(message, at)
        if twice:
            changes += tracker.apply(message, at)
    return tracker, changes


def test_a_console_transfer_to_an_agent_gives_each_agent_their_own_leg():
    """Real Asterisk 22: 王芳 (8001) answers from the queue, 转接 to 8002 (AMI Redirect into the
    transfer context), 李娜 answers and hangs up, the caller rates and hangs up. app_queue
    credits 王芳 with all 7 s and Reason caller when the caller hangs up; the legs say who talked."""
    for twice in (False, True):
        tracker, changes = replay("transfer-agent", twice=twice)
        call = [c.call for c in changes if c.kind == "call.ended"]
        assert len(call) == 1, [c.kind for c in changes]
        call = call[0]
        legs = [(leg.interface, leg.queue, leg.ended_by, leg.transfer, leg.talk_seconds) for leg in call.legs]
        assert legs == [("PJSIP/8001", "hotline", "transfer", "agent", 3), ("PJSIP/8002", None, "agent", None, 3)], legs
        assert (call.transfers, call.agent_interface, call.talk_seconds, call.hangup_by, call.outcome) == \
               (1, "PJSIP/8002", 6, "agent", "answered")
        kinds = [c.kind for c in changes if c.call is not None]
        assert kinds.count("call.transferred") == 1 and kinds.count("call.answered") == 2, kinds
        answered = [c.call.agent_interface for c in changes if c.kind == "call.answered"]
        assert answered == ["PJSIP/8001", "PJSIP/8002"]  # the target agent's console pops the call
        assert tracker.calls == {}


def test_a_console_transfer_to_a_queue_ends_the_first_leg_and_keeps_the_first_wait():
    tracker, changes = replay("transfer-queue")
    call = next(c.call for c in changes if c.kind == "call.ended")
    legs = [(leg.interface, leg.agent_name, leg.ended_by, leg.transfer, leg.talk_seconds) for leg in call.legs]
    assert legs == [("PJSIP/8001", "王芳", "transfer", "queue", 3), ("PJSIP/8002", "李娜", "agent", None, 3)], legs
    # app_queue's late AgentComplete for 王芳 (Reason caller, TalkTime 9 at the caller's hang-up) changes nothing
    assert (call.transfers, call.agent_interface, call.wait_seconds, call.talk_seconds, call.hangup_by) == \
           (1, "PJSIP/8002", 0, 6, "agent")
    assert [c.kind for c in changes if c.call is not None].count("call.agent_done") == 1


def test_a_blind_transfer_from_the_agents_phone_is_counted_as_one():
    """Real Asterisk 22: the agent's phone transfers the caller blind to 8002 (BlindTransfer,
    IsExternal: as a SIP REFER does); app_queue's AgentComplete Reason transfer changes nothing more."""
    for twice in (False, True):
        _, changes = replay("transfer-blind", twice=twice)
        call = next(c.call for c in changes if c.kind == "call.ended")
        legs = [(leg.interface, leg.ended_by, leg.transfer, leg.talk_seconds) for leg in call.legs]
        assert legs == [("PJSIP/8001", "transfer", "blind", 3), ("PJSIP/8002", "agent", None, 3)], legs
        assert (call.transfers, call.agent_interface, call.talk_seconds, call.hangup_by) == (1, "PJSIP/8002", 6, "agent")


def test_a_blind_transfer_reported_after_the_agent_left_the_bridge_is_still_a_transfer():
    """Asterisk may report the agent's channel leaving the bridge before the BlindTransfer that made
    it leave (seen once on the real PBX tier): the leg, first ended as the agent's hang-up, is then
    the transfer it was, counted once."""
    events = stamped_events("transfer-blind")
    blind = next(i for i, (_, m) in enumerate(events) if m.get("Event") == "BlindTransfer")
    agent_left = next(i for i, (_, m) in enumerate(events) if m.get("Event") == "BridgeLeave"
                      and m.get("Channel", "").startswith("PJSIP/8001"))
    reordered = events[:blind] + [events[agent_left]] + [e for i, e in enumerate(events[blind:], blind) if i != agent_left]
    for twice in (False, True):
        tracker, changes = CallTracker(), []
        for at, message in reordered:
            changes += tracker.apply(message, at)
            if twice:
                changes += tracker.apply(message, at)
        call = next(c.call for c in changes if c.kind == "call.ended")
        legs = [(leg.interface, leg.ended_by, leg.transfer) for leg in call.legs]
        assert legs == [("PJSIP/8001", "transfer", "blind"), ("PJSIP/8002", "agent", None)], legs
        assert (call.transfers, call.hangup_by) == (1, "agent")


def test_an_attended_transfer_moves_the_consulted_agent_into_the_call():
    """AttendedTransfer (fields as Asterisk documents them): 8001 consulted 8002 on a second call,
    then handed the caller over: 8002's channel joins the caller's call as its next leg, and the
    consultation call ends on its own as an internal call."""
    tracker = CallTracker()
    caller = {"Linkedid": "7.0", "Uniqueid": "7.0", "Context": "from-elders", "CallerIDNum": "13800138000"}
    scripted(tracker, [("Newchannel", {}), ("QueueCallerJoin", {"Queue": "hotline", "Position": "1"}),
                       ("Newchannel", {"Uniqueid": "7.1", "Context": "agents"}),
                       ("AgentConnect", {"Interface": "PJSIP/8001", "HoldTime": "3", "DestUniqueid": "7.1"})], base=caller)
    consult = {"Linkedid": "9.0", "Uniqueid": "9.0", "Context": "agents", "CallerIDNum": "8001"}
    changes = scripted(tracker, [("Newchannel", {}), ("Newchannel", {"Uniqueid": "9.1"}),
                                 ("DialEnd", {"DestUniqueid": "9.1", "DestChannel": "PJSIP/8002-00000003", "DialStatus": "ANSWER"})],
                       base=consult)
    assert not [c for c in changes if c.kind == "call.answered"]  # an agent calling an agent is no leg
    handover = {"Event": "AttendedTransfer", "Result": "Success", "OrigTransfererUniqueid": "7.1", "OrigTransfererLinkedid": "7.0",
                "SecondTransfererUniqueid": "9.0", "SecondTransfererLinkedid": "9.0", "TransfereeUniqueid": "7.0",
                "TransfereeLinkedid": "7.0", "TransferTargetUniqueid": "9.1", "TransferTargetChannel": "PJSIP/8002-00000003",
                "TransferTargetLinkedid": "9.0", "DestType": "Link"}
    changes = tracker.apply(Message([[k, v] for k, v in handover.items()]), T0 + timedelta(seconds=60))
    assert [c.kind for c in changes] == ["call.transferred", "call.answered"]
    changes = scripted(tracker, [("Hangup", {"Uniqueid": "7.1", "Linkedid": "7.0"}), ("Hangup", {"Uniqueid": "9.0"}),
                                 ("Hangup", {"Uniqueid": "9.1"}), ("Hangup", {"Uniqueid": "7.0", "Linkedid": "7.0"})],
                       base=consult)
    ended = {c.call.linkedid: c.call for c in changes if c.kind == "call.ended"}
    call = ended["7.0"]
    assert [(leg.interface, leg.ended_by, leg.transfer) for leg in call.legs] == \
           [("PJSIP/8001", "transfer", "attended"), ("PJSIP/8002", "agent", None)]
    assert (call.transfers, call.agent_interface, call.outcome) == (1, "PJSIP/8002", "answered")
    assert ended["9.0"].direction == "outbound" and ended["9.0"].legs == []


def member_event(event: str, queue: str, **fields) -> Message:
    return Message([["Event", event], ["Queue", queue], ["Interface", "PJSIP/8001"], ["MemberName", "王芳"],
                    *[[k, v] for k, v in fields.items()]])


def queue_member_row(queue: str, paused: str, reason: str = "") -> Message:
    return Message([["Event", "QueueMember"], ["Queue", queue], ["Location", "PJSIP/8001"], ["Name", "王芳"], ["Status", "1"],
                    ["Paused", paused], ["PausedReason", reason], ["InCall", "0"]])


def test_pause_is_kept_per_queue_and_the_derived_state_does_not_depend_on_the_order_of_rows():
    """Issue 15 #3: paused in one queue and not the other, the agent still takes calls (ready,
    with that queue listed as paused), whichever QueueStatus row comes last after a reconnect."""
    rows = [queue_member_row("hotline", "1", "meal"), queue_member_row("emergency", "0")]
    for order in (rows, list(reversed(rows))):
        tracker = CallTracker()
        tracker.reconcile_queue(members=order, entries=[], now=T0)
        agent = tracker.agents["PJSIP/8001"]
        assert (agent.state, agent.paused_queues, agent.pause_reason) == ("ready", ["hotline"], None)
    tracker.apply(member_event("QueueMemberPause", "emergency", Paused="1", PausedReason="meal"), T0 + timedelta(seconds=5))
    agent = tracker.agents["PJSIP/8001"]
    assert (agent.state, agent.pause_reason, agent.since) == ("paused", "meal", T0 + timedelta(seconds=5))
    tracker.apply(member_event("QueueMemberPause", "hotline", Paused="0"), T0 + timedelta(seconds=9))
    assert (tracker.agents["PJSIP/8001"].state, tracker.agents["PJSIP/8001"].paused_queues) == ("ready", ["emergency"])


def test_a_signed_out_agent_is_not_paused_and_one_removed_mid_call_stays_busy_until_it_ends():
    """Issue 15 #4: signing out of every queue leaves an agent unavailable, not paused; removed
    while talking, they stay in_call (busy time counts) until their leg ends."""
    tracker = CallTracker()
    tracker.apply(member_event("QueueMemberAdded", "hotline", Status="1", Paused="1", PausedReason="break"), T0)
    changes = tracker.apply(member_event("QueueMemberRemoved", "hotline"), T0 + timedelta(seconds=10))
    assert (changes[-1].agent.state, changes[-1].agent.paused, changes[-1].agent.pause_reason) == ("unavailable", False, None)

    tracker = CallTracker()
    tracker.apply(member_event("QueueMemberAdded", "hotline", Status="1", Paused="0"), T0)
    scripted(tracker, [("Newchannel", {}), ("QueueCallerJoin", {"Queue": "hotline", "Position": "1"}),
                       ("AgentConnect", {"Interface": "PJSIP/8001", "HoldTime": "3", "DestUniqueid": "7.1"}),
                       ("Newchannel", {"Uniqueid": "7.1", "Context": "agents"})])
    tracker.apply(member_event("QueueMemberStatus", "hotline", Status="2", Paused="0", InCall="1"), T0 + timedelta(seconds=25))
    removed = tracker.apply(member_event("QueueMemberRemoved", "hotline"), T0 + timedelta(seconds=30))
    assert removed[-1].agent.state == "in_call"
    ended = scripted(tracker, [("Hangup", {"Uniqueid": "7.1"})])
    gone = [c.agent for c in ended if c.kind == "agent.state"]
    assert [(agent.state, agent.since) for agent in gone] == [("unavailable", T0)]  # the leg's end (scripted restarts at T0)


# Care calls (and the console's 回拨) recorded on a real Asterisk 22 with the generated dialplan: the
# agent's softphone is rung by Originate (ChannelId = the call's Linkedid), answers, and the outbound
# context Dials the number over the trunk to the tier's fake carrier (tests/pbx/carrier.py).
CARE_TRACES = {  # trace → (dial_status, talk_seconds, hangup_by, the number called)
    "answered": ("ANSWER", 2, "caller", "13800138001"),  # the elder hung up after 2 s
    "agent-hangs-up": ("ANSWER", 2, "agent", "13800138002"),
    "busy": ("BUSY", None, None, "13800138007"),  # 486 Busy Here
    "noanswer": ("NOANSWER", None, None, "13800138008"),  # 180 Ringing until the Dial's timeout
    "congestion": ("CONGESTION", None, None, "13800138009"),  # 503
    "agent-cancels": ("CANCEL", None, None, "13800138018"),  # the agent hung up while it rang
    "trunk-down": ("CHANUNAVAIL", None, None, "13800138004"),  # no DialEnd: DIALSTATUS from VarSet only
    "agent-missed": (None, None, None, None),  # the agent's phone never answered: nothing was dialled
}


def test_an_outbound_call_records_how_the_party_called_answered_on_real_traces():
    """dial_status is the DialEnd of the Dial to the number, not Originate's DialEnd about the
    agent's phone (ANSWER in every trace but agent-missed); answered_at is the party's answer and
    the talk runs to the first BridgeLeave: Asterisk reports the two Hangups in either order
    (the elder's BYE: the agent's channel's Hangup comes first). Applied twice: the same."""
    for name, (status, talk, hangup_by, number) in CARE_TRACES.items():
        for twice in (False, True):
            tracker, changes = replay(f"care-{name}", twice=twice)
            (call,) = [c.call for c in changes if c.kind == "call.ended"]
            assert (call.linkedid, call.direction, call.outcome) == (f"care-{name}", "outbound", "outbound")
            assert (call.dial_status, call.talk_seconds, call.hangup_by, call.caller_number) == (status, talk, hangup_by, number), name
            assert (call.agent_interface, call.elder_ref) == ("PJSIP/8001", "1")  # CC_AGENT and ELDER_ID
            assert tracker.calls == {}
            events = stamped_events(f"care-{name}")
            dialled = [at for at, m in events if m.event == "DialEnd" and m.get("Uniqueid") and m.get("DialStatus") == "ANSWER"]
            assert call.answered_at == (dialled[0] if dialled else None), name
            kinds = [c.kind for c in changes if c.call is not None]
            assert kinds.count("call.answered") == (1 if status == "ANSWER" else 0) and kinds.count("call.ended") == 1, kinds
            if status == "ANSWER":  # ringing until the party called answers, then talking
                states = [c.call.state for c in changes if c.call is not None]
                assert states[states.index("talking") - 1] == "ringing", states
                originate = next(at for at, m in events if m.event == "DialEnd" and not m.get("Uniqueid"))
                assert originate < call.answered_at  # the agent's phone answered first: not the talk's start


def test_a_bridge_restarted_during_a_care_call_still_ends_its_talk():
    """The tracker restored mid-talk (the call as the database had it) takes the rest of the trace:
    the talk and who hung up come out as without the restart."""
    events = stamped_events("care-answered")
    cut = next(i for i, (_, m) in enumerate(events) if m.event == "BridgeEnter") + 1
    first = CallTracker()
    for at, message in events[:cut]:
        first.apply(message, at)
    talking = first.calls["care-answered"].snapshot()
    assert (talking.state, talking.dial_status, talking.talk_seconds) == ("talking", "ANSWER", None)
    second = CallTracker()
    second.restore(talking)
    changes = [change for at, message in events[cut:] for change in second.apply(message, at)]
    call = next(c.call for c in changes if c.kind == "call.ended")
    assert (call.answered_at, call.talk_seconds, call.hangup_by, call.dial_status) == (talking.answered_at, 2, "caller", "ANSWER")
