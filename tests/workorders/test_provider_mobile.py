"""The provider's pages in a real headless Chromium at a phone's size (390×844): sign in from the
dispatch SMS's link, accept, check in, complete with the elder's code and a photo; then the agent
records the callback in the console (1366×768) and the order closes. Screenshots are saved in
test-artifacts/ for review."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.agent_ui.test_console import fits_without_scrolling, sign_in_to_console
from tests.browser import no_csp_violations, screenshot
from tests.workorders.conftest import new_order, order_row, work
from tests.workorders.test_provider_pages import PNG, confirm_code, link_path, sms_to


@pytest.fixture
def phone(browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True, locale="zh-CN")
    page = context.new_page()
    try:
        with no_csp_violations(page):
            yield page
    finally:
        context.close()


def test_a_provider_accepts_checks_in_and_completes_on_a_phone(live_server, phone, page, services, console, agent, city, rq_redis,
                                                               tmp_path):
    order_id = new_order(console, city["elder"])
    number = order_row(services, order_id).number
    work(rq_redis)

    phone.goto(live_server + link_path(sms_to(services, "+8613900000001", order_id)))
    phone.locator("#link-sign-in").tap()  # the link's page spends the one-time link only when tapped
    phone.wait_for_url("**/m/")
    assert phone.locator("header h1").inner_text() == "乐龄"
    assert phone.locator(".tabs a.on").inner_text() == "待接单 1"
    card = phone.locator(f'a.order[data-number="{number}"]')
    assert "助餐" in card.inner_text()
    fits = phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert fits, "the list is wider than the phone"
    screenshot(phone, "provider-orders")

    card.tap()
    phone.wait_for_url(f"**/m/orders/{order_id}")
    assert "张大爷" in phone.locator("dl").inner_text()
    screenshot(phone, "provider-order-dispatched")
    phone.locator("#accept").tap()
    expect(phone.locator("#status")).to_have_text("状态：已接单")
    phone.locator("#checkin").tap()
    expect(phone.locator("#status")).to_have_text("状态：服务中")

    photo = tmp_path / "done.png"
    photo.write_bytes(PNG)
    phone.fill("#notes", "送餐到家，老人精神好")
    phone.fill("#minutes", "25")
    phone.fill("#code", "000000" if confirm_code(services, order_id) != "000000" else "111111")
    phone.locator("#complete").tap()
    expect(phone.locator(".error")).to_contain_text("确认码不正确")
    screenshot(phone, "provider-wrong-code")

    phone.fill("#notes", "送餐到家，老人精神好")
    phone.fill("#minutes", "25")
    phone.fill("#code", confirm_code(services, order_id))
    phone.set_input_files("#photo", str(photo))
    phone.locator("#complete").tap()
    expect(phone.locator("#status")).to_have_text("状态：已完成")
    assert "25 分钟" in phone.locator("dl").inner_text() and phone.locator("dl a", has_text="查看").count() == 1
    screenshot(phone, "provider-completed")
    order = order_row(services, order_id)
    assert (order.status, order.service_minutes, order.photo is not None) == ("completed", 25, True)

    # The agent's callback (回访) in the console.
    sign_in_to_console(page, live_server, agent)
    item = page.locator(f'#callbacks li[data-order="{number}"]')
    expect(item).to_contain_text("张大爷 · 助餐 · 乐龄", timeout=15_000)
    expect(item).to_contain_text("送餐到家，老人精神好")
    item.get_by_role("button", name="记录").click()
    screenshot(page, "console-callback-form")
    page.select_option("#callback-form select[name=satisfaction]", "5")
    page.fill("#callback-form input[name=comment]", "很满意")
    page.click("#callback-form button[type=submit]")
    expect(page.locator("#callbacks")).to_have_text("暂无待回访工单", timeout=15_000)
    assert fits_without_scrolling(page, ".sidepanel")
    screenshot(page, "console-callback-recorded")
    order = order_row(services, order_id)
    assert (order.status, order.satisfaction, order.callback_comment) == ("closed", 5, "很满意")
