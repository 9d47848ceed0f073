"""The supervisors' figures: /api/stats/wallboard (now and today), /api/stats/kpis (a date range)
and its exports."""

from __future__ import annotations

import json
import time
from typing import Literal

from fastapi import APIRouter, Query
from fastapi.encoders import jsonable_encoder
from redis.exceptions import RedisError

from callcenter import reporting
from callcenter.deps import CitySupervisorUser, CurrentScope, DbSession, OverseerUser, ServicesDep, download
from callcenter.stats import service as stats_service
from callcenter.stats import wallboard
from callcenter.inputs import Id, ReportDate

router = APIRouter(prefix="/api/stats", tags=["stats"])
FIGURES_SECONDS = 5.0  # how old today's figures on a wallboard may be


@router.get("/wallboard")
def wallboard_snapshot(session: DbSession, services: ServicesDep, user: CitySupervisorUser):
    """Callers waiting, agents by activity, today's KPIs, the last hour's service level, open
    orders and the alerts: what the wallboard loads when it opens, and again after a reconnect
    or lost events; in between it follows the live events."""
    return wallboard.snapshot(session=session, settings=services.settings, shared_figures=shared_figures(session, services))


@router.get("/wallboard/figures")
def wallboard_figures(session: DbSession, services: ServicesDep, user: CitySupervisorUser):
    """Today's KPIs, the last hour, orders and unconfirmed emergency drafts, as all screens share
    them (`read_at`: when they were read, epoch seconds): the wallboard reloads these a moment
    after calls end, and again once the shared copy is renewed if it was read before the newest
    event the page saw."""
    return shared_figures(session, services)


def shared_figures(session, services) -> dict:
    """Today's figures from the copy in Redis all screens (and web processes) share, read again
    once it is FIGURES_SECONDS old: however many screens watch, the database reads them at most
    once every FIGURES_SECONDS. Without Redis, read for this screen."""
    key = f"{services.settings.events_prefix}:wallboard:figures"
    try:
        cached = services.redis.get(key)
    except RedisError:
        cached = None
    if cached:
        return json.loads(cached)
    fresh = jsonable_encoder(wallboard.figures(session=session, settings=services.settings)) | {"read_at": time.time()}
    try:
        services.redis.set(key, json.dumps(fresh, ensure_ascii=False), px=int(FIGURES_SECONDS * 1000))
    except RedisError:
        pass  # Redis away: read for this screen
    return fresh


@router.get("/kpis")
def kpis(session: DbSession, services: ServicesDep, user: OverseerUser, scope: CurrentScope, date_from: ReportDate | None = Query(None, alias="from"),
         date_to: ReportDate | None = Query(None, alias="to"), queue: str | None = None, agent: str | None = None,
         district: Id | None = None, threshold: int = Query(15, ge=1, le=600)):
    """Offered, answered, abandons, service level (T = `threshold` s), ASA, AHT …, per day,
    hour of day and agent (with occupancy). Days are the centre's local days; the default is
    today. `district` (an area id) keeps the calls of elders living there; a scoped user's report
    is of its own area (or an area within it): the hourly rollup has no area."""
    date_from, date_to = reporting.resolve_range(date_from, date_to, tz=services.settings.tz)
    filters = stats_service.Filters(queue=queue or None, agent=agent or None, district_id=scope.narrow(district))
    return stats_service.report(session=session, tz=services.settings.tz, date_from=date_from, date_to=date_to,
                                threshold=threshold, filters=filters)


@router.get("/kpis/export")
def export_kpis(session: DbSession, services: ServicesDep, user: OverseerUser, scope: CurrentScope,
                date_from: ReportDate | None = Query(None, alias="from"),
                date_to: ReportDate | None = Query(None, alias="to"), queue: str | None = None, agent: str | None = None,
                district: Id | None = None, threshold: int = Query(15, ge=1, le=600),
                table: Literal["total", "by_day", "by_hour", "by_agent"] = "by_day", format: Literal["csv", "xlsx"] = "csv"):
    """One table of the report as CSV or XLSX, with Chinese headers."""
    report = kpis(session, services, user, scope, date_from, date_to, queue, agent, district, threshold)
    rows, title = stats_service.call_table(report, table)
    return download(rows, format=format, title=title, name=f"calls-{table}-{report['from']}-{report['to']}")

