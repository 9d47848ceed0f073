"""Proactive care through HTTP and the worker's jobs: rules, the day's plan and tasks shared among
the agents on duty, contacts that close tasks, exceptions, the check after a care call."""

from __future__ import annotations

from datetime import timedelta

import redis
from rq import SimpleWorker
from rq.job import Job
from sqlalchemy import select

from callcenter.calls.models import CallRecord
from callcenter.care import jobs as care_jobs
from callcenter.care.models import CareAttempt, CarePlan, CareTask
from callcenter.timeutil import today_in, utcnow
from tests.care.conftest import EMPTY_NEST, HIGH, add_elder, add_rules, answered_call_from, on_duty
from tests.conftest import csrf_headers, login, make_user


def field_errors(response) -> dict[str, str]:
    """What a 422 says of each field (Pydantic's and our own checks alike)."""
    return {".".join(str(part) for part in item["loc"][1:]): item["msg"] for item in response.json()["detail"]}


def supervisor(app, services):
    from fastapi.testclient import TestClient

    client = TestClient(app)
    login(client, make_user(services, "supervisor"))
    return client


def test_rules_are_checked_and_edited_by_city_supervisors_only(app, services, console):
    boss = supervisor(app, services)
    bad = boss.post("/api/care/rules", json={"name": "", "living_situations": ["alone"], "min_age": 30})
    assert bad.status_code == 422
    errors = field_errors(bad)
    assert "未知的取值" in errors["living_situations"] and "至少设置一项" in errors["call_every_days"]
    assert "年龄" in errors["min_age"] and "名称" in errors["name"]
    made = boss.post("/api/care/rules", json=HIGH)
    assert made.status_code == 201, made.text
    rule = made.json()
    assert rule["risk_label"] == "高" and rule["call_every_days"] == 3
    assert console.post("/api/care/rules", json=EMPTY_NEST).status_code == 403  # an agent
    changed = boss.put(f"/api/care/rules/{rule['id']}", json=HIGH | {"call_every_days": 2})
    assert changed.json()["call_every_days"] == 2
    gone = boss.delete(f"/api/care/rules/{rule['id']}", headers=csrf_headers(boss))
    assert gone.status_code == 200, gone.text
    assert gone.json()["active"] is False
    assert [r["active"] for r in boss.get("/api/care/rules").json()["rules"]] == [False]


def test_the_day_deals_care_calls_by_risk_to_the_agents_on_duty(app, services, settings, console, agent, second_agent):
    add_rules(services, HIGH, EMPTY_NEST)
    never_called = add_elder(services, "张大爷", living="lives_alone", ability="severe", phone="+8613800000001")
    late = add_elder(services, "李奶奶", living="empty_nest", phone="+8613800000002")
    recent = add_elder(services, "王奶奶", living="empty_nest", phone="+8613800000003")
    also_high = add_elder(services, "赵大爷", living="lives_alone", ability="moderate", phone="+8613800000004")
    in_hospital = add_elder(services, "钱大爷", living="lives_alone", ability="severe", phone="+8613800000005")
    add_elder(services, "孙奶奶", living="with_family")  # no rule covers her
    answered_call_from(services, late, utcnow() - timedelta(days=10))  # due 3 days ago
    answered_call_from(services, recent, utcnow() - timedelta(days=2))  # due in 5 days
    on_duty(services, agent)
    on_duty(services, second_agent, state="paused")
    off_duty = make_user(services, "agent", username="agent8003", sip_extension="8003")
    assert console.post(f"/api/care/elders/{in_hospital}/overrides", json={"reason": "in_hospital", "note": "市中心医院"}
                        ).status_code == 201

    boss = supervisor(app, services)
    made = boss.post("/api/care/day", json={}).json()
    assert made == {"calls": 3, "visits": 2, "assigned": 3}  # calls: 张, 赵, 李; visits: 张, 赵 (none for 空巢, none in hospital)
    with services.db.session_scope() as session:
        plans = {plan.elder_id: plan for plan in session.execute(select(CarePlan)).scalars()}
    assert set(plans) == {never_called, late, recent, also_high, in_hospital}
    assert plans[in_hospital].call_every_days is None and plans[recent].call_due_on == today_in(settings.tz) + timedelta(days=5)

    mine = console.get("/api/care/tasks/mine").json()["tasks"]
    theirs = _tasks_of(app, services, second_agent)
    assert [t["elder"]["name"] for t in mine] == ["张大爷", "李奶奶"]  # dealt in turn: 张 (高), 赵 (高), 李 (中, 3 days late)
    assert [t["elder"]["name"] for t in theirs] == ["赵大爷"]
    assert mine[1]["overdue_days"] == 3 and mine[0]["risk_label"] == "高" and mine[0]["elder"]["risks"] == []
    assert _tasks_of(app, services, off_duty) == []

    # a supervisor moves 李奶奶 to the second agent
    assert boss.post(f"/api/care/tasks/{mine[1]['id']}/assign", json={"user_id": second_agent.id}).status_code == 200
    assert [t["elder"]["name"] for t in _tasks_of(app, services, second_agent)] == ["赵大爷", "李奶奶"]
    assert console.post(f"/api/care/tasks/{mine[1]['id']}/dial", json={}).status_code == 409  # no longer mine
    assert boss.post("/api/care/day", json={}).json() == {"calls": 0, "visits": 0, "assigned": 0}  # twice: nothing more


