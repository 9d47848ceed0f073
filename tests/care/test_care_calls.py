"""Care calls through the telephony stack: an agent dials a care task over HTTP, the AMI simulator
rings the agent's phone and then the elder's number (whose last digit decides: 7 busy, 8 rings
out; the rest answer), the real bridge records the call, and the attempt's outcome is what the
agent's list (GET /api/care/tasks/mine, which settles finished calls) then shows. Three misses
escalate the task to the elder's emergency contacts and a visit, which supervisors see."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from callcenter.calls.models import CallRecord
from callcenter.care import service as care_service
from callcenter.care.models import CareAttempt, CareRule, CareTask
from callcenter.elders import service as elders_service
from callcenter.elders.schemas import ContactIn, ElderIn, PhoneIn
from callcenter.timeutil import today_in
from tests.conftest import login, make_user
from tests.telephony import LiveTelephony, agent_row, call_rows, wait_for

ANSWERS, BUSY, RINGS_OUT = "13800138001", "13900139007", "13900139008"


@pytest.fixture
def telephony(settings, services):
    live = LiveTelephony(settings, services)
    live.sim.outbound_ring_seconds = 1.0  # OUTBOUND_RING_SECONDS: an unanswered number rings out at once
    yield live
    live.close()


def make_elder(services, name: str, *numbers: str, contacts: tuple[ContactIn, ...] = ()) -> int:
    with services.db.session_scope() as session:
        elder_in = ElderIn(name=name, phones=[PhoneIn(number=number) for number in numbers], emergency_contacts=list(contacts))
        return elders_service.create(session=session, elder_in=elder_in, sealer=services.sealer, area_code="0411").id


def make_todays_tasks(services, settings) -> None:
    """The morning's run: every elder is due a care call, dealt to the agents on duty."""
    with services.db.session_scope() as session:
        session.add(CareRule(name="全体老人", call_every_days=7))
        session.flush()
        made = care_service.make_day(session=session, today=today_in(settings.tz), tz=settings.tz)
        assert made.calls == made.assigned == 2


def dial(console, task_id: int, number: str) -> int:
    response = console.post(f"/api/care/tasks/{task_id}/dial", json={"number": number})
    assert response.status_code == 200, response.text
    assert "正在呼叫您的分机" in response.json()["message"]
    return response.json()["attempt_id"]


def outcome_of(console, task_id: int, attempt_id: int) -> dict:
    """The attempt as the agent sees it once the call ended: 今日关怀 settles the outcomes first."""
    def settled():
        assert console.get("/api/care/tasks/mine").status_code == 200
        attempts = console.get(f"/api/care/tasks/{task_id}").json()["attempts"]
        return next((a for a in attempts if a["id"] == attempt_id and a["outcome"] is not None), None)
    return wait_for(settled, 10, f"attempt {attempt_id} of task {task_id} not settled")


def dial_status(services, attempt_id: int) -> str | None:
    with services.db.session_scope() as session:
        attempt = session.get(CareAttempt, attempt_id)
        return session.get(CallRecord, attempt.call_id).dial_status


def test_care_calls_get_the_elders_answer_and_three_misses_escalate(app, services, settings, telephony, console, agent):
    answers = make_elder(services, "张大爷", ANSWERS)
    misses = make_elder(services, "李奶奶", BUSY, RINGS_OUT, contacts=(ContactIn(name="李强", relation="son", phone="15840112233"),
                                                                      ContactIn(name="李梅", relation="daughter", phone="13904112233",
                                                                                priority=2)))
    assert console.post("/api/agent/state", json={"state": "ready"}).status_code == 200
    wait_for(lambda: (row := agent_row(services, "8001")) and row.state == "ready", message="agent not on duty")
    make_todays_tasks(services, settings)
    mine = {task["elder_id"]: task for task in console.get("/api/care/tasks/mine").json()["tasks"]}
    assert set(mine) == {answers, misses}

    # Answered: the agent's phone rings first, then the elder's; the elder picks up and later hangs up.
    attempt = dial(console, mine[answers]["id"], ANSWERS)
    originate = telephony.actions("Originate")[-1]
    with services.db.session_scope() as session:
        linkedid = session.get(CareAttempt, attempt).linkedid
    assert (originate["Channel"], originate["Exten"], originate["ChannelId"]) == ("PJSIP/8001", ANSWERS, linkedid)
    talking = wait_for(lambda: next((c for c in call_rows(services) if c.linkedid == linkedid and c.state == "talking"), None),
                       message="the care call was not answered")
    assert (talking.direction, talking.elder_id, talking.agent_user_id, talking.caller_e164) == \
           ("outbound", answers, agent.id, "+8613800138001")
    telephony.caller_hangs_up(linkedid)
    answered = outcome_of(console, mine[answers]["id"], attempt)
    assert (answered["outcome"], answered["outcome_label"]) == ("answered", "已接通") and answered["talk_seconds"] is not None
    assert dial_status(services, attempt) == "ANSWER"
    check = console.post(f"/api/care/tasks/{mine[answers]['id']}/check", json={"answers": {
        "health": "good", "mood": "good", "meals": "normal", "safety": "safe", "needs": "none"}})
    assert check.status_code == 200, check.text
    assert [task["elder_id"] for task in console.get("/api/care/tasks/mine").json()["tasks"]] == [misses]

    # Busy, then the other number rings out, then busy again: the third miss escalates.
    task_id = mine[misses]["id"]
    for number, outcome, status in ((BUSY, "busy", "BUSY"), (RINGS_OUT, "no_answer", "NOANSWER"), (BUSY, "busy", "BUSY")):
        attempt = dial(console, task_id, number)
        seen = outcome_of(console, task_id, attempt)
        assert (seen["outcome"], seen["talk_seconds"], dial_status(services, attempt)) == (outcome, None, status)
    task = console.get(f"/api/care/tasks/{task_id}").json()["task"]
    assert (task["status"], task["attempts"]) == ("escalated", 3)

    mine = console.get("/api/care/tasks/mine").json()["tasks"]  # the contacts are called next, in their order
    assert [(t["kind"], t["phone"], t["note"]) for t in mine] == [("contact_call", "+8615840112233", "联系紧急联系人：李强"),
                                                                  ("contact_call", "+8613904112233", "联系紧急联系人：李梅")]
    with services.db.session_scope() as session:
        visit = session.exec(select(CareTask).where(CareTask.kind == "visit", CareTask.parent_id == task_id)).one()
        assert visit.deadline_at is not None and visit.status == "open"
    with TestClient(app) as supervisor:
        login(supervisor, make_user(services, "supervisor"))
        alerts = supervisor.get("/api/care/alerts").json()["alerts"]
    assert [(a["id"], a["kind"], a["elder"]["name"], a["source"]) for a in alerts] == [(visit.id, "visit", "李奶奶", "escalation")]
    assert alerts[0]["deadline_at"] and "3次未接通" in alerts[0]["note"]
