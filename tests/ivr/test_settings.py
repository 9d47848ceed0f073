"""The IVR's menu and business hours: the file's defaults, what supervisors change over HTTP (the
JSON API and the /supervisor/ivr page), and the next call taking the change."""

from __future__ import annotations

import pytest

from callcenter.errors import FieldErrors
from callcenter.timeutil import utcnow
from ivr import menu
from tests.conftest import login, make_user
from tests.ivr.test_scripts import run_calls


def test_the_menu_file_gives_the_defaults(supervisor_client):
    settings = supervisor_client.get("/api/ivr/settings").json()
    assert settings["menu"]["keys"] == {"0": "agent", "1": "meal", "2": "home_service", "3": "medical", "9": "emergency"}
    assert settings["hours"]["periods"] == ["08:00-20:00"] and settings["versions"] == {}
    assert settings["prompts"]["welcome"] == "您好，这里是12349养老服务热线。"


def test_agents_may_not_read_or_change_the_settings(agent_client):
    assert agent_client.get("/api/ivr/settings").status_code == 403
    assert agent_client.put("/api/ivr/settings", json={"menu": {"retries": 0}}).status_code == 403


def test_a_supervisor_change_takes_effect_on_the_next_call(services, settings, supervisor_client):
    before = supervisor_client.get("/api/ivr/settings").json()
    changed = supervisor_client.put("/api/ivr/settings", json={
        "menu": {"keys": {**before["menu"]["keys"], "1": "medical", "3": ""}}, "hours": {"always_open": True},
        "prompts": {"welcome": "您好，这里是大连12349养老服务热线。"}, "versions": before["versions"]})
    assert changed.status_code == 200, changed.text
    assert changed.json()["menu"]["keys"] == {"0": "agent", "1": "medical", "2": "home_service", "9": "emergency"}
    assert changed.json()["versions"] == {"menu": 1, "hours": 1, "prompts": 1}
    assert changed.json()["hours"]["periods"] == ["08:00-20:00"]  # left out: kept
    (one, three), _ = run_calls(services, settings, {"keys": ["1"]}, {"keys": [None, "3", None, None]})
    assert one.variables["IVR_ROUTE"] == "medical"
    assert three.variables["IVR_ROUTE"] == "agent" and "12349/invalid" in three.played


def test_a_stale_page_and_bad_values_are_refused_and_nothing_changes(supervisor_client):
    first = supervisor_client.get("/api/ivr/settings").json()
    assert supervisor_client.put("/api/ivr/settings", json={"menu": {"retries": 0}, "versions": first["versions"]}).status_code == 200
    stale = supervisor_client.put("/api/ivr/settings", json={"menu": {"retries": 2}, "versions": first["versions"]})
    assert stale.status_code == 409 and "已被他人修改" in stale.json()["detail"]
    current = supervisor_client.get("/api/ivr/settings").json()
    bad = supervisor_client.put("/api/ivr/settings", json={
        "menu": {"keys": {"1": "meal"}, "digit_timeout_seconds": 99},
        "hours": {"periods": ["20:00-08:00", "8点"], "holidays": ["2026-13-01"]}, "versions": current["versions"]})
    assert bad.status_code == 422
    messages = " ".join(item["msg"] for item in bad.json()["detail"])
    for text in ("必须保留一个紧急求助按键", "按键等待秒数应在 2–20 之间", "时段的结束须晚于开始", "时段格式应为 HH:MM-HH:MM：8点",
                 "节假日日期格式应为 YYYY-MM-DD：2026-13-01"):
        assert text in messages
    assert supervisor_client.get("/api/ivr/settings").json() == current


def test_a_bad_menu_file_is_refused_field_by_field(tmp_path):
    path = tmp_path / "menu.toml"
    path.write_text('[menu]\nkeys = { "1" = "pizza", "9" = "emergency" }\nqueue = "热线"\n[hours]\nperiods = []\n', encoding="utf-8")
    with pytest.raises(FieldErrors) as error:
        menu.parse(menu.read_file(path))
    fields = [field for field, _ in error.value.errors]
    assert fields == ["keys", "queue", "periods"]


