"""Care calls on a real Asterisk 22 with the generated dialplan used verbatim: an agent dials care
tasks over HTTP (POST /api/care/tasks/{id}/dial), their web softphone rings first and they answer
it, then the outbound context dials the elder over the trunk to a fake carrier (tests/pbx/carrier.py)
that answers, is busy, or rings until Asterisk gives up after OUTBOUND_RING_SECONDS (6 here). The
attempts' outcomes come from what the real Asterisk reported, checked against its own CDRs."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from callcenter.calls.models import CallRecord
from callcenter.care import service as care_service
from callcenter.care.models import CareAttempt, CareRule
from callcenter.elders import service as elders_service
from callcenter.elders.schemas import ElderIn, PhoneIn
from callcenter.timeutil import today_in
from tests.browser import screenshot
from tests.pbx.carrier import Carrier
from tests.pbx.conftest import TIMEOUT, TRUNK_ADDRESS
from tests.telephony import wait_for

pytestmark = pytest.mark.realpbx
ELDERS = {"13800138001": "张大爷", "13900139007": "李奶奶", "13700137008": "王爷爷"}  # answers, busy, rings out
CDR_DISPOSITION = {"ANSWER": "ANSWERED", "BUSY": "BUSY", "NOANSWER": "NO ANSWER"}


@pytest.fixture
def carrier(pbx):
    """The carrier at the trunk's contact, qualified by Asterisk (a contact that never answered
    OPTIONS is unavailable: Dial would fail with CHANUNAVAIL)."""
    fake = Carrier(TRUNK_ADDRESS)
    try:
        pbx.asterisk.cli("pjsip qualify trunk")
        wait_for(lambda: any("trunk/sip:" in line and " Avail " in line for line in pbx.asterisk.cli("pjsip show contacts").splitlines()),
                 10, f"the trunk's contact is not available: {pbx.asterisk.cli('pjsip show contacts')}")
        yield fake
    finally:
        fake.close()


def todays_care_calls(pbx) -> None:
    """The elders, a rule that calls every one of them, and the morning's tasks for the agents on duty."""
    services, tz = pbx.services, pbx.settings.tz
    with services.db.session_scope() as session:
        for number, name in ELDERS.items():
            elders_service.create(session=session, elder_in=ElderIn(name=name, phones=[PhoneIn(number=number)]),
                                  sealer=services.sealer, area_code="0411")
        session.add(CareRule(name="全体老人", call_every_days=7))
        session.flush()
        made = care_service.make_day(session=session, today=today_in(tz), tz=tz)
        assert (made.calls, made.assigned) == (3, 3)


def settled(client, task_id: int, attempt_id: int) -> dict | None:
    """The attempt once its call ended, as 今日关怀 (which settles outcomes) and the task show it."""
    assert client.get("/api/care/tasks/mine").status_code == 200
    attempts = client.get(f"/api/care/tasks/{task_id}").json()["attempts"]
    return next((a for a in attempts if a["id"] == attempt_id and a["outcome"] is not None), None)


def call_of(pbx, attempt_id: int) -> CallRecord:
    with pbx.services.db.session_scope() as session:
        return session.get(CallRecord, session.get(CareAttempt, attempt_id).call_id)


def test_care_calls_get_their_outcomes_from_the_real_asterisk(pbx, consoles, carrier):
    console = consoles("8001")
    console.ready()
    wait_for(lambda: "王芳" in pbx.queue_show(), 10, pbx.queue_show())
    wait_for(lambda: _on_duty(pbx), 10, "the agent is not on duty in the database")
    todays_care_calls(pbx)
    with pbx.api("wangfang") as client:
        tasks = {task["elder"]["name"]: task["id"] for task in client.get("/api/care/tasks/mine").json()["tasks"]}
        assert set(tasks) == set(ELDERS.values())
        seen = {}
        for number, name in ELDERS.items():
            response = client.post(f"/api/care/tasks/{tasks[name]}/dial", json={"number": number})
            assert response.status_code == 200, response.text
            attempt = response.json()["attempt_id"]
            # The agent's own phone rings first. They pick up; a busy number ends the call at once.
            expect(console.page.locator("#sp-answer")).to_be_enabled(timeout=TIMEOUT)
            console.page.click("#sp-answer")
            if name == "张大爷":
                wait_for(lambda n=number: (d := carrier.dialog(n)) and d.status == "answered", 10, f"{number} not answered")
                expect(console.page.locator("#call-state")).to_have_text("通话中", timeout=TIMEOUT)
                expect(console.page.locator("#elder-name")).to_have_text("张大爷", timeout=TIMEOUT)
                screenshot(console.page, "pbx-care-call-talking")
                # they talk: the agent's microphone reaches Asterisk (2 s of 20 ms packets), then the elder puts the phone down
                wait_for(lambda: console.audio_packets()["sent"] > 100, 10, f"no audio from the agent: {console.audio_packets()}")
                carrier.hang_up(number)
            seen[name] = wait_for(lambda t=tasks[name], a=attempt: settled(client, t, a), 20,
                                  f"{name}'s attempt not settled\n{pbx.diagnostics()}") | {"attempt": attempt, "number": number}
            wait_for(lambda: not pbx.agent_channels("8001"), 10, "the agent's phone is still on the call")
    assert {name: attempt["outcome"] for name, attempt in seen.items()} == {"张大爷": "answered", "李奶奶": "busy", "王爷爷": "no_answer"}
    assert [carrier.dialog(number).history for number in ELDERS] == [
        ["< INVITE", "> 200", "< ACK", "> BYE"], ["< INVITE", "< ACK"], ["< INVITE", "< CANCEL", "< ACK"]]

    cdrs = pbx.asterisk.cdr()
    for name, attempt in seen.items():
        call = call_of(pbx, attempt["attempt"])
        status = {"answered": "ANSWER", "busy": "BUSY", "no_answer": "NOANSWER"}[attempt["outcome"]]
        assert (call.direction, call.state, call.dial_status, call.caller_e164) == \
               ("outbound", "ended", status, "+86" + attempt["number"]), name
        assert call.agent_extension == "8001" and call.elder_id is not None
        # Asterisk's own account of the Dial to the trunk (CDR: party A is the agent's channel, whose
        # Uniqueid is the Linkedid; its answer time is the agent's, so billsec is the elder's talk only when answered)
        (cdr,) = [row for row in cdrs if row[16] == call.linkedid and row[6].startswith("PJSIP/trunk-")]
        assert cdr[14] == CDR_DISPOSITION[status], (name, cdr)
        if status == "ANSWER":
            assert call.started_at < call.answered_at < call.ended_at and call.hangup_by == "caller"
            assert call.talk_seconds >= 2 and abs(call.talk_seconds - int(cdr[13])) <= 1, (call.talk_seconds, cdr)
            assert attempt["talk_seconds"] == call.talk_seconds
        else:
            assert (call.answered_at, call.talk_seconds, attempt["talk_seconds"]) == (None, None, None)


def _on_duty(pbx) -> bool:
    with pbx.services.db.session_scope() as session:
        return bool(care_service.agents_on_duty(session=session))
