"""The printable monthly care report (主动关怀工作月报) for the civil-affairs bureau: the figures of
/api/care/report (care/reports.py) as an A4 page, for supervisors and area officials, each in its
own area. Routes parse, call the report, render."""

from __future__ import annotations

from fastapi import APIRouter, Request

from agent_ui.pages import render
from callcenter.areas import service as areas_service
from callcenter.care import reports
from callcenter.deps import CurrentScope, DbSession, OverseerUser, ServicesDep
from callcenter.errors import FieldErrors
from callcenter.timeutil import today_in, utcnow

router = APIRouter(include_in_schema=False)
OVERDUE_ROWS = 100  # the page's list of elders overdue (the API pages through all of them)


@router.get("/supervisor/care-report")
def care_report_page(request: Request, session: DbSession, services: ServicesDep, user: OverseerUser, scope: CurrentScope,
                     month: str = ""):
    """The month's report (default: this month), with a month picker, print and Excel buttons."""
    tz = services.settings.tz
    today = today_in(tz)
    area = " / ".join(a.name for a in areas_service.path_of(session=session, area_id=scope.area_id)) or "全市"
    context = {"user": user, "area_name": area, "month": month, "error": None, "report": None}
    try:
        first, last = reports.month_range(month=month or None, today=today)
    except FieldErrors as exc:
        return render(request, "care_report.html", context | {"error": exc.message}, status_code=422)
    report = reports.report(session=session, tz=tz, date_from=first, date_to=last, today=today, now=utcnow())
    return render(request, "care_report.html", context | {
        "month": f"{first:%Y-%m}", "month_label": f"{first.year}年{first.month}月", "report": report,
        "tables": dict(reports.report_tables(report)), "overdue": reports.overdue(session=session, tz=tz, today=today,
                                                                                limit=OVERDUE_ROWS),
        "as_of": report["as_of"][:16].replace("T", " "),
    })
