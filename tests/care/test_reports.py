"""Care reports (callcenter/care/reports.py) through their routes: coverage, overdue, escalations and
reach worked out by hand on a small city, what a district official sees of it, the spreadsheet, the
printable page, and the wallboard's care tile.

The month is last month (so every due's deadline has passed); its days are F+n, F its first.

| elder | area        | risk | contact due in the month                  | met                          | outcome |
| E1    | 中山区 S1 C1 | 高   | call F+4, visit F+9                       | care call F+4, visit F+9     | on time |
| E2    | 中山区 S1 C1 | 中   | call F+4                                  | elder called in F+6          | late    |
| E3    | 中山区 S2 C2 | 中   | call F+9 (made F+11, escalated F+11 17:00 | visit still open, overdue    | missing |
|       |             |      | and made again F+12)                      |                              |         |
| E4    | 中山区 S2 C2 | 高   | call F+14, 3 misses, escalated F+15 10:00 | escalation visit F+15 16:00  | late    |
| E5    | 西岗区 S3 C3 | 低   | call F+4                                  | care call F+4                | on time |
| E6    | 西岗区 S3 C3 | 低   | call F+19, 3 misses, escalated F+20 09:00 | escalation visit F+21 09:00  | late    |
| E7    | 中山区 S1 C1 | 中   | call F+4, task cancelled (in hospital)    | —                            | not due |
| E8    | 中山区 S1 C1 | 中   | call due the month before                 | F+1                          | not due |
| E9    | 中山区 S1 C1 | 高   | call F+24, 3 misses, escalated F+25 08:00 | visit still open, overdue    | missing |
"""

from __future__ import annotations

import io
import uuid
from datetime import date, datetime, time, timedelta, timezone

import openpyxl
import pytest
from sqlalchemy import select

from callcenter.areas import service as areas_service
from callcenter.care import service as care_service
from callcenter.care.models import (
    AttemptOutcome,
    CareAttempt,
    CareContact,
    CarePlan,
    CareTask,
    ContactKind,
    TaskKind,
    TaskSource,
    TaskStatus,
)
from callcenter.elders.models import Elder, EmergencyContact
from callcenter.timeutil import today_in, utcnow
from tests.conftest import login, make_user

HIGH, MEDIUM, LOW = "3", "2", "1"