def _tasks_of(app, services, user) -> list[dict]:
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        login(client, user)
        return client.get("/api/care/tasks/mine").json()["tasks"]


def test_the_worker_closes_a_care_call_when_the_elder_calls_in_and_makes_the_day_once(app, services, settings, console, agent):
    add_rules(services, HIGH)
    elder = add_elder(services, "张大爷", living="lives_alone", ability="severe", phone="+8613800000001")
    on_duty(services, agent)
    care_jobs.configure(settings)
    connection = redis.Redis.from_url(settings.redis_url)
    morning = utcnow().replace(hour=1, minute=30)  # 09:30 in Shanghai: after the care-call hours start
    night = utcnow().replace(hour=16, minute=30)  # 00:30 in Shanghai: before them
    worker = SimpleWorker([care_jobs.queue(connection)], connection=connection)
    assert care_jobs.kick(connection, now=night) == ["sweep"]
    assert care_jobs.kick(connection, now=night) == []  # a sweep at most every 30 s
    worker.work(burst=True)
    assert console.get("/api/care/tasks/mine").json()["tasks"] == []  # no plan before the day starts
    connection.delete(care_jobs.SWEEP_FLAG)
    assert care_jobs.kick(connection, now=morning) == ["sweep"]
    worker.work(burst=True)  # the sweep queues the day, the same burst makes it
    [task] = console.get("/api/care/tasks/mine").json()["tasks"]

    answered_call_from(services, elder, utcnow())  # the elder calls the hotline before we call them
    connection.delete(care_jobs.SWEEP_FLAG)
    assert care_jobs.kick(connection, now=morning + timedelta(minutes=6)) == ["sweep"]
    worker.work(burst=True)
    finished = [Job.fetch(job_id, connection=connection).func_name
                for job_id in care_jobs.queue(connection).finished_job_registry.get_job_ids()]
    assert finished.count("callcenter.care.jobs.make_day") == 1 and finished.count("callcenter.care.jobs.sweep") == 3  # the day once
    assert console.get("/api/care/tasks/mine").json()["tasks"] == []
    with services.db.session_scope() as session:
        closed = session.get(CareTask, task["id"])
        assert (closed.status, closed.note) == ("done", "已通过其他方式联系上")
    plan = console.get(f"/api/care/elders/{elder}/plan").json()
    assert [contact["label"] for contact in plan["contacts"]] == ["老人来电"]


def test_exceptions_and_the_check_after_an_answered_care_call(app, services, settings, console, agent):
    add_rules(services, HIGH)
    elder = add_elder(services, "张大爷", living="lives_alone", ability="severe", phone="+8613800000001")
    on_duty(services, agent)
    supervisor(app, services).post("/api/care/day", json={})
    [task] = console.get("/api/care/tasks/mine").json()["tasks"]
    assert console.post(f"/api/care/elders/{elder}/overrides", json={"reason": "sleeping"}).status_code == 422
    assert console.post(f"/api/care/elders/{elder}/overrides", json={"reason": "adjusted"}).status_code == 422
    past = (today_in(settings.tz) - timedelta(days=1)).isoformat()
    assert console.post(f"/api/care/elders/{elder}/overrides", json={"reason": "declined", "until": past}).status_code == 422

    detail = console.get(f"/api/care/tasks/{task['id']}").json()
    assert "张大爷" in detail["script"] and "王芳" in detail["script"] and detail["phones"][0]["number"] == "+8613800000001"
    early = console.post(f"/api/care/tasks/{task['id']}/check", json={"answers": {}})
    assert early.status_code == 422 and "请选择" in field_errors(early)["answers.health"]
    answers = {"health": "fair", "mood": "low", "meals": "normal", "safety": "hazard", "needs": "service"}
    not_yet = console.post(f"/api/care/tasks/{task['id']}/check", json={"answers": answers})
    assert not_yet.status_code == 409 and "没有接通" in not_yet.json()["detail"]

    with services.db.session_scope() as session:  # the care call as the bridge records it: answered, 3 minutes
        session.add(CareAttempt(task_id=task["id"], user_id=agent.id, linkedid="care-test-1", at=utcnow()))
        session.add(CallRecord(linkedid="care-test-1", direction="outbound", state="ended", started_at=utcnow(), elder_id=elder,
                               answered_at=utcnow(), ended_at=utcnow(), talk_seconds=180, dial_status="ANSWER",
                               outcome="outbound"))
    [still] = console.get("/api/care/tasks/mine").json()["tasks"]  # settles the attempt: answered, the check is due
    assert still["attempts"] == 0
    saved = console.post(f"/api/care/tasks/{task['id']}/check", json={"answers": answers, "findings": ["hazard"],
                                                                     "note": "燃气灶老化"})
    assert saved.status_code == 200 and saved.json()["findings"] == ["安全隐患"]
    assert console.get("/api/care/tasks/mine").json()["tasks"] == []
    again = console.post(f"/api/care/tasks/{task['id']}/check", json={"answers": answers})
    assert again.status_code == 409 and "已完成" in again.json()["detail"]

    # deceased: no more contact, the open tasks go
    supervisor(app, services).post("/api/care/day", json={})
    assert console.post(f"/api/care/elders/{elder}/overrides", json={"reason": "deceased"}).status_code == 201
    with services.db.session_scope() as session:
        open_tasks = session.execute(select(CareTask).where(CareTask.elder_id == elder, CareTask.status == "open")).all()
    assert open_tasks == []
    assert supervisor(app, services).post("/api/care/day", json={}).json()["calls"] == 0


