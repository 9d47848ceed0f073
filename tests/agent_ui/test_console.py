"""The agent console in headless Chromium against the live stack: web server, AMI simulator, the
real bridge, Redis and the database. Screenshots of the popped console go to test-artifacts/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlmodel import select

from callcenter.elders import service as elders_service
from callcenter.elders.models import ElderPhone
from callcenter.elders.schemas import ContactIn, ElderIn, PhoneIn
from tests.browser import screenshot, sign_in
from tests.conftest import PASSWORD, make_user
from tests.telephony import LiveTelephony, call_rows, wait_for

TIMEOUT = 15_000


def make_elder(services, name, number, subsidy_balance=None, **fields):
    with services.db.session_scope() as session:
        elder_in = ElderIn(name=name, phones=[PhoneIn(number=number)], **fields)
        return elders_service.create(session=session, elder_in=elder_in, sealer=services.sealer, area_code="0411",
                                     opening_balance=subsidy_balance).id


def make_zhang(services):
    return make_elder(
        services, "张大爷", "13800138000", gender="male", birth_date="1941-03-02", address="中山路12号3单元402室",
        living_situation="lives_alone", economic_status="minimum_living", ability_level="moderate",
        chronic_conditions="高血压、糖尿病", allergies="青霉素", risk_flags=["fall_history", "cognitive_impairment"],
        steward_name="刘管家", steward_phone="13512345678", subsidy_balance="380.50",
        emergency_contacts=[ContactIn(name="张伟", relation="son", phone="15840112233"),
                            ContactIn(name="张丽", relation="daughter", phone="13904112233", priority=2)])


@pytest.fixture
def agent(services):
    return make_user(services, "agent", username="wangfang", display_name="王芳", sip_extension="8001")


def sign_in_to_console(page, url, user):
    sign_in(page, url, "/console", user, PASSWORD)


def open_console(page, live_server, user):
    sign_in_to_console(page, live_server, user)
    expect(page.locator("#link-state")).to_have_text("实时连接正常", timeout=TIMEOUT)


def go_ready(page):
    page.click("#btn-ready")
    expect(page.locator("#agent-state")).to_have_text("就绪", timeout=TIMEOUT)


def fits_without_scrolling(page, selector: str) -> bool:
    return page.evaluate("""(sel) => {
        const box = document.querySelector(sel).getBoundingClientRect();
        return document.documentElement.scrollHeight <= window.innerHeight && box.bottom <= window.innerHeight;
    }""", selector)


def test_known_elder_pops_with_risks_and_the_call_is_summarised(page, live_server, settings, services, agent):
    make_zhang(services)
    telephony = LiveTelephony(settings, services, wrapup_seconds=5)
    try:
        open_console(page, live_server, agent)
        expect(page.locator("#phone-mode")).to_have_text("话机模式：请使用分机 8001 的座席话机接听")
        go_ready(page)
        telephony.place_call("13800138000")

        expect(page.locator("#elder-name")).to_have_text("张大爷", timeout=TIMEOUT)
        expect(page.locator("#call-caller")).to_have_text("138 0013 8000")
        expect(page.locator("#call-state")).to_have_text("通话中", timeout=TIMEOUT)
        expect(page.locator("#elder-risks .flag")).to_have_text(["跌倒史", "认知障碍"])
        facts = page.inner_text("#elder-facts")
        for shown in ("中山路12号3单元402室", "中度失能", "独居", "低保", "高血压、糖尿病", "青霉素", "刘管家", "¥380.50"):
            assert shown in facts, shown
        expect(page.locator("#elder-contacts .contact")).to_have_count(2)
        expect(page.locator("#elder-contacts button", has_text="呼叫")).to_have_count(2)
        assert re.search(r"\d+ 岁", page.inner_text("#elder-basic"))
        assert fits_without_scrolling(page, "#summary"), "the popped call must fit 1366×768 without scrolling"
        screenshot(page, "console-known-elder")

        page.select_option("#disposition", "service_request")
        page.fill("#notes", "老人需要助餐，每天午餐一份")
        page.click("#summary button[type=submit]")
        expect(page.locator("#console-message")).to_have_text("小结已保存", timeout=TIMEOUT)
        expect(page.locator("#history li").first).to_contain_text("服务申请", timeout=TIMEOUT)
        expect(page.locator("#history li").first).to_contain_text("老人需要助餐，每天午餐一份")

        expect(page.locator("#open-orders")).to_have_text("暂无未办结工单")
        page.click("#btn-workorder")
        expect(page.locator("#order-form select[name=service_type] option")).to_have_count(9, timeout=TIMEOUT)
        page.select_option("#order-form select[name=service_type]", "meal")
        page.fill("#order-form input[name=description]", "每天午餐一份，少盐")
        page.click("#order-form button[type=submit]")
        expect(page.locator("#console-message")).to_contain_text("已建工单 GD", timeout=TIMEOUT)
        expect(page.locator("#open-orders li").first).to_contain_text("助餐 · 待派单")
        expect(page.locator("#open-orders li").first).to_contain_text("每天午餐一份，少盐")

        page.click("#btn-hangup")
        expect(page.locator("#call-state")).to_have_text("通话已结束", timeout=TIMEOUT)
        expect(page.locator("#agent-state")).to_have_text("话后整理", timeout=TIMEOUT)
        expect(page.locator("#wrapup-left")).to_contain_text("剩余")
        expect(page.locator("#agent-state")).to_have_text("就绪", timeout=TIMEOUT)
        row = call_rows(services)[0]
        assert (row.disposition, row.notes, row.hangup_by) == ("service_request", "老人需要助餐，每天午餐一份", "agent")

        page.click("#btn-done")
        expect(page.locator("#no-call")).to_be_visible()
    finally:
        telephony.close()


def test_unknown_caller_gets_a_new_profile_and_a_relative_is_linked(page, live_server, settings, services, agent):
    liu = make_elder(services, "刘奶奶", "13600136000", address="友好路8号")
    telephony = LiveTelephony(settings, services)
    try:
        open_console(page, live_server, agent)
        go_ready(page)
        telephony.place_call("13700137000")
        expect(page.locator("#unknown")).to_be_visible(timeout=TIMEOUT)
        expect(page.locator("#elder-card")).to_be_hidden()
        screenshot(page, "console-unknown-caller")

        page.fill("#new-elder input[name=name]", "赵奶奶")
        page.select_option("#new-elder select[name=gender]", "female")
        page.fill("#new-elder input[name=address]", "胜利街3号")
        page.click("#new-elder button[type=submit]")
        expect(page.locator("#elder-name")).to_have_text("赵奶奶", timeout=TIMEOUT)
        first = call_rows(services)[0]
        with services.db.session_scope() as session:
            phone = session.exec(select(ElderPhone).where(ElderPhone.elder_id == first.elder_id)).one()
        assert (phone.number, phone.relation) == ("+8613700137000", "self")

        telephony.caller_hangs_up(first.linkedid)
        expect(page.locator("#call-state")).to_have_text("通话已结束", timeout=TIMEOUT)
        page.click("#btn-done")

        telephony.place_call("13500135000")  # the son of 刘奶奶, calling from his own phone
        expect(page.locator("#unknown")).to_be_visible(timeout=TIMEOUT)
        page.fill("#link-elder input[name=q]", "刘奶奶")
        expect(page.locator("#link-elder select[name=elder_id] option").first).to_contain_text("刘奶奶", timeout=TIMEOUT)
        page.select_option("#link-elder select[name=relation]", "son")
        page.fill("#link-elder input[name=owner_name]", "刘强")
        page.click("#link-elder button[type=submit]")
        expect(page.locator("#elder-name")).to_have_text("刘奶奶", timeout=TIMEOUT)
        with services.db.session_scope() as session:
            phones = {(p.number, p.relation, p.owner_name) for p in session.exec(select(ElderPhone).where(ElderPhone.elder_id == liu))}
        assert ("+8613500135000", "son", "刘强") in phones
    finally:
        telephony.close()


def test_a_dropped_socket_reconnects_to_the_current_call_without_ghosts(page, live_server, settings, services, agent):
    make_zhang(services)
    make_elder(services, "李爷爷", "13900139000")
    telephony = LiveTelephony(settings, services)
    routes, blocked = [], {"on": False}

    def route(ws):
        if blocked["on"]:
            ws.close(code=1011, reason="network down")
            return
        ws.connect_to_server()
        routes.append(ws)

    page.route_web_socket(re.compile(r".*/ws$"), route)
    try:
        open_console(page, live_server, agent)
        go_ready(page)
        telephony.place_call("13800138000")
        expect(page.locator("#elder-name")).to_have_text("张大爷", timeout=TIMEOUT)
        first = wait_for(lambda: next((c for c in call_rows(services) if c.state == "talking"), None))

        blocked["on"] = True
        routes[-1].close(code=1011, reason="network down")  # the socket drops mid-call
        expect(page.locator("#link-state")).to_contain_text("实时连接中断", timeout=TIMEOUT)
        telephony.caller_hangs_up(first.linkedid)  # …and meanwhile the call ends and another arrives
        wait_for(lambda: call_rows(services)[0].state == "ended")
        telephony.place_call("13900139000")
        wait_for(lambda: len(call_rows(services)) == 2 and call_rows(services)[1].state == "talking")
        expect(page.locator("#elder-name")).to_have_text("张大爷")  # still the stale view while offline

        blocked["on"] = False
        expect(page.locator("#link-state")).to_have_text("实时连接正常", timeout=TIMEOUT)
        expect(page.locator("#elder-name")).to_have_text("李爷爷", timeout=TIMEOUT)
        expect(page.locator("#call-caller")).to_have_text("139 0013 9000")
        expect(page.locator("#call-state")).to_have_text("通话中")
        expect(page.locator("#history li")).to_have_count(2, timeout=TIMEOUT)
        screenshot(page, "console-after-reconnect")
    finally:
        telephony.close()