class Town:
    """The small city of the module's table, built through the models and the care service."""

    def __init__(self, services, settings):
        self.services, self.tz = services, settings.tz
        self.today = today_in(self.tz)
        self.first = (self.today.replace(day=1) - timedelta(days=1)).replace(day=1)
        self.month = f"{self.first:%Y-%m}"
        self.x = make_user(services, "agent", display_name="坐席甲", sip_extension="8101")
        self.y = make_user(services, "agent", display_name="坐席乙", sip_extension="8102")
        self.elders: dict[str, int] = {}
        self._source = 0
        with services.db.session_scope() as session:
            self.session = session
            self._areas()
            self._month()
            self._now()

    def at(self, day: date, hour: int, minute: int = 0) -> datetime:
        return datetime.combine(day, time(hour, minute), self.tz).astimezone(timezone.utc)

    def day(self, n: int) -> date:
        return self.first + timedelta(days=n)

    def _areas(self) -> None:
        s = self.session
        a = areas_service.get_or_create(session=s, name="中山区", parent=None)
        s1 = areas_service.get_or_create(session=s, name="青泥洼桥街道", parent=a)
        s2 = areas_service.get_or_create(session=s, name="桃源街道", parent=a)
        b = areas_service.get_or_create(session=s, name="西岗区", parent=None)
        s3 = areas_service.get_or_create(session=s, name="白云街道", parent=b)
        self.c1 = areas_service.get_or_create(session=s, name="长春社区", parent=s1).id
        self.c2 = areas_service.get_or_create(session=s, name="桃源社区", parent=s2).id
        self.c3 = areas_service.get_or_create(session=s, name="友好社区", parent=s3).id
        self.district_a = a.id

    def elder(self, key: str, name: str, community: int) -> int:
        row = Elder(name=name, name_pinyin=key.lower(), name_initials=key.lower(), community_id=community)
        self.session.add(row)
        self.session.flush()
        self.elders[key] = row.id
        return row.id

    def task(self, key: str, kind: str, due: date, risk: str, *, overdue: int = 0, status: str = TaskStatus.OPEN,
             closed: datetime | None = None, made: date | None = None) -> CareTask:
        made = made or due + timedelta(days=overdue)
        task = CareTask(elder_id=self.elders[key], kind=kind, source=TaskSource.PLAN, status=status, due_on=made, risk_level=risk,
                        overdue_days=overdue, created_at=self.at(made, 8), closed_at=closed,
                        assigned_to=self.x.id if kind == TaskKind.CALL else None)
        self.session.add(task)
        self.session.flush()
        return task

    def contact(self, key: str, kind: str, at: datetime) -> None:
        self._source += 1
        self.session.add(CareContact(elder_id=self.elders[key], kind=kind, source_id=self._source, at=at))

    def attempt(self, task: CareTask, user, outcome: str, at: datetime, *, now: datetime | None = None) -> None:
        """An attempt dialled at `at` whose outcome the care service records (a third miss escalates)."""
        attempt = CareAttempt(task_id=task.id, user_id=user.id, linkedid=f"care-test-{uuid.uuid4().hex}", at=at)
        self.session.add(attempt)
        self.session.flush()
        care_service.record_outcome(session=self.session, attempt=attempt, outcome=outcome, talk_seconds=None, tz=self.tz,
                                    now=now or at)

    def visit_of(self, task: CareTask) -> CareTask:
        return self.session.execute(select(CareTask).where(CareTask.parent_id == task.id, CareTask.kind == TaskKind.VISIT)).scalar_one()

    def visit_done(self, task: CareTask, at: datetime) -> None:
        visit = self.visit_of(task)
        visit.status, visit.closed_at = TaskStatus.DONE, at
        care_service.record_visit_contact(session=self.session, task=visit, at=at)

    def _month(self) -> None:
        d, at = self.day, self.at
        self.elder("E1", "甲一", self.c1)
        e1 = self.task("E1", TaskKind.CALL, d(4), HIGH)
        self.attempt(e1, self.x, AttemptOutcome.ANSWERED, at(d(4), 10))
        e1.status, e1.closed_at = TaskStatus.DONE, at(d(4), 10, 5)
        self.contact("E1", ContactKind.CARE_CALL, at(d(4), 10))
        self.task("E1", TaskKind.VISIT, d(9), HIGH, status=TaskStatus.DONE, closed=at(d(9), 11))
        self.contact("E1", ContactKind.VISIT, at(d(9), 11))

        self.elder("E2", "甲二", self.c1)
        e2 = self.task("E2", TaskKind.CALL, d(4), MEDIUM)
        self.attempt(e2, self.y, AttemptOutcome.NO_ANSWER, at(d(4), 9, 30))
        self.contact("E2", ContactKind.INBOUND_CALL, at(d(6), 15))
        e2.status, e2.closed_at = TaskStatus.DONE, at(d(7), 7)  # closed by the next morning's run

        self.elder("E3", "甲三", self.c2)
        e3 = self.task("E3", TaskKind.CALL, d(9), MEDIUM, overdue=2)
        care_service.escalate(session=self.session, task=e3, now=at(d(11), 17), tz=self.tz)  # its visit stays open
        self.task("E3", TaskKind.CALL, d(9), MEDIUM, overdue=3)  # made again the day after: the same due

        self.elder("E4", "甲四", self.c2)
        self.session.add(EmergencyContact(elder_id=self.elders["E4"], name="甲四之子", phone="+8613904110004", relation="child",
                                          priority=1))
        e4 = self.task("E4", TaskKind.CALL, d(14), HIGH)
        self.attempt(e4, self.x, AttemptOutcome.NO_ANSWER, at(d(14), 10))
        self.attempt(e4, self.y, AttemptOutcome.AGENT_MISSED, at(d(14), 13))  # never dialled the elder: not counted
        self.attempt(e4, self.x, AttemptOutcome.BUSY, at(d(14), 14))
        self.attempt(e4, self.x, AttemptOutcome.NO_ANSWER, at(d(15), 10))  # the third miss escalates
        contact_call = self.session.execute(select(CareTask).where(CareTask.parent_id == e4.id, CareTask.kind == TaskKind.CONTACT_CALL)).scalar_one()
        self.attempt(contact_call, self.x, AttemptOutcome.ANSWERED, at(d(15), 10, 10))  # the son's phone: not a care call
        self.visit_done(e4, at(d(15), 16))

        self.elder("E5", "乙五", self.c3)
        self.task("E5", TaskKind.CALL, d(4), LOW, status=TaskStatus.DONE, closed=at(d(4), 11))
        self.contact("E5", ContactKind.CARE_CALL, at(d(4), 11))

        self.elder("E6", "乙六", self.c3)
        e6 = self.task("E6", TaskKind.CALL, d(19), LOW)
        for hour in (9, 14):
            self.attempt(e6, self.y, AttemptOutcome.NO_ANSWER, at(d(19), hour))
        self.attempt(e6, self.y, AttemptOutcome.NO_ANSWER, at(d(20), 9))
        self.visit_done(e6, at(d(21), 9))

        self.elder("E7", "甲七", self.c1)
        self.task("E7", TaskKind.CALL, d(4), MEDIUM, status=TaskStatus.CANCELLED, closed=at(d(4), 8, 30))

        self.elder("E8", "甲八", self.c1)
        self.task("E8", TaskKind.CALL, self.first - timedelta(days=3), MEDIUM, overdue=4, made=d(1), status=TaskStatus.DONE,
                  closed=at(d(2), 7))
        self.contact("E8", ContactKind.INBOUND_CALL, at(d(1), 9))

        self.elder("E9", "甲九", self.c1)
        e9 = self.task("E9", TaskKind.CALL, d(24), HIGH)
        for when in (at(d(24), 9), at(d(24), 14)):
            self.attempt(e9, self.y, AttemptOutcome.FAILED, when)
        self.attempt(e9, self.y, AttemptOutcome.FAILED, at(d(25), 8))  # its visit stays open, past its deadline

        # Plans now: E3 and E9 are overdue (and E11 in 西岗区, most overdue); E6 was visited since its plan was made.
        self.elder("E11", "乙十一", self.c3)
        self.session.add_all([
            CarePlan(elder_id=self.elders["E3"], risk_level=MEDIUM, call_every_days=7, call_due_on=d(9)),
            CarePlan(elder_id=self.elders["E9"], risk_level=HIGH, call_every_days=7, call_due_on=d(24),
                     last_contact_at=at(d(17), 10)),
            CarePlan(elder_id=self.elders["E11"], risk_level=LOW, call_every_days=30, call_due_on=d(2)),
            CarePlan(elder_id=self.elders["E6"], risk_level=LOW, call_every_days=30, call_due_on=d(5), last_contact_at=at(d(1), 9)),
            CarePlan(elder_id=self.elders["E5"], risk_level=LOW, call_every_days=30, call_due_on=self.today + timedelta(days=3),
                     last_contact_at=at(d(4), 11)),
        ])

    def _now(self) -> None:
        """Today: E10's call due and open, E12's call done, E13's escalated (its visit open)."""
        now = utcnow()
        self.elder("E10", "甲十", self.c1)
        self.task("E10", TaskKind.CALL, self.today, MEDIUM)
        self.elder("E12", "甲十二", self.c1)
        self.task("E12", TaskKind.CALL, self.today, MEDIUM, status=TaskStatus.DONE, closed=now)
        self.elder("E13", "乙十三", self.c3)
        e13 = self.task("E13", TaskKind.CALL, self.today, LOW)
        for _ in range(3):
            self.attempt(e13, self.y, AttemptOutcome.NO_ANSWER, now, now=now)


