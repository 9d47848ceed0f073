"""A visitor's pages in a real headless Chromium at a phone's size (390×844): sign in from the SMS
link, the community's visit tasks, take one, check in at the door (the browser gives the position),
fill in the record with a photo and a finding that opens a work order, and see it done.
Screenshots are saved in test-artifacts/ for review."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlmodel import select

from callcenter.care.models import CareCheck
from callcenter.care.visit_models import VisitCheckIn
from tests.browser import no_csp_violations, screenshot
from tests.care.test_visits import boss, link_path, new_visitor, shequ, supervisor, tasks, visit_city  # noqa: F401  (fixtures)
from tests.workorders.test_provider_pages import PNG


@pytest.fixture
def phone(browser):
    """A phone whose browser lets the page read its position (at the elder's door in Dalian)."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True,
                                  locale="zh-CN", geolocation={"latitude": 38.9140, "longitude": 121.6147, "accuracy": 15},
                                  permissions=["geolocation"])
    page = context.new_page()
    try:
        with no_csp_violations(page):
            yield page
    finally:
        context.close()


def fits(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_a_visitor_works_a_visit_from_the_list_to_the_record(live_server, phone, services, visit_city, shequ, tasks, tmp_path):  # noqa: F811
    visitor = new_visitor(shequ, visit_city["a"], "13700000001", "刘志愿", volunteer=True, password=None)
    shequ.post(f"/api/care/visitors/{visitor['id']}/login-link", json={})

    phone.goto(live_server + link_path(services, "13700000001"))
    expect(phone.locator("#link-sign-in")).to_have_text("进入巡访页面")
    phone.locator("#link-sign-in").tap()  # the link's page spends the one-time link only when tapped
    phone.wait_for_url("**/v/")
    assert phone.locator("header h1").inner_text() == "桃源社区巡访"
    expect(phone.locator("#time-bank")).to_contain_text("0.0 小时")
    cards = phone.locator("a.order")
    assert [cards.nth(i).get_attribute("data-task") for i in range(cards.count())] == [
        str(tasks["王奶奶"]), str(tasks["张大爷"])]  # the escalation's deadline first
    expect(cards.first).to_contain_text("须于")
    assert fits(phone), "the list is wider than the phone"
    screenshot(phone, "visitor-tasks")

    phone.locator(f'a.order[data-task="{tasks["张大爷"]}"]').tap()
    phone.wait_for_url(f"**/v/tasks/{tasks['张大爷']}")
    expect(phone.locator("#phones a")).to_have_attribute("href", "tel:+8613800138000")
    expect(phone.locator("#what-to-check")).to_contain_text("跌倒史")
    expect(phone.locator("#why")).to_have_text("定期巡访（每 30 天一次，此前没有巡访记录）")
    screenshot(phone, "visitor-task")
    phone.locator("#take").tap()
    expect(phone.locator("#status")).to_contain_text("我已认领")
    phone.locator("#checkin").tap()
    expect(phone.locator("#arrived")).to_contain_text("（已记录位置）")

    for topic, value in (("met", "yes"), ("living", "fair"), ("care", "family"), ("health", "stable"), ("mood", "good"),
                         ("safety", "none"), ("needs", "meal")):
        phone.locator(f'fieldset[data-topic="{topic}"] input[value="{value}"]').check()
    expect(phone.locator("#service_type")).to_have_value("meal")  # suggested by the need
    phone.fill("#note", "独自做饭困难，希望送餐")
    phone.locator('input[name="action"][value="order"]').check()
    phone.locator('input[name="self_paid"]').check()
    photo = tmp_path / "kitchen.png"
    photo.write_bytes(PNG)
    phone.set_input_files("#photo", str(photo))
    assert fits(phone), "the record form is wider than the phone"
    screenshot(phone, "visitor-record-form")
    phone.locator("#submit-record").tap()

    expect(phone.locator("#status")).to_contain_text("已完成")
    expect(phone.locator("#findings")).to_have_text("需要服务")
    expect(phone.locator("#order")).to_have_text(re.compile(r"服务工单 GD\d{8}-\d{4}：待派单"))
    expect(phone.locator("#hours")).to_have_text("待社区确认")
    screenshot(phone, "visitor-record-done")
    with services.db.session_scope() as session:
        check = session.exec(select(CareCheck).where(CareCheck.task_id == tasks["张大爷"])).one()
        arrived = session.get(VisitCheckIn, tasks["张大爷"])
        assert (check.answers["needs"], check.photo is not None, check.work_order_id is not None) == ("meal", True, True)
        assert (round(arrived.latitude, 3), round(arrived.longitude, 3), arrived.accuracy_m) == (38.914, 121.615, 15)

    phone.locator("a", has_text="返回巡访任务").tap()
    phone.wait_for_url("**/v/")
    expect(phone.locator(f'a.order[data-task="{tasks["张大爷"]}"]')).to_have_count(0)
    expect(phone.locator("#recent")).to_contain_text("张大爷")
