"""What the IVR leaves for people, in a real Chromium: the agents' callback list and the emergency
draft on the console, and the supervisors' wallboard alert arriving live."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from playwright.sync_api import expect
from sqlmodel import select

from ivr.models import CallbackRequest
from tests.agent_ui.test_console import TIMEOUT, go_ready, open_console
from tests.agent_ui.test_resync_pages import NO_PERIODIC_RELOADS
from tests.browser import screenshot, sign_in
from tests.conftest import PASSWORD, make_user
from tests.ivr.test_scripts import make_elder, open_all_day, run_calls
from tests.telephony import LiveTelephony
from workorders.models import WorkOrder


def calls_in_a_thread(services, settings, *calls):
    """The IVR calls run their own event loop: Playwright's holds this thread's."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run_calls, services, settings, *calls).result(60)


def test_the_agent_confirms_the_draft_and_works_the_callback_list(page, live_server, settings, services, agent):
    open_all_day(services)
    make_elder(services, name="张建国", number="13800138000")
    calls_in_a_thread(services, settings, {"script": "afterhours", "keys": ["1"]}, {"keys": ["9"]})
    telephony = LiveTelephony(settings, services)
    try:
        open_console(page, live_server, agent)
        requests = page.locator("#callback-requests li")
        expect(requests).to_have_count(1, timeout=TIMEOUT)
        expect(requests.first).to_contain_text("张建国 · 13800138000")
        expect(requests.first).to_contain_text("坐席忙")

        go_ready(page)
        telephony.place_call("13800138000")
        expect(page.locator("#elder-name")).to_have_text("张建国", timeout=TIMEOUT)
        draft = page.locator("#open-orders li").first
        expect(draft).to_contain_text("助急 · 待确认", timeout=TIMEOUT)
        screenshot(page, "console-ivr-draft")
        draft.locator("button", has_text="确认派单").click()
        expect(page.locator("#console-message")).to_contain_text("已确认，正在派单", timeout=TIMEOUT)
        expect(page.locator("#open-orders li").first).to_contain_text("助急 · 待派单", timeout=TIMEOUT)

        requests.first.locator("button", has_text="已回电").click()
        expect(page.locator("#callback-requests")).to_have_text("暂无到期的回电请求", timeout=TIMEOUT)
    finally:
        telephony.close()
    with services.db.session_scope() as session:
        (order,) = session.exec(select(WorkOrder)).all()
        (request,) = session.exec(select(CallbackRequest)).all()
    assert (order.status, order.created_by) == ("new", agent.id)
    assert (request.status, request.handled_by) == ("done", agent.id)


def test_the_wallboard_shows_an_ivr_emergency_as_it_happens(page, live_server, settings, services):
    open_all_day(services)
    make_elder(services, name="张建国", number="13800138000")
    supervisor = make_user(services, "supervisor", display_name="班长")
    page.add_init_script(NO_PERIODIC_RELOADS)  # only the live event can show the alert
    sign_in(page, live_server, "/supervisor", supervisor, PASSWORD)
    expect(page.locator("#wb-link")).to_have_text("实时连接正常", timeout=TIMEOUT)
    expect(page.locator("#wb-alerts")).to_be_hidden()
    calls_in_a_thread(services, settings, {"keys": ["9"]})
    alert = page.locator("#wb-alerts .alert-emergency_draft")
    # from the live event itself (it names the elder as the IVR greeted him; the figures' copy,
    # read later, gives the profile's name 张建国)
    expect(alert).to_contain_text("语音导航紧急求助待确认：张大爷", timeout=TIMEOUT)
    screenshot(page, "wallboard-ivr-emergency")