@pytest.fixture
def town(services, settings):
    return Town(services, settings)


def by(rows: list[dict], key: str) -> dict:
    return {row[key]: row for row in rows}


def counts(row: dict) -> tuple:
    return row["due"], row["on_time"], row["late"], row["missing"], row["pending"]


def test_a_months_care_figures_as_worked_out_by_hand(client, services, town):
    login(client, make_user(services, "supervisor"))
    report = client.get("/api/care/report", params={"month": town.month}).json()
    assert (report["from"], report["to"][:7]) == (town.first.isoformat(), town.month)
    cover = report["coverage"]
    assert counts(cover["total"]) == (7, 2, 3, 2, 0)  # E1..E6, E9; on time E1, E5; late E2, E4, E6; missing E3, E9
    assert cover["total"]["coverage_rate"] == round(2 / 7, 4)
    assert (cover["total"]["call_due"], cover["total"]["call_coverage_rate"]) == (7, round(2 / 7, 4))
    assert (cover["total"]["visit_due"], cover["total"]["visit_coverage_rate"]) == (1, 1.0)
    districts = by(cover["by_district"], "name")
    assert set(districts) == {"中山区", "西岗区"}
    assert counts(districts["中山区"]) == (5, 1, 2, 2, 0) and districts["中山区"]["coverage_rate"] == 0.2
    assert counts(districts["西岗区"]) == (2, 1, 1, 0, 0) and districts["西岗区"]["coverage_rate"] == 0.5
    streets = by(cover["by_street"], "path")
    assert counts(streets["中山区 / 青泥洼桥街道"]) == (3, 1, 1, 1, 0)  # E1, E2, E9 (E7 cancelled, E8 due before)
    assert counts(streets["中山区 / 桃源街道"]) == (2, 0, 1, 1, 0)
    assert [row["path"] for row in cover["by_community"]] == [
        "中山区 / 桃源街道 / 桃源社区", "中山区 / 青泥洼桥街道 / 长春社区", "西岗区 / 白云街道 / 友好社区"]
    risks = by(cover["by_risk"], "risk_label")
    assert list(risks) == ["高", "中", "低"]
    assert counts(risks["高"]) == (3, 1, 1, 1, 0) and counts(risks["中"]) == (2, 0, 1, 1, 0) and counts(risks["低"]) == (2, 1, 1, 0, 0)

    escalations = report["escalations"]  # E4 6 h, E6 24 h, E3 and E9 still open past their deadlines
    assert (escalations["escalated"], escalations["visits_done"], escalations["visits_open"], escalations["visits_open_late"]) == (4, 2, 2, 2)
    assert (escalations["median_hours"], escalations["p90_hours"]) == (15.0, 24.0)
    assert escalations["visits_done_in_time_rate"] == 1.0  # both within the 24 h deadline
    assert {row["name"]: row["median_hours"] for row in escalations["by_district"]} == {"中山区": 6.0, "西岗区": 24.0}

    reach = report["reach"]  # 甲: E1 answered, E4 no answer, busy, no answer; 乙: E2, E6 ×3 no answer, E9 ×3 failed
    assert {key: reach["total"][key] for key in ("attempts", "answered", "no_answer", "busy", "failed")} == {
        "attempts": 11, "answered": 1, "no_answer": 6, "busy": 1, "failed": 3}
    assert reach["total"]["reach_rate"] == round(1 / 11, 4)
    agents = by(reach["by_agent"], "agent_name")
    assert (agents["坐席甲"]["attempts"], agents["坐席甲"]["reach_rate"]) == (4, 0.25)
    assert (agents["坐席乙"]["attempts"], agents["坐席乙"]["reach_rate"]) == (7, 0.0)

    overdue = client.get("/api/care/overdue").json()  # most overdue first; E6 was visited since its plan
    assert [item["name"] for item in overdue["items"]] == ["乙十一", "甲三", "甲九"] and overdue["total"] == 3
    first = overdue["items"][0]
    assert first["overdue_days"] == (town.today - town.day(2)).days and first["overdue_label"] == "关怀电话"
    assert [task["kind"] for task in overdue["items"][1]["open_tasks"]] == ["visit", "call"]  # E3's escalation, its call again
    assert report["overdue"] == {"elders": 3, "calls": 3, "visits": 0, "longest_days": (town.today - town.day(2)).days}
    second = client.get("/api/care/overdue", params={"page": 2, "page_size": 2}).json()
    assert ([item["name"] for item in second["items"]], second["total"]) == (["甲九"], 3)
    assert client.get("/api/care/overdue", params={"page": 3, "page_size": 2}).json()["total"] == 3

    this_month = client.get("/api/care/report").json()["coverage"]["total"]  # E10, E12, E13 today: E10 and E13 not yet late
    assert counts(this_month) == (3, 1, 0, 0, 2) and this_month["coverage_rate"] == 1.0


