"""Calls through HTTP and on the 今日通话 page (headless Chromium)."""

from datetime import timedelta

from playwright.sync_api import expect

from callcenter.calls import service as calls_service
from callcenter.calls.tracker import Call
from callcenter.calls.written import Written
from callcenter.stats import rollup
from callcenter.timeutil import utcnow
from tests.browser import screenshot
from tests.conftest import PASSWORD, make_user


def record(services, linkedid: str, **fields):
    call = Call(linkedid=linkedid, direction="inbound", context="from-elders", started_at=fields.pop("started_at", utcnow()), **fields)
    with services.db.session_scope() as session:
        written = Written()
        record = calls_service.record_call(session=session, call=call, area_code="0411", written=written)
        rollup.mark_dirty(session, written.queued_at)  # as the bridge's rollup keeper does
        return record


def test_calls_api_filters_and_labels(agent_client, services):
    now = utcnow()
    record(services, "1.0", caller_number="13800138000", state="ended", outcome="answered", agent_interface="Local/8001@agents",
           wait_seconds=3, talk_seconds=60, queue="hotline")
    record(services, "2.0", caller_number="13900139000", state="ended", outcome="abandoned", wait_seconds=30, queue="hotline")
    record(services, "3.0", caller_number="13700137000", state="ended", outcome="answered", started_at=now - timedelta(days=3))
    today = agent_client.get("/api/calls", params={"from": "2000-01-01"}).json()
    assert today["total"] == 3 and today["items"][0]["call_id"] in ("1.0", "2.0")
    answered = agent_client.get("/api/calls", params={"outcome": "answered", "agent": "8001"}).json()["items"]
    assert [(c["call_id"], c["outcome_label"], c["caller"]) for c in answered] == [("1.0", "已接听", "+8613800138000")]
    day = (now - timedelta(days=3)).astimezone(services.settings.tz).date().isoformat()
    assert [c["call_id"] for c in agent_client.get("/api/calls", params={"from": day, "to": day}).json()["items"]] == ["3.0"]
    one = agent_client.get(f"/api/calls/{answered[0]['id']}").json()
    assert (one["state_label"], one["talk_seconds"]) == ("已结束", 60)
    assert agent_client.get("/api/calls/99999").status_code == 404


def test_calls_page_shows_new_calls_without_reloading(page, live_server, services):
    agent = make_user(services, "agent")
    record(services, "10.0", caller_number="13800138000", state="talking", agent_interface="Local/8001@agents", queue="hotline")
    page.goto(f"{live_server}/login?next=/calls")
    page.fill("input[name=username]", agent.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/calls")
    assert "通话中" in page.inner_text("#calls tbody")
    record(services, "11.0", caller_number="13900139000", state="queued", priority=10, ivr_route="emergency", queue="hotline")
    expect(page.locator("#calls tbody tr")).to_have_count(2, timeout=10000)  # (wait_for_function's string is eval'd: the CSP forbids it)
    first = page.locator("#calls tbody tr").first.inner_text()
    assert "+8613900139000" in first and "排队中" in first and "紧急 10" in first and "紧急求助" in first
    screenshot(page, "calls-today")


def test_the_recall_list_holds_cut_off_callers_until_they_get_through(agent_client, services):
    """系统中断待回拨: calls the PBX cut off (hangup_by pbx) or lost in a bridge outage, one line per
    number, until a later call from the number is answered or a callback to it talked; not older
    than a day; never an ordinary abandon."""
    now = utcnow()
    ago = lambda minutes: now - timedelta(minutes=minutes)  # noqa: E731
    record(services, "1.0", caller_number="13800138000", state="ended", outcome="cut_off", hangup_by="pbx",
           started_at=ago(30), ended_at=ago(29))
    record(services, "2.0", caller_number="13800138000", state="ended", outcome="answered", hangup_by="pbx",
           answered_at=ago(20), started_at=ago(21), ended_at=ago(19))  # cut off twice: one line, the latest
    record(services, "3.0", caller_number="13900139000", state="ended", outcome="lost_during_outage", started_at=ago(50),
           ended_at=ago(45))
    record(services, "4.0", caller_number="13700137000", state="ended", outcome="cut_off", hangup_by="pbx",
           started_at=ago(40), ended_at=ago(39))
    record(services, "5.0", caller_number="13700137000", state="talking", answered_at=ago(1), started_at=ago(2))  # got through
    record(services, "6.0", caller_number="13600136000", state="ended", outcome="abandoned", started_at=ago(10), ended_at=ago(9))
    record(services, "7.0", caller_number="13500135000", state="ended", outcome="cut_off", hangup_by="pbx",
           started_at=ago(60 * 25), ended_at=ago(60 * 25))  # older than a day
    items = agent_client.get("/api/calls/recall").json()["items"]
    assert [(c["call_id"], c["caller"]) for c in items] == [("3.0", "+8613900139000"), ("2.0", "+8613800138000")]
    assert items[1]["outcome_label"] == "已接听" and items[0]["outcome_label"] == "中断期间丢失"
