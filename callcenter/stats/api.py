"""The supervisors' figures: /api/stats/wallboard (now and today), /api/stats/kpis (a date range)
and its exports."""

from __future__ import annotations

from datetime import date

from typing import Literal

from fastapi import APIRouter, Query

from callcenter import reporting
from callcenter.deps import DbSession, ServicesDep, SupervisorUser, download
from callcenter.stats import service as stats_service
from callcenter.stats import wallboard

router = APIRouter(prefix="/api/stats", tags=["stats"])


@router.get("/wallboard")
def wallboard_snapshot(session: DbSession, services: ServicesDep, user: SupervisorUser):
    """Callers waiting, agents by activity, today's KPIs, the last hour's service level, open
    orders and the alerts; the wallboard page reloads it on each live event."""
    return wallboard.snapshot(session=session, settings=services.settings)


@router.get("/kpis")
def kpis(session: DbSession, services: ServicesDep, user: SupervisorUser, date_from: date | None = Query(None, alias="from"),
         date_to: date | None = Query(None, alias="to"), queue: str | None = None, agent: str | None = None,
         district: int | None = None, threshold: int = Query(15, ge=1, le=600)):
    """Offered, answered, abandons, service level (T = `threshold` s), ASA, AHT …, per day,
    hour of day and agent (with occupancy). Days are the centre's local days; the default is
    today. `district` (an area id) keeps the calls of elders living there."""
    date_from, date_to = reporting.resolve_range(date_from, date_to, tz=services.settings.tz)
    filters = stats_service.Filters(queue=queue or None, agent=agent or None, district_id=district)
    return stats_service.report(session=session, tz=services.settings.tz, date_from=date_from, date_to=date_to,
                                threshold=threshold, filters=filters)


@router.get("/kpis/export")
def export_kpis(session: DbSession, services: ServicesDep, user: SupervisorUser, date_from: date | None = Query(None, alias="from"),
                date_to: date | None = Query(None, alias="to"), queue: str | None = None, agent: str | None = None,
                district: int | None = None, threshold: int = Query(15, ge=1, le=600),
                table: Literal["total", "by_day", "by_hour", "by_agent"] = "by_day", format: Literal["csv", "xlsx"] = "csv"):
    """One table of the report as CSV or XLSX, with Chinese headers."""
    report = kpis(session, services, user, date_from, date_to, queue, agent, district, threshold)
    rows, title = stats_service.call_table(report, table)
    return download(rows, format=format, title=title, name=f"calls-{table}-{report['from']}-{report['to']}")

