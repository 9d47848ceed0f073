"""Calls rebuilt from Asterisk's own records (calls/records.py): the queue_log and CEL file a real
Asterisk 22 wrote while the bridge was killed in the real-PBX outage test (tests/pbx/test_outages.py):
a call transferred by Redirect from 王芳 to 李娜, one answered and hung up by the caller, one
ended in the IVR, one abandoned after 7 s with both agents paused."""

from datetime import datetime, timedelta, timezone
from pathlib import Path

from callcenter.calls import records

RECORDS = Path(__file__).resolve().parents[1] / "fixtures" / "asterisk-records"


def at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def rebuilt(**options):
    found = records.read(RECORDS, at(1796152080))
    return {call.linkedid: call for call in records.ended_calls(found, start=at(1796152080), end=at(1796152120), **options)}


def test_every_call_of_the_window_is_rebuilt_with_its_outcome_agents_and_legs():
    calls = rebuilt()
    assert set(calls) == {"pbx-56387d4370fb", "pbx-d2d7984a90c1", "pbx-736d2e67a4e9", "pbx-6231e7898173"}  # not the 2125 call
    assert all(call.reconciled and call.direction == "inbound" and call.state == "ended" for call in calls.values())

    moved = calls["pbx-56387d4370fb"]
    assert [(leg.interface, leg.agent_name, leg.ended_by, leg.transfer) for leg in moved.legs] == \
           [("PJSIP/8001", "王芳", "transfer", "agent"), ("PJSIP/8002", None, "agent", None)]
    assert (moved.outcome, moved.transfers, moved.agent_interface, moved.hangup_by, moved.caller_number) == \
           ("answered", 1, "PJSIP/8002", "agent", "13800138000")
    assert moved.talk_seconds == sum(leg.talk_seconds for leg in moved.legs) <= 3  # not queue_log's 3 s for 王芳 alone

    answered = calls["pbx-d2d7984a90c1"]
    assert (answered.outcome, answered.hangup_by, answered.wait_seconds, answered.talk_seconds, answered.agent_name) == \
           ("answered", "caller", 0, 3, "李娜")  # COMPLETECALLER|0|3
    assert (calls["pbx-736d2e67a4e9"].outcome, calls["pbx-736d2e67a4e9"].queue) == ("ivr_only", None)
    gave_up = calls["pbx-6231e7898173"]
    assert (gave_up.outcome, gave_up.wait_seconds, gave_up.legs) == ("abandoned", 7, [])  # ABANDON|1|1|7


def test_calls_already_recorded_or_still_live_are_skipped_and_missing_files_read_as_empty(tmp_path):
    assert set(rebuilt(skip={"pbx-56387d4370fb"})) == {"pbx-d2d7984a90c1", "pbx-736d2e67a4e9", "pbx-6231e7898173"}
    empty = records.read(tmp_path, at(0))
    assert records.ended_calls(empty, start=at(0), end=at(2**31)) == []


def test_a_call_asterisk_never_ended_was_cut_off_when_it_restarted(tmp_path):
    """Asterisk crashed (no LINKEDID_END, no Shutdown): the call's last event is its end, cut off by the PBX."""
    (tmp_path / "cel-custom").mkdir()
    lines = (RECORDS / "cel-custom" / "hotline.csv").read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if "pbx-d2d7984a90c1" in line and not line.startswith('"LINKEDID_END"')
            and not line.startswith(('"HANGUP"', '"CHAN_END"', '"BRIDGE_EXIT"'))]
    (tmp_path / "cel-custom" / "hotline.csv").write_text("\n".join(kept) + "\n", encoding="utf-8")
    (tmp_path / "queue_log").write_text("\n".join(line for line in (RECORDS / "queue_log").read_text(encoding="utf-8").splitlines()
                                                  if "pbx-d2d7984a90c1" in line and "COMPLETE" not in line) + "\n", encoding="utf-8")
    found = records.read(tmp_path, at(1796152080))
    assert records.ended_calls(found, start=at(1796152080), end=at(1796152200)) == []  # no restart known: not ended
    (call,) = records.ended_calls(found, start=at(1796152080), end=at(1796152200), restarted_at=at(1796152110))
    assert (call.outcome, call.hangup_by, call.cut_off, call.agent_interface) == ("answered", "pbx", True, "PJSIP/8002")
    # FullyBooted's Uptime is whole seconds: Asterisk booted up to 1 s before what it gives. A call
    # whose last event falls in that second began in the new run (it is live, not cut off).
    last = max(event.at for event in found.cel)
    assert records.ended_calls(found, start=at(1796152080), end=at(1796152200), restarted_at=last + timedelta(seconds=0.9)) == []
    assert len(records.ended_calls(found, start=at(1796152080), end=at(1796152200), restarted_at=last + timedelta(seconds=1.1))) == 1


def test_cel_times_keep_their_microseconds(tmp_path):
    """cel.conf's dateformat `%s.%6q`: events of one second stay in order and precise."""
    (tmp_path / "cel-custom").mkdir()
    (tmp_path / "cel-custom" / "hotline.csv").write_text(
        '"CHAN_START","1796152081.250000","13800138000","","from-elders-ivr","elder","PJSIP/trunk-00000001","1796152081.1","1796152081.1","",""\n',
        encoding="utf-8")
    (event,) = records.read(tmp_path, at(1796152080)).cel
    assert event.at == at(1796152081) + timedelta(microseconds=250000)


def test_agents_behind_local_channels_keep_their_legs(tmp_path):
    """AGENT_INTERFACE `Local/{extension}@team`: the agents' channels start in `team`, and the
    bridge made from those settings knows it (else the records lose every agent)."""
    from callcenter.calls import bridge
    from callcenter.config import Settings

    (tmp_path / "cel-custom").mkdir()
    cel = (RECORDS / "cel-custom" / "hotline.csv").read_text(encoding="utf-8")
    (tmp_path / "cel-custom" / "hotline.csv").write_text(cel.replace('"agents"', '"team"'), encoding="utf-8")
    (tmp_path / "queue_log").write_bytes((RECORDS / "queue_log").read_bytes())
    settings = Settings(agent_interface="Local/{extension}@team", agent_phone="PJSIP/{extension}")
    made = bridge.from_settings(settings, host="127.0.0.1", port=5038, username="u", secret="s", rollups=object(), database=object())
    found = records.read(tmp_path, at(1796152080))
    window = dict(start=at(1796152080), end=at(1796152120))
    assert [leg.interface for leg in records.ended_calls(found, **window)[0].legs] == []  # the default contexts miss them
    calls = {call.linkedid: call for call in
             records.ended_calls(found, **window, agent_contexts=made.tracker.agent_contexts)}
    assert [(leg.interface, leg.ended_by) for leg in calls["pbx-56387d4370fb"].legs] == \
           [("PJSIP/8001", "transfer"), ("PJSIP/8002", "agent")]