def test_a_district_official_counts_only_its_district(client, services, town):
    login(client, make_user(services, "district_official", area_id=town.district_a))
    report = client.get("/api/care/report", params={"month": town.month}).json()
    assert [row["name"] for row in report["coverage"]["by_district"]] == ["中山区"]
    assert counts(report["coverage"]["total"]) == (5, 1, 2, 2, 0)
    assert {row["path"] for row in report["coverage"]["by_street"]} == {"中山区 / 青泥洼桥街道", "中山区 / 桃源街道"}
    assert (report["escalations"]["escalated"], report["escalations"]["median_hours"]) == (3, 6.0)  # E3, E4, E9
    assert report["reach"]["total"]["attempts"] == 8  # 甲 4 (E1, E4), 乙 4 (E2, E9): not E6's in 西岗区
    overdue = client.get("/api/care/overdue").json()
    assert [item["name"] for item in overdue["items"]] == ["甲三", "甲九"] and overdue["total"] == 2
    page = client.get("/supervisor/care-report", params={"month": town.month})
    assert page.status_code == 200 and "西岗区" not in page.text and "乙十一" not in page.text
    assert "中山区" in page.text and "甲九" in page.text
    assert client.get("/api/stats/wallboard/figures").status_code == 403  # the wallboard is the city's


