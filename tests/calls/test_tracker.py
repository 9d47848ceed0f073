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
                     "call.transferred", "call.agent_done", "call.ended"]
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
    assert [c.kind for c in caller_first][-1] == "call.ended" and "call.agent_done" not in [c.kind for c in caller_first]
    assert (caller_first[-1].call.hangup_by, caller_first[-1].call.talk_seconds) == ("caller", 30)  # to the last hang-up
