"""HTTP API of the care reports (关怀统计), for supervisors and area officials (each sees the
figures of its own area: the queries are scoped, care/reports.py):

GET /api/care/report?month=YYYY-MM        the month's coverage, overdue, escalations and reach (JSON)
GET /api/care/report.xlsx?month=YYYY-MM   the same tables as one spreadsheet
GET /api/care/overdue?page=&page_size=    the elders overdue now, most overdue first
"""

from __future__ import annotations

from fastapi import APIRouter, Query

from callcenter.care import reports
from callcenter.deps import DbSession, OverseerUser, ServicesDep, download
from callcenter.inputs import Page
from callcenter.timeutil import today_in, utcnow

router = APIRouter(prefix="/api/care", tags=["care"])
MonthQuery = Query(None, max_length=7, description="YYYY-MM (default: this month)")


def month_report(session, services, month: str | None) -> dict:
    tz = services.settings.tz
    today = today_in(tz)
    first, last = reports.month_range(month=month, today=today)
    return reports.report(session=session, tz=tz, date_from=first, date_to=last, today=today, now=utcnow())


@router.get("/report")
def care_report(session: DbSession, services: ServicesDep, user: OverseerUser, month: str | None = MonthQuery):
    """Coverage (elders due in the month contacted on time / elders due, by district, street,
    community and risk level), the overdue now, misses escalated and the time to the visit, the
    care-call reach rate in total and per agent. Definitions: care/reports.py and the README."""
    return month_report(session, services, month)


@router.get("/report.xlsx")
def care_report_xlsx(session: DbSession, services: ServicesDep, user: OverseerUser, month: str | None = MonthQuery):
    """The month's report tables in one sheet (Chinese headings)."""
    report = month_report(session, services, month)
    month_text = report["from"][:7]
    return download(reports.sheet_rows(report, title=f"12349 主动关怀月报 {month_text}"), format="xlsx",
                    title=f"主动关怀月报{month_text}", name=f"care-report-{month_text}")


@router.get("/overdue")
def care_overdue(session: DbSession, services: ServicesDep, user: OverseerUser, page: Page = 1,
                 page_size: int = Query(50, ge=1, le=500)):
    """Elders whose care call or visit is past due with no contact since, most overdue first."""
    tz = services.settings.tz
    return reports.overdue(session=session, tz=tz, today=today_in(tz), limit=page_size, offset=(page - 1) * page_size) | {
        "page": page, "page_size": page_size}