def _missed_call(services, task_id: int, user_id: int, elder_id: int, number: int, status: str = "NOANSWER") -> None:
    """A care call as the bridge records it: dialled, not answered."""
    with services.db.session_scope() as session:
        session.add(CareAttempt(task_id=task_id, user_id=user_id, linkedid=f"care-miss-{number}", at=utcnow()))
        session.add(CallRecord(linkedid=f"care-miss-{number}", direction="outbound", state="ended", started_at=utcnow(),
                               elder_id=elder_id, ended_at=utcnow(), dial_status=status, outcome="outbound"))


def test_three_misses_call_the_contacts_and_hurry_the_planned_visit(app, services, settings, console, agent):
    add_rules(services, HIGH)  # calls every 3 days and a weekly visit: the day makes both
    elder = add_elder(services, "张大爷", living="lives_alone", ability="severe", phone="+8613800000001",
                      contacts=(("张伟", "+8615840112233"), ("张丽", "+8613904112233")))
    on_duty(services, agent)
    boss = supervisor(app, services)
    assert boss.post("/api/care/day", json={}).json() == {"calls": 1, "visits": 1, "assigned": 1}
    [task] = console.get("/api/care/tasks/mine").json()["tasks"]
    for number, status in enumerate(("NOANSWER", "BUSY")):
        _missed_call(services, task["id"], agent.id, elder, number, status)
        console.get("/api/care/tasks/mine")  # settles the attempt; the retry waits for its time
        with services.db.session_scope() as session:
            retry = session.get(CareTask, task["id"])
            assert retry.attempts == number + 1 and retry.next_attempt_at is not None
    _missed_call(services, task["id"], agent.id, elder, 3, "CHANUNAVAIL")
    contacts = console.get("/api/care/tasks/mine").json()["tasks"]
    assert [(t["kind"], t["phone"], t["note"]) for t in contacts] == [
        ("contact_call", "+8615840112233", "联系紧急联系人：张伟"), ("contact_call", "+8613904112233", "联系紧急联系人：张丽")]
    alerts = boss.get("/api/care/alerts").json()["alerts"]
    assert [(a["kind"], a["source"], a["elder"]["name"]) for a in alerts] == [("visit", "escalation", "张大爷")]
    assert "3次未接通" in alerts[0]["note"] and alerts[0]["deadline_at"]
    with services.db.session_scope() as session:
        escalated = session.get(CareTask, task["id"])
        visits = session.execute(select(CareTask).where(CareTask.kind == "visit")).scalars().all()
    assert escalated.status == "escalated" and len(visits) == 1  # the planned visit, hurried: not a second one


def test_the_mornings_ingest_takes_calls_recorded_late_without_rereading_a_year(app, services, settings, console, agent):
    add_rules(services, EMPTY_NEST)
    elder = add_elder(services, "李奶奶", living="empty_nest", phone="+8613800000002")
    answered_call_from(services, elder, utcnow() - timedelta(days=30))  # the first morning reads 400 days back
    boss = supervisor(app, services)
    boss.post("/api/care/day", json={})
    plan = console.get(f"/api/care/elders/{elder}/plan").json()
    assert len(plan["contacts"]) == 1
    answered_call_from(services, elder, utcnow() - timedelta(days=40))  # before the newest contact less 2 days: not read again
    late = utcnow() - timedelta(days=29)
    answered_call_from(services, elder, late)  # recorded late (an outage), within the overlap
    boss.post("/api/care/day", json={})
    contacts = console.get(f"/api/care/elders/{elder}/plan").json()["contacts"]
    assert len(contacts) == 2
    with services.db.session_scope() as session:
        answered_day = (late + timedelta(seconds=20)).astimezone(settings.tz).date()  # answered 20 s in
        assert session.get(CarePlan, elder).call_due_on == answered_day + timedelta(days=7)
