"""The supervisor's figures end to end: a fixed set of calls and agent shifts played as AMI
events with controlled times through the real bridge (over TCP), then read back through the
KPI API, the report export, the reports page and the live wallboard in headless Chromium.
Every expected figure is computed by hand in the comments."""

from __future__ import annotations

import csv
import html
import io
import re
import time
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from callcenter.stats import rollup
from tests.browser import screenshot, sign_in
from tests.conftest import PASSWORD, login, make_user
from tests.stats.scripted import Script, ScriptedAsterisk
from tests.telephony import wait_for

SH = ZoneInfo("Asia/Shanghai")


QUEUED_MINUTES = (9 * 60, 9 * 60 + 30, 10 * 60 + 15, 10 * 60 + 20, 11 * 60, 14 * 60, 14 * 60 + 5, 24 * 60 - 1)  # A–H


def quiet_shift(now: datetime) -> timedelta:
    """How far to move fixed_day earlier (at most 8 h: H stays today, J tomorrow) so that none of
    its callers queued in the wallboard's last hour before `now` (local), or within 5 minutes of
    it either way: the last hour then holds only the test's live callers, whatever the time of day."""
    minute = now.hour * 60 + now.minute
    for shift in range(0, 8 * 60 + 1, 5):
        if all(not minute - 65 <= queued - shift <= minute + 5 for queued in QUEUED_MINUTES):
            return timedelta(minutes=-shift)
    raise AssertionError(f"no quiet shift for {now}")  # cannot happen: the script's gaps are wider than 70 min


def fixed_day(script: Script, day: date, shift: timedelta = timedelta(0)) -> None:
    """The calls of tests/stats/test_kpis.py, now as AMI traffic, on `day` (local):
    A 09:00 answered after 10 s by 8001, 120 s talk, 30 s wrap-up
    B 09:30 answered after 40 s by 8002, 60 s talk, no wrap-up
    C 10:15 abandoned after 30 s;  D 10:20 abandoned after 3 s (short);  E 11:00 timed out after 300 s
    F 14:00 answered after 15 s by 8001, 200 s talk, transferred, 20 s wrap-up
    G 14:05 emergency (IVR key 9, priority 10), answered after 2 s by 8002, 90 s talk, 10 s wrap-up
    H 23:59:50 answered after 20 s by 8001 (after midnight), 100 s talk
    J the next day 08:00 answered after 5 s by 8002, 50 s talk
    and an outbound call and an IVR-only call, which are not offered.
    Shifts (logged in, not paused): 8001 09:00–09:15 with a meal pause 09:05–09:10, 14:00–14:10,
    23:55–00:10; 8002 09:30–09:40, 14:00–14:10, next day 08:00–08:05."""
    def at(hour, minute, second=0, days=0):
        return datetime.combine(day + timedelta(days=days), datetime.min.time(), SH).replace(
            hour=hour, minute=minute, second=second).astimezone(timezone.utc) + shift

    script.shift("8001", at(9, 0), at(9, 15))
    script.pause("8001", at(9, 5), at(9, 10), "meal")
    script.shift("8001", at(14, 0), at(14, 10))
    script.shift("8001", at(23, 55), at(0, 10, days=1))
    script.shift("8002", at(9, 30), at(9, 40))
    script.shift("8002", at(14, 0), at(14, 10))
    script.shift("8002", at(8, 0, days=1), at(8, 5, days=1))
    script.inbound("A", at(9, 0), "answered", wait=10, talk=120, agent="8001", wrapup=30)
    script.inbound("B", at(9, 30), "answered", wait=40, talk=60, agent="8002")
    script.inbound("C", at(10, 15), "abandoned", wait=30)
    script.inbound("D", at(10, 20), "short_abandon", wait=3)
    script.inbound("E", at(11, 0), "timeout", wait=300)
    script.inbound("F", at(14, 0), "answered", wait=15, talk=200, agent="8001", wrapup=20, transfer=True)
    script.inbound("G", at(14, 5), "answered", wait=2, talk=90, agent="8002", wrapup=10, emergency=True)
    script.inbound("H", at(23, 59, 50), "answered", wait=20, talk=100, agent="8001")
    script.inbound("J", at(8, 0, days=1), "answered", wait=5, talk=50, agent="8002")
    script.not_offered("out", at(15, 0), "outbound")
    script.not_offered("ivr", at(16, 0), "ivr")


