"""An agent, in a real browser: signs in, searches by pinyin initials, opens a profile."""

from datetime import date

from sqlmodel import select

from callcenter.audit.models import AuditLog
from callcenter.elders import service as elders_service
from callcenter.elders.schemas import ElderIn, PhoneIn
from tests.browser import screenshot
from tests.conftest import PASSWORD, id_number, make_user

ID = id_number(date(1938, 10, 1), "male", 21)


def make_zhang(services):
    with services.db.session_scope() as session:
        elder_in = ElderIn(name="张大爷", id_number=ID, living_situation="lives_alone", ability_level="severe",
                           risk_flags=["fall_history", "hearing_impaired"], chronic_conditions="高血压",
                           phones=[PhoneIn(number="13800138000"), PhoneIn(number="13912345678", relation="daughter", owner_name="张丽")])
        return elders_service.create(session=session, elder_in=elder_in, sealer=services.sealer, area_code="0411").id


def sign_in(page, live_server, user, password=PASSWORD):
    page.goto(f"{live_server}/elders")
    assert "/login" in page.url
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def test_agent_signs_in_searches_by_initials_and_opens_a_profile(page, live_server, services):
    agent = make_user(services, "agent", display_name="李晓梅")
    elder_id = make_zhang(services)
    sign_in(page, live_server, agent)
    page.wait_for_url(f"{live_server}/elders")
    assert "李晓梅（坐席）" in page.inner_text("header")

    page.fill("input[name=q]", "zdy")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/elders?q=zdy")
    row = page.locator("table.list tbody tr").first
    # Issue 17: with no call or task open with the elder, an agent sees the reduced card, in the
    # list and on the profile page: masked phones, no ID number, health, address or contacts.
    assert "张大爷" in row.inner_text() and "138****8000" in row.inner_text()
    assert ID[-4:] not in row.inner_text()
    screenshot(page, "elders-search")

    page.click("text=张大爷")
    page.wait_for_url(f"{live_server}/elders/{elder_id}")
    assert "138****8000（本人）" in page.inner_text("#elder-card") and "139****5678（女儿）" in page.inner_text("#elder-card")
    assert "通话或任务" in page.inner_text("#access-note")
    assert page.locator("#id-number").count() == 0 and page.locator(".risks .flag").count() == 0
    assert "高血压" not in page.inner_text("main") and "张丽" not in page.inner_text("main")
    screenshot(page, "elder-card")

    with services.db.session_scope() as session:
        views = session.exec(select(AuditLog).where(AuditLog.elder_id == elder_id, AuditLog.action.like("view%"))).all()
    assert [(v.username, v.action) for v in views] == [(agent.username, "view_card")]


def test_wrong_password_shows_a_chinese_error_on_the_page(page, live_server, services):
    agent = make_user(services, "agent")
    sign_in(page, live_server, agent, password="wrong-password")
    assert page.inner_text("[role=alert]") == "用户名或密码错误"
    assert "/login" in page.url or page.url.endswith("/login")


def test_stale_login_form_gets_a_clear_message(page, live_server, services):
    agent = make_user(services, "agent")
    page.goto(f"{live_server}/login")
    page.context.clear_cookies()  # the CSRF cookie expired or was wiped while the form sat open
    page.fill("input[name=username]", agent.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    assert "请刷新页面后重试" in page.inner_text("[role=alert]")
