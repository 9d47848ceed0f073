"""今日关怀 in the agent console, in headless Chromium against the live stack (web server, AMI
simulator, the real bridge): the day's care calls, the preview and script, 拨打, the outcome from
the call, the check and the work order opened from it, then progressive mode dialling the next."""

from __future__ import annotations

from fastapi.testclient import TestClient
from playwright.sync_api import expect
from sqlalchemy import select

from callcenter.care.models import CareAttempt, CareCheck, CareTask
from tests.agent_ui.test_console import TIMEOUT, go_ready, make_zhang, open_console
from tests.browser import screenshot
from tests.care.conftest import HIGH, add_elder, add_rules, on_duty
from tests.conftest import login, make_user
from tests.telephony import LiveTelephony


def test_an_agent_works_a_care_call_from_the_preview_to_the_check(page, live_server, settings, services, agent, app):
    add_rules(services, HIGH)
    elder = make_zhang(services)
    second = add_elder(services, "赵大爷", living="lives_alone", ability="severe", phone="+8613800000004")
    on_duty(services, agent)  # signed in when the morning's plan was dealt
    with TestClient(app) as boss:
        login(boss, make_user(services, "supervisor"))
        assert boss.post("/api/care/day", json={}).json()["assigned"] == 2
    telephony = LiveTelephony(settings, services, wrapup_seconds=0)
    try:
        open_console(page, live_server, agent)
        expect(page.locator("#care-total")).to_have_text("2 位", timeout=TIMEOUT)
        task = page.locator("#care-tasks li").first
        expect(task).to_contain_text("高")
        expect(task).to_contain_text("张大爷")
        expect(task).to_contain_text("今日到期")
        task.locator("a").click()
        expect(page.locator("#care-script")).to_contain_text("张大爷", timeout=TIMEOUT)
        expect(page.locator("#care-script")).to_contain_text("王芳")
        expect(page.locator("#care-facts")).to_contain_text("独居")
        expect(page.locator("#care-number option").first).to_contain_text("+8613800138000")
        screenshot(page, "console-care-preview")

        page.click("#care-dial")
        expect(page.locator("#console-message")).to_contain_text("正在呼叫您的分机", timeout=TIMEOUT)
        # the simulated phones answer, talk and hang up; the attempt's outcome comes from the call
        expect(page.locator("#care-attempts li").first).to_contain_text("已接通", timeout=30_000)
        expect(page.locator("#care-check")).to_be_visible()
        for topic, choice in (("health", "fair"), ("mood", "good"), ("meals", "normal"), ("safety", "hazard"), ("needs", "service")):
            page.select_option(f"#care-check select[name={topic}]", choice)
        page.check("#care-check input[value=hazard]")
        page.fill("#care-check textarea[name=note]", "燃气灶老化，需要上门检修")
        page.select_option("#care-check select[name=service_type]", "meal")
        page.check("#care-check input[name=self_paid]")
        screenshot(page, "console-care-check")
        page.click("#care-check button[type=submit]")
        expect(page.locator("#console-message")).to_contain_text("已保存关怀记录，已派单 GD", timeout=TIMEOUT)
        expect(page.locator("#care-total")).to_have_text("1 位")

        # progressive mode: going ready with no call dials the next elder by itself
        page.check("#care-progressive")
        go_ready(page)
        expect(page.locator("#care-elder")).to_have_text("赵大爷", timeout=TIMEOUT)
        expect(page.locator("#care-attempts li").first).to_contain_text("已接通", timeout=30_000)
    finally:
        telephony.close()
    with services.db.session_scope() as session:
        [check] = session.execute(select(CareCheck).where(CareCheck.elder_id == elder)).scalars().all()
        assert check.findings == ["hazard"] and check.answers["safety"] == "hazard" and check.work_order_id
        assert session.get(CareTask, check.task_id).status == "done"
        auto = session.execute(select(CareTask).where(CareTask.elder_id == second, CareTask.kind == "call")).scalars().one()
        assert [a.outcome for a in session.execute(select(CareAttempt).where(CareAttempt.task_id == auto.id)).scalars()] == ["answered"]