DAY_KPIS = {
    "offered": 8, "answered": 5, "abandoned": 1, "short_abandons": 1, "timeouts": 1,
    "answered_within_threshold": 3,          # A (10 s), F (15 s: within is inclusive), G (2 s)
    "answer_rate": 0.625,                    # 5 / 8
    "timely_answer_rate": 0.6,               # 3 / 5
    "service_level": 0.4286,                 # 3 / (8 − 1 short abandon)
    "service_level_asterisk": 0.5,           # (3 + D, abandoned within 15 s) / 8
    "abandon_rate": 0.125,                   # 1 / 8, the short abandon left out
    "asa_seconds": 17.4,                     # (10 + 40 + 15 + 2 + 20) / 5
    "longest_wait_seconds": 300,             # E
    "aht_seconds": 126.0,                    # (120+30 + 60 + 200+20 + 90+10 + 100) / 5
    "threshold_seconds": 15,
}
# Occupancy on the first day = (talk + wrap-up) / logged in and not paused:
# 8001: logged in 900 − 300 paused + 600 + 300 (until midnight) = 1500 s; busy A 150 + F 220 = 370 s → 0.2467
# 8002: logged in 600 + 600 = 1200 s; busy B 60 + G 100 = 160 s → 0.1333
DAY_AGENTS = [
    {"agent": "8001", "answered": 3, "asa_seconds": 15.0, "aht_seconds": 156.7,  # A, F, H: (10+15+20)/3, (150+220+100)/3
     "talked": 3, "talk_seconds": 420, "transfers_out": 1,  # their legs: A 120, F 200 (passed on), H 100
     "logged_in_seconds": 1500, "busy_seconds": 370, "paused_seconds": 300, "occupancy": 0.2467},
    {"agent": "8002", "answered": 2, "asa_seconds": 21.0, "aht_seconds": 80.0,   # B, G: (40+2)/2, (60+100)/2
     "talked": 2, "talk_seconds": 150, "transfers_out": 0,
     "logged_in_seconds": 1200, "busy_seconds": 160, "paused_seconds": 0, "occupancy": 0.1333},
]


def play(settings, services, day: date, prefix: str = "", shift: timedelta = timedelta(0), rollups=None) -> None:
    script = Script(prefix)
    fixed_day(script, day, shift)
    asterisk = ScriptedAsterisk(settings, services, script.messages(), rollups=rollups)
    asterisk.close()


@pytest.fixture
def supervisor(app, services):
    client = TestClient(app)
    login(client, make_user(services, "supervisor"))
    return client


def test_kpis_from_ami_traffic_equal_the_hand_computed_values_in_api_export_and_report(settings, services, supervisor):
    play(settings, services, date(2026, 11, 20))
    day = {"from": "2026-11-20", "to": "2026-11-20"}
    report = supervisor.get("/api/stats/kpis", params=day).json()
    assert report["total"] == DAY_KPIS
    assert report["by_agent"] == DAY_AGENTS
    hours = {row["hour"]: row for row in report["by_hour"]}
    assert (hours[9]["offered"], hours[14]["answered_within_threshold"], hours[23]["offered"], hours[0]["offered"]) == (2, 2, 1, 0)

    # The hours the bridge wrote are read from the calls until summed again; once summed (as the
    # running bridge does a second later) the rollup gives the same report and equals the calls.
    with services.db.session_scope() as session:
        rollup.refresh_dirty(session)
    assert supervisor.get("/api/stats/kpis", params=day).json() == report
    with services.db.session_scope() as session:
        assert rollup.differences(session, datetime(2026, 11, 19, tzinfo=timezone.utc), datetime(2026, 11, 22, tzinfo=timezone.utc)) == []
        assert rollup.dirty_buckets(session, 0, 2**40) == set()
    strict = supervisor.get("/api/stats/kpis", params=day | {"threshold": 10}).json()["total"]
    assert (strict["offered"], strict["answered_within_threshold"], strict["aht_seconds"]) == (8, 2, 126.0)  # A and G

    both = supervisor.get("/api/stats/kpis", params={"from": "2026-11-20", "to": "2026-11-21"}).json()
    assert [(d["day"], d["offered"]) for d in both["by_day"]] == [("2026-11-20", 8), ("2026-11-21", 1)]
    # 8001 on the 21st: 00:00–00:10 logged in (600 s), H rang at 00:00:08 and talked 100 s.
    assert {a["agent"]: a["logged_in_seconds"] for a in both["by_agent"]} == {"8001": 2100, "8002": 1500}
    assert supervisor.get("/api/stats/kpis", params=day | {"queue": "emergency"}).json()["total"]["offered"] == 0

    exported = supervisor.get("/api/stats/kpis/export", params=day | {"table": "total", "format": "csv"})
    header, values = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    row = dict(zip(header, values))
    assert (row["进线量"], row["接通量"], row["放弃量"], row["短时放弃量"], row["排队超时量"]) == ("8", "5", "1", "1", "1")
    assert (row["人工接通率"], row["人工应答及时率"], row["服务水平"], row["放弃率"]) == ("62.50%", "60.00%", "42.86%", "12.50%")
    assert (row["平均应答时长（秒）"], row["最长等待（秒）"], row["平均处理时长（秒）"]) == ("17.4", "300", "126.0")
    agents = supervisor.get("/api/stats/kpis/export", params=day | {"table": "by_agent"}).content.decode("utf-8-sig")
    assert agents.splitlines()[1:] == ["8001,3,15.0,156.7,3,420,1,1500,370,300,24.67%", "8002,2,21.0,80.0,2,150,0,1200,160,0,13.33%"]

    page = supervisor.get("/supervisor/reports", params=day)
    assert page.status_code == 200
    assert "42.86%" in page.text and "62.50%" in page.text and "24.67%" in page.text
    links = [html.unescape(link) for link in re.findall(r'href="(/api/stats/[^"]+)"', page.text)]
    assert len(links) == 2 * 9  # CSV and Excel for each of the 4 call tables and 5 work-order tables
    by_agent = next(link for link in links if "table=by_agent" in link and link.endswith("format=csv"))
    assert supervisor.get(by_agent).content.decode("utf-8-sig") == agents  # the page's link: the same export