def test_the_month_is_checked_and_agents_may_not_read_the_report(client, services, town):
    login(client, make_user(services, "supervisor"))
    refused = client.get("/api/care/report", params={"month": "2026-13"})
    assert refused.status_code == 422 and "YYYY-MM" in refused.text
    assert client.get("/api/care/report", params={"month": f"{town.today.year + 1}-01"}).status_code == 422
    client.cookies.clear()
    login(client, town.x)
    assert client.get("/api/care/report").status_code == 403
    assert client.get("/api/care/overdue").status_code == 403


def test_the_spreadsheet_opens_with_the_reports_rows(client, services, town):
    login(client, make_user(services, "supervisor"))
    response = client.get("/api/care/report.xlsx", params={"month": town.month})
    assert response.status_code == 200
    assert f'filename="care-report-{town.month}.xlsx"' in response.headers["content-disposition"]
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    rows = [[cell for cell in row if cell is not None] for row in sheet.iter_rows(values_only=True)]
    assert rows[0] == [f"12349 主动关怀月报 {town.month}"]
    heading = rows.index(["按区"])
    assert rows[heading + 1][:7] == ["区", "应联系老人", "按期联系", "逾期联系", "未联系", "期限内待联系", "按期联系率"]
    assert rows[heading + 2][:7] == ["中山区", 5, 1, 2, 2, 0, "20.00%"]
    assert rows[heading + 3][:7] == ["西岗区", 2, 1, 1, 0, 0, "50.00%"]
    reach = rows.index(["关怀电话接通率"])
    assert rows[reach + 2][:3] == ["合计", 11, 1] and rows[reach + 2][-1] == "9.09%"


def test_the_wallboard_shows_todays_care_calls(client, services, town):
    login(client, make_user(services, "supervisor"))
    # Due today: E10 open, E3's call still open from last month, E12 done, E13 escalated; visits of
    # escalations still open: E3's, E9's and E13's.
    figures = client.get("/api/stats/wallboard/figures").json()
    assert figures["care"] == {"calls_done": 1, "calls_due": 4, "escalations_open": 3}
    page = client.get("/supervisor")
    assert 'id="kpi-care_calls_done"' in page.text and 'id="kpi-care_escalations_open"' in page.text
