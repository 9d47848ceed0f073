"""关怀计划 (/supervisor/care): rules, policy and script, making the day, handing an agent's care
calls over; forms through HTTP as the browser posts them."""

from __future__ import annotations

from urllib.parse import unquote, unquote_plus

from fastapi.testclient import TestClient
from sqlalchemy import select

from callcenter.areas.models import Area
from callcenter.care.models import CareRule, CareSettings, CareTask
from tests.care.conftest import HIGH, add_elder, add_rules, on_duty
from tests.conftest import csrf_headers, login, make_user


def _form(client, path: str, data: dict | list):
    client.get("/supervisor/care")  # the page sets the CSRF cookie the form repeats
    fields: dict[str, list[str]] = {}
    for name, value in (data.items() if isinstance(data, dict) else data):
        fields.setdefault(name, []).append(value)
    return client.post(path, data=fields, headers=csrf_headers(client), follow_redirects=False)


def test_rules_policy_and_the_day_from_the_page(app, services, agent, second_agent):
    with TestClient(app) as boss:
        login(boss, make_user(services, "supervisor"))
        refused = _form(boss, "/supervisor/care/rules", {"name": "只有名称", "risk_level": "2"})
        assert refused.status_code == 422 and "关怀电话与上门巡访至少设置一项" in refused.text
        saved = _form(boss, "/supervisor/care/rules", [("name", "独居失能"), ("living_situations", "lives_alone"),
                                                       ("ability_levels", "severe"), ("ability_levels", "moderate"),
                                                       ("call_every_days", "3"), ("visit_every_days", "7"),
                                                       ("risk_level", "3"), ("active", "true")])
        assert saved.status_code == 303 and "已保存规则" in unquote(saved.headers["location"])
        with services.db.session_scope() as session:
            [rule] = session.execute(select(CareRule)).scalars().all()
            assert rule.ability_levels == ["severe", "moderate"] and rule.call_every_days == 3

        bad_policy = _form(boss, "/supervisor/care/policy", {"call_attempts": "3", "retry_after_hours": "4,100",
                                                             "visit_deadline_hours": "24", "work_starts": "09:00",
                                                             "work_ends": "17:30", "script": ""})
        assert bad_policy.status_code == 422 and "重拨间隔应在 1 到 72 小时之间" in bad_policy.text
        _form(boss, "/supervisor/care/policy", {"call_attempts": "2", "retry_after_hours": "3，6", "visit_deadline_hours": "12",
                                                "work_starts": "08:30", "work_ends": "18:00", "script": "{name}您好，我是{agent}"})
        with services.db.session_scope() as session:
            policy = session.get(CareSettings, 1)
            assert (policy.call_attempts, policy.retry_after_hours, policy.work_starts) == (2, [3, 6], "08:30")

        for number in range(4):
            add_elder(services, f"老人{number}", living="lives_alone", ability="severe", phone=f"+861380000000{number}")
        on_duty(services, agent)
        on_duty(services, second_agent)
        made = _form(boss, "/supervisor/care/day", {})
        assert made.status_code == 303 and "分配 4 个" in unquote_plus(made.headers["location"])
        page = boss.get("/supervisor/care").text
        assert "王芳" in page and "李强" in page

        moved = _form(boss, "/supervisor/care/hand-over", {"from_user_id": str(agent.id), "to_user_id": str(second_agent.id)})
        assert moved.status_code == 303
        with services.db.session_scope() as session:
            owners = {task.assigned_to for task in session.execute(select(CareTask).where(CareTask.kind == "call")).scalars()}
        assert owners == {second_agent.id}
        same = _form(boss, "/supervisor/care/hand-over", {"from_user_id": str(second_agent.id), "to_user_id": str(second_agent.id)})
        assert same.status_code == 422 and "不能是同一位坐席" in same.text


def test_agents_and_officials_cannot_change_the_care_plan(app, services, console):
    add_rules(services, HIGH)
    assert console.get("/supervisor/care").status_code == 403
    refused = console.post("/api/care/settings", json={}, headers=csrf_headers(console))
    assert refused.status_code in (403, 405)
    with TestClient(app) as official:
        with services.db.session_scope() as session:
            district = Area(name="中山区", level="district")
            session.add(district)
            session.flush()
            district_id = district.id
        login(official, make_user(services, "district_official", area_id=district_id))
        assert official.get("/supervisor/care").status_code == 403
