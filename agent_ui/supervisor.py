"""Supervisor pages: the live wallboard and the reports. Routes parse, call one service, render;
the figures come from the same services as /api/stats/*."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from sqlmodel import select

from agent_ui import forms
from agent_ui.pages import render
from callcenter.areas.models import Area
from callcenter import reporting
from callcenter.deps import CitySupervisorUser, CurrentScope, DbSession, OverseerUser, ServicesDep
from callcenter.errors import FieldErrors
from callcenter.stats import service as stats_service
from callcenter.stats.service import CALL_TABLES
from workorders import stats as order_stats

router = APIRouter(include_in_schema=False)


@router.get("/supervisor")
def wallboard_page(request: Request, services: ServicesDep, user: CitySupervisorUser, mode: str = ""):
    """The wallboard; wallboard.js loads /api/stats/wallboard and follows the websocket.
    `?mode=big` opens it in the wall-screen (大屏) layout."""
    return render(request, "wallboard.html", {"user": user, "big": mode == "big",
                                              "long_wait": services.settings.long_wait_alert_seconds})


@router.get("/supervisor/reports")
def reports_page(request: Request, session: DbSession, services: ServicesDep, user: OverseerUser, scope: CurrentScope,
                 date_from: str = Query("", alias="from"), date_to: str = Query("", alias="to"), queue: str = "",
                 agent: str = "", district: str = ""):
    """Call and work-order reports of a date range, with filters, charts and export links."""
    tz = services.settings.tz
    districts = list(session.exec(select(Area).where(Area.level == "district").order_by(Area.name)))
    form = {"from": date_from, "to": date_to, "queue": queue, "agent": agent, "district": district}
    context = {"user": user, "form": form, "districts": districts, "error": None, "calls": None, "orders": None, "tables": []}
    try:
        first, last = reporting.resolve_range(forms.date_field(date_from, "from"), forms.date_field(date_to, "to"), tz=tz)
        district_id = scope.narrow(_district(district, districts))
    except FieldErrors as exc:
        return render(request, "reports.html", context | {"error": exc.message}, status_code=422)
    filters = stats_service.Filters(queue=queue or None, agent=agent or None, district_id=district_id)
    calls = stats_service.report(session=session, tz=tz, date_from=first, date_to=last,
                                 threshold=services.settings.service_level_seconds, filters=filters)
    orders = order_stats.report(session=session, tz=tz, date_from=first, date_to=last, district_id=district_id)
    query = {"from": first.isoformat(), "to": last.isoformat(), "queue": queue, "agent": agent, "district": district}
    encoded = urlencode({key: value for key, value in query.items() if value})
    tables = [_table(*stats_service.call_table(calls, key), f"/api/stats/kpis/export?table={key}&{encoded}")
              for key in CALL_TABLES]
    tables += [_table(*order_stats.order_table(orders, key), f"/api/stats/workorders/export?table={key}&{encoded}")
               for key in order_stats.ORDER_TABLES]
    return render(request, "reports.html", context | {"calls": calls, "orders": orders, "form": query, "tables": tables})


def _table(rows: list[list], title: str, export: str) -> dict:
    """A report table as the page shows it: the export's own header and cells, so both agree."""
    return {"title": title, "header": rows[0], "rows": rows[1:], "export": export}


def _district(text: str, districts: list[Area]) -> int | None:
    if not text:
        return None
    if not text.isdigit() or int(text) not in {d.id for d in districts}:
        raise FieldErrors.single("district", "所选区县不存在")
    return int(text)
