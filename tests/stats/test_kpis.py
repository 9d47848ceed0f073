"""Call KPIs over a fixed set of calls whose every figure is computed by hand below: answered
within and beyond 15 s (one at exactly 15 s), abandoned, short-abandoned, timed out, a transfer,
an emergency-priority call, a call spanning midnight (counted on the day it queued), and calls
that are not offered (outbound, IVR only)."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from fastapi.testclient import TestClient

from callcenter.calls.models import CallRecord
from callcenter.stats import rollup
from tests.conftest import login, make_user

SH = ZoneInfo("Asia/Shanghai")


def at(day: int, hour: int, minute: int, second: int = 0) -> datetime:
    """A Shanghai wall-clock time, stored as UTC as the bridge stores it."""
    return datetime(2026, 11, day, hour, minute, second, tzinfo=SH).astimezone(timezone.utc)


def call(name, queued, outcome, wait=None, talk=None, agent=None, wrapup=None, **extra) -> CallRecord:
    answered = queued + timedelta(seconds=wait) if outcome == "answered" else None
    done = answered + timedelta(seconds=talk) if answered else None
    return CallRecord(linkedid=name, direction="inbound", state="ended", started_at=queued - timedelta(seconds=20), queued_at=queued,
                      answered_at=answered, agent_done_at=done, wrapup_ended_at=done + timedelta(seconds=wrapup) if wrapup else None,
                      outcome=outcome, wait_seconds=wait, talk_seconds=talk, agent_extension=agent, queue="hotline", **extra)


@pytest.fixture
def calls(services):
    rows = [
        call("A", at(20, 9, 0), "answered", wait=10, talk=120, agent="8001", wrapup=30),
        call("B", at(20, 9, 30), "answered", wait=40, talk=60, agent="8002"),
        call("C", at(20, 10, 15), "abandoned", wait=30),
        call("D", at(20, 10, 20), "short_abandon", wait=3),
        call("E", at(20, 11, 0), "timeout", wait=300),
        call("F", at(20, 14, 0), "answered", wait=15, talk=200, agent="8001", wrapup=20, transfers=1),
        call("G", at(20, 14, 5), "answered", wait=2, talk=90, agent="8002", wrapup=10, priority=10),
        call("H", at(20, 23, 59, 50), "answered", wait=20, talk=100, agent="8001"),  # answered after midnight
        call("J", at(21, 8, 0), "answered", wait=5, talk=50, agent="8002"),
        CallRecord(linkedid="out", direction="outbound", state="ended", started_at=at(20, 15, 0), outcome="outbound", talk_seconds=60),
        CallRecord(linkedid="ivr", direction="inbound", state="ended", started_at=at(20, 16, 0), outcome="ivr_only"),
    ]
    with services.db.session_scope() as session:
        session.add_all(rows)
        rollup.mark_dirty(session, [row.queued_at for row in rows])  # as every writer of calls does


@pytest.fixture
def supervisor(app, services):
    client = TestClient(app)
    login(client, make_user(services, "supervisor"))
    return client


def test_one_days_kpis_equal_the_hand_computed_values(supervisor, calls):
    report = supervisor.get("/api/stats/kpis", params={"from": "2026-11-20", "to": "2026-11-20"}).json()
    assert report["total"] == {
        "offered": 8, "answered": 5, "abandoned": 1, "short_abandons": 1, "timeouts": 1,
        "answered_within_threshold": 3,          # A (10 s), F (15 s), G (2 s)
        "answer_rate": 0.625,                    # 5 / 8
        "timely_answer_rate": 0.6,               # 3 / 5
        "service_level": 0.4286,                 # 3 / (8 − 1 short abandon)
        "service_level_asterisk": 0.5,           # (3 + D abandoned within 15 s) / 8
        "abandon_rate": 0.125,                   # 1 / 8, the short abandon left out
        "asa_seconds": 17.4,                     # (10 + 40 + 15 + 2 + 20) / 5
        "longest_wait_seconds": 300,             # E
        "aht_seconds": 126.0,                    # (150 + 60 + 220 + 100 + 100) / 5, talk + wrap-up
        "threshold_seconds": 15,
    }
    hours = {row["hour"]: row for row in report["by_hour"]}
    assert (hours[9]["offered"], hours[9]["answered_within_threshold"]) == (2, 1)
    assert (hours[23]["offered"], hours[0]["offered"]) == (1, 0)  # H queued at 23:59:50: counted at 23 on the 20th
    assert [row["day"] for row in report["by_day"]] == ["2026-11-20"]
    no_shift = {"logged_in_seconds": 0, "busy_seconds": 0, "paused_seconds": 0, "occupancy": None,  # no agent log here,
                "talked": 0, "talk_seconds": 0, "transfers_out": 0}  # and no legs: the rows are written directly
    assert report["by_agent"] == [{"agent": "8001", "answered": 3, "aht_seconds": 156.7, "asa_seconds": 15.0} | no_shift,
                                  {"agent": "8002", "answered": 2, "aht_seconds": 80.0, "asa_seconds": 21.0} | no_shift]


def test_a_range_splits_by_day_and_filters_by_agent_and_threshold(supervisor, calls):
    report = supervisor.get("/api/stats/kpis", params={"from": "2026-11-20", "to": "2026-11-21"}).json()
    assert [(row["day"], row["offered"]) for row in report["by_day"]] == [("2026-11-20", 8), ("2026-11-21", 1)]
    assert report["total"]["offered"] == 9 and report["total"]["answered_within_threshold"] == 4
    agent = supervisor.get("/api/stats/kpis", params={"from": "2026-11-20", "to": "2026-11-21", "agent": "8002"}).json()
    assert (agent["total"]["answered"], agent["total"]["asa_seconds"]) == (3, 15.7)  # B, G, J: (40 + 2 + 5) / 3
    strict = supervisor.get("/api/stats/kpis", params={"from": "2026-11-20", "to": "2026-11-20", "threshold": 5}).json()
    assert strict["total"]["answered_within_threshold"] == 1  # only G
    empty = supervisor.get("/api/stats/kpis", params={"from": "2026-11-19", "to": "2026-11-19"}).json()
    assert empty["total"]["offered"] == 0 and empty["total"]["service_level"] is None  # no calls: no rate, not 0 %


def test_only_supervisors_read_kpis_and_bad_ranges_are_refused(console, supervisor, calls):
    assert console.get("/api/stats/kpis").status_code == 403
    backwards = supervisor.get("/api/stats/kpis", params={"from": "2026-11-21", "to": "2026-11-20"})
    assert backwards.status_code == 422 and backwards.json()["detail"][0]["msg"] == "结束日期早于开始日期"


def test_exports_carry_the_same_figures_with_chinese_headers(supervisor, calls):
    day = {"from": "2026-11-20", "to": "2026-11-20"}
    exported = supervisor.get("/api/stats/kpis/export", params=day | {"table": "total", "format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    header, values = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    row = dict(zip(header, values))
    assert (row["进线量"], row["接通量"], row["人工接通率"], row["服务水平"], row["放弃率"]) == ("8", "5", "62.50%", "42.86%", "12.50%")
    assert (row["平均应答时长（秒）"], row["最长等待（秒）"], row["平均处理时长（秒）"]) == ("17.4", "300", "126.0")
    book = supervisor.get("/api/stats/kpis/export", params=day | {"table": "by_hour", "format": "xlsx"})
    sheet = openpyxl.load_workbook(io.BytesIO(book.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert sheet.title == "按时段" and rows[0][:3] == ("时段", "进线量", "接通量") and len(rows) == 25
    assert rows[24][:2] == ("23:00-23:59", 1)  # the call that spanned midnight, on its queue hour
    agents = supervisor.get("/api/stats/kpis/export", params=day | {"table": "by_agent"}).content.decode("utf-8-sig")
    assert agents.splitlines() == ["坐席分机,接通量,平均应答时长（秒）,平均处理时长（秒）,通话次数（含转入）,本人通话时长（秒）,转出次数,"
                                   "在线时长（秒）,通话及整理时长（秒）,暂停时长（秒）,占用率",
                                   "8001,3,15.0,156.7,0,0,0,0,0,0,", "8002,2,21.0,80.0,0,0,0,0,0,0,"]