def test_reports_page_refuses_bad_filters_in_chinese(supervisor):
    bad = supervisor.get("/supervisor/reports", params={"from": "2026-11-21", "to": "2026-11-20"})
    assert bad.status_code == 422 and "结束日期早于开始日期" in bad.text
    assert "日期格式应为 YYYY-MM-DD" in supervisor.get("/supervisor/reports", params={"from": "20-11-2026"}).text
    assert "所选区县不存在" in supervisor.get("/supervisor/reports", params={"district": "999999"}).text


def test_an_agent_cannot_open_supervisor_pages_or_their_apis(console):
    for path in ("/supervisor", "/supervisor/reports", "/api/stats/wallboard", "/api/stats/kpis", "/api/stats/kpis/export",
                 "/api/stats/workorders", "/api/stats/workorders/export"):
        assert console.get(path).status_code == 403, path
    html = console.get("/supervisor", headers={"accept": "text/html"})
    assert html.status_code == 403 and "没有权限" in html.text
    assert 'href="/supervisor"' not in console.get("/console", headers={"accept": "text/html"}).text


def tile(page, key: str) -> str:
    return page.inner_text(f"#kpi-{key}")


def clear_of_midnight(margin: timedelta = timedelta(minutes=3)) -> datetime:
    """Now (Shanghai), once it is at least `margin` away from a local midnight: a test that counts
    "today" and queues callers minutes back must not straddle two days. Waits (only near midnight)."""
    now = datetime.now(SH)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), SH)
    if midnight - now < margin:
        time.sleep((midnight - now + margin).total_seconds())
    elif now - midnight + timedelta(days=1) < margin:
        time.sleep((margin - (now - midnight + timedelta(days=1))).total_seconds())
    return datetime.now(SH)