def test_business_hours_holidays_and_make_up_workdays():
    from datetime import date, datetime, time
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Shanghai")
    hours = menu.Hours(open_days=frozenset(range(5)), periods=((time(8), time(12)), (time(13, 30), time(17, 30))),
                       holidays=frozenset({date(2026, 10, 1)}), workdays=frozenset({date(2026, 9, 27)}))
    assert hours.is_open(datetime(2026, 9, 30, 9, 0, tzinfo=tz))  # a Wednesday morning
    assert not hours.is_open(datetime(2026, 9, 30, 12, 30, tzinfo=tz))  # lunch
    assert hours.next_opening(datetime(2026, 9, 30, 12, 30, tzinfo=tz)) == datetime(2026, 9, 30, 13, 30, tzinfo=tz)
    assert not hours.is_open(datetime(2026, 10, 1, 9, 0, tzinfo=tz))  # National Day
    assert hours.is_open(datetime(2026, 9, 27, 9, 0, tzinfo=tz))  # a Sunday worked in exchange (调休)
    assert hours.next_opening(datetime(2026, 10, 1, 9, 0, tzinfo=tz)) == datetime(2026, 10, 2, 8, 0, tzinfo=tz)
    assert hours.next_opening(datetime(2026, 10, 2, 18, 0, tzinfo=tz)) == datetime(2026, 10, 5, 8, 0, tzinfo=tz)  # Friday → Monday
    assert hours.describe() == "周一、周二、周三、周四、周五 08:00-12:00、13:30-17:30"


def test_the_settings_page_saves_and_tells_what_is_wrong(services, settings, client):
    supervisor = make_user(services, "supervisor")
    login(client, supervisor)
    page = client.get("/supervisor/ivr")
    assert page.status_code == 200 and "语音导航与工作时间" in page.text and "12349/welcome.wav" in page.text
    today = utcnow().astimezone(settings.tz).date().isoformat()
    form = {"csrf_token": client.cookies.get("cc_csrf"), **{f"key_{d}": r for d, r in menu.parse(menu.read_file()).menu.keys.items()},
            "digit_timeout_seconds": "6", "retries": "1", "emergency_priority": "20", "survey_timeout_seconds": "8",
            "queue": "hotline", "on_duty_queue": "emergency", "high_risk_skip_menu": "true", "open_days": ["0", "1", "2", "3", "4", "5", "6"],
            "periods": "08:00-12:00，13:00-20:00", "holidays": today, "workdays": "",
            "version_menu": "0", "version_hours": "0", "version_prompts": "0"}
    saved = client.post("/supervisor/ivr", data=form, follow_redirects=True)
    assert saved.status_code == 200 and "已保存语音导航与工作时间设置" in saved.text
    assert "非工作时间" in saved.text and "08:00-12:00、13:00-20:00" in saved.text
    (call,), _ = run_calls(services, settings, {"keys": ["9"]})
    assert (call.played[0], call.variables["QUEUE_PRIO"], call.variables["IVR_QUEUE"]) == ("12349/closed", "20", "emergency")
    stale = client.post("/supervisor/ivr", data=form)
    assert stale.status_code == 409 and "已被他人修改" in stale.text
    bad = client.post("/supervisor/ivr", data={**form, "version_menu": "1", "version_hours": "1", "version_prompts": "1",
                                               "key_9": "", "digit_timeout_seconds": "abc"})
    assert bad.status_code == 422 and "按键等待秒数应为整数" in bad.text
    assert client.post("/supervisor/ivr", data={**form, "version_menu": "1", "version_hours": "1", "version_prompts": "1",
                                                "key_9": ""}).status_code == 422


def test_first_saves_at_the_same_moment_one_wins_the_rest_are_told(app, services):
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    supervisor = make_user(services, "supervisor")

    def save(retries):
        with TestClient(app) as client:
            login(client, supervisor)
            return client.put("/api/ivr/settings", json={"menu": {"retries": retries % 3}, "versions": {}}).status_code

    with ThreadPoolExecutor(10) as pool:
        statuses = sorted(pool.map(save, range(10)))
    assert statuses == [200] + [409] * 9