def test_wallboard_shows_todays_hand_computed_kpis_and_live_alerts(page, live_server, settings, services):
    local_now = clear_of_midnight()
    play(settings, services, local_now.date(), prefix="today-", shift=quiet_shift(local_now))
    user = make_user(services, "supervisor")
    sign_in(page, live_server, "/supervisor", user, PASSWORD)
    expect(page.locator("#kpi-offered")).to_have_text("8")  # (no wait_for_function: its string is eval'd, which the CSP forbids)
    figures = {key: tile(page, key) for key in ("offered", "answered", "answer_rate", "service_level", "timely_answer_rate",
                                                 "abandon_rate", "asa_seconds", "longest_wait_seconds", "aht_seconds")}
    assert figures == {"offered": "8", "answered": "5", "answer_rate": "62.5%", "service_level": "42.9%",
                       "timely_answer_rate": "60.0%", "abandon_rate": "12.5%", "asa_seconds": "17.4",
                       "longest_wait_seconds": "300", "aht_seconds": "126.0"}
    assert page.inner_text("#kpi-waiting") == "0" and "当前无人排队" in page.inner_text("#wb-waiting")
    assert page.locator("#chart-hours canvas").count() == 1  # ECharts drew the hourly chart

    # Live: an agent is ready, then an emergency caller queues now and another caller has waited 70 s.
    now = datetime.now(timezone.utc)
    live = Script("live-")
    live.shift("8003", now - timedelta(seconds=5), now + timedelta(hours=1))
    live.inbound("K", now, "answered", wait=600, talk=1, agent="8003", emergency=True, number="13800138001")
    live.inbound("L", now - timedelta(seconds=70), "answered", wait=600, talk=1, agent="8003", number="13800138002")
    pending = [m for m in live.messages() if b"Timestamp: " in m]
    early = [m for m in pending if _stamp(m) <= now.timestamp()]  # everything up to now: the callers are waiting
    asterisk = ScriptedAsterisk(settings, services, early)
    try:
        expect(page.locator("#kpi-waiting")).to_have_text("2", timeout=20000)
        alerts = page.inner_text("#wb-alerts")
        assert "紧急呼叫等待中" in alerts and "138 0013 8001" in alerts
        shown = re.search(r"来电 138 0013 8002 已等待 (\d+) 秒（超过 60 秒）", alerts)
        assert shown and 70 <= int(shown.group(1)) <= 70 + (datetime.now(timezone.utc) - now).total_seconds() + 2
        assert page.locator("#wb-waiting tr.emergency").count() == 1
        assert page.locator("#wb-waiting tbody tr").first.get_attribute("class") == "emergency"  # emergencies first
        assert "就绪" in page.inner_text("#wb-agents tr[data-agent='8003']")
        # Today's figures follow a moment later (every screen shares one reading, at most 5 s old).
        expect(page.locator("#kpi-offered")).to_have_text("10", timeout=20000)
        # L waited 70 s (> T) and is still unanswered: the last hour's service level is 0 of 1.
        # K has waited under 15 s: it may yet be answered in time, so it is not counted yet.
        expect(page.locator("#wb-alerts")).to_contain_text("近一小时服务水平 0.0%，低于目标 80%", timeout=20000)
        expect(page.locator("#kpi-last-hour")).to_have_text("近一小时 0.0%")
        screenshot(page, "wallboard")

        # 8003 answers L now: the wallboard follows the live events (the waiting list and the agents at
        # once, today's figures a moment later).
        answered_at = datetime.now(timezone.utc)
        answer = Script("live-")
        waited = round((answered_at - (now - timedelta(seconds=70))).total_seconds())
        answer.inbound("L", now - timedelta(seconds=70), "answered", wait=waited, talk=600, agent="8003", number="13800138002")
        asterisk.send([m for m in answer.messages() if answered_at.timestamp() - 3 <= _stamp(m) <= answered_at.timestamp() + 1])
        expect(page.locator("#kpi-answered")).to_have_text("6", timeout=20000)
        expect(page.locator("#kpi-waiting")).to_have_text("1", timeout=20000)
        expect(page.locator("#wb-alerts")).not_to_contain_text("138 0013 8002", timeout=20000)
        expect(page.locator("#wb-agents tr[data-agent='8003']")).to_contain_text("通话中", timeout=20000)
        with services.db.session_scope() as session:  # the running bridge sums the hours it wrote again
            assert wait_for(lambda: not rollup.dirty_buckets(session, 0, 2**40), message="dirty hours left")
        page.click("#wb-big")
        expect(page.locator("body")).to_have_class(re.compile(r"\bbigscreen\b"))
        screenshot(page, "wallboard-bigscreen")
    finally:
        asterisk.close()


def _stamp(message: bytes) -> float:
    return float(re.search(rb"Timestamp: ([0-9.]+)", message).group(1))


def test_reports_page_draws_its_charts_in_chromium(page, live_server, settings, services):
    play(settings, services, date(2026, 11, 20))
    user = make_user(services, "supervisor")
    sign_in(page, live_server, "/supervisor/reports", user, PASSWORD)
    page.fill("input[name=from]", "2026-11-20")
    page.fill("input[name=to]", "2026-11-21")
    page.click("#report-filters button[type=submit]")
    page.wait_for_selector("#chart-days canvas")
    assert page.locator(".chart canvas").count() == 3  # calls per hour, service level per day, orders per type
    by_day = page.locator("table[data-title=按日] tbody tr")
    assert by_day.count() == 2 and by_day.nth(0).inner_text().split("\t")[:3] == ["2026-11-20", "8", "5"]
    screenshot(page, "reports")


def test_the_same_events_applied_twice_count_agents_time_once(settings, services, supervisor):
    """Issue 15 #4: a stream replayed (a standby bridge taking over, a reconnect re-reading) must
    not add the agents' busy, paused and logged-in time again."""
    play(settings, services, date(2026, 11, 20))
    day = {"from": "2026-11-20", "to": "2026-11-20"}
    once = supervisor.get("/api/stats/kpis", params=day).json()
    play(settings, services, date(2026, 11, 20))
    twice = supervisor.get("/api/stats/kpis", params=day).json()
    assert twice["by_agent"] == once["by_agent"] == DAY_AGENTS
    assert twice["total"] == once["total"]
