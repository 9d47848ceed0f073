"""The supervisors' live wallboard: one snapshot of the centre now (callers waiting, agents by
activity and time in it, today's KPIs, open and escalated orders, unconfirmed IVR emergency
drafts). The page loads it, then follows the live events and reloads only today's figures
(`figures`); it works the alerts out itself from what it shows (agent_ui/static/wallboard.js).

Today's KPIs are `stats_service.report` for today, so the wallboard at the end of a day and that
day's report are the same figures by construction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, select

from callcenter.calls import presenter as calls_presenter
from callcenter.calls.control import WRAPUP_REASON
from callcenter.care import reports as care_reports
from callcenter.calls.models import IVR_ROUTES, AgentActivity, PauseReason, WAITING_STATES, AgentStatus, CallRecord
from callcenter.elders.models import Elder
from callcenter.stats import service as stats_service
from callcenter.timeutil import as_utc, local_iso, utcnow
from workorders.models import OPEN as OPEN_ORDERS
from workorders.models import OrderStatus, WorkOrder
from workorders import stats as order_stats

EMERGENCY_ROUTE = "emergency"


def is_emergency(call: CallRecord) -> bool:
    """An emergency key in the IVR, or a priority raised above everyone (a high-risk elder)."""
    return call.ivr_route == EMERGENCY_ROUTE or call.priority > 0 or call.queue == EMERGENCY_ROUTE


def waiting_calls(*, session: Session, tz, now: datetime) -> list[dict]:
    """Callers in a queue now, emergencies first, then the longest waiting."""
    rows = session.exec(select(CallRecord, Elder.name).outerjoin(Elder, Elder.id == CallRecord.elder_id)
                        .where(CallRecord.state.in_(WAITING_STATES), CallRecord.queued_at.is_not(None))).all()
    calls = [{
        "id": call.id, "call_id": call.linkedid, "queue": call.queue, "priority": call.priority,
        "caller_display": calls_presenter.display_number(call.caller_e164, call.caller_number),
        "elder_name": elder_name, "ivr_route_label": IVR_ROUTES.get(call.ivr_route, ""),
        "emergency": is_emergency(call), "state": call.state, "agent": call.agent_extension,
        "queued_at": local_iso(call.queued_at, tz),
        "wait_seconds": max(0, round((now - as_utc(call.queued_at)).total_seconds())),
    } for call, elder_name in rows]
    return sorted(calls, key=lambda c: (not c["emergency"], -c["wait_seconds"]))


def agents_now(*, session: Session, tz, now: datetime) -> list[dict]:
    """Each queue member's activity (wrap-up apart from pauses), its reason and time in it."""
    agents = []
    rows = session.exec(select(AgentStatus.extension, AgentStatus.interface, AgentStatus.name, AgentStatus.state,
                               AgentStatus.pause_reason, AgentStatus.since)
                        .order_by(AgentStatus.extension, AgentStatus.interface)).all()
    for extension, interface, name, state, reason, since in rows:
        activity = AgentActivity.WRAPUP if state == AgentActivity.PAUSED and reason == WRAPUP_REASON else state
        agents.append({
            "agent": extension or interface, "name": name, "activity": activity,
            "activity_label": AgentActivity.label_of(activity),
            "pause_reason_label": PauseReason.label_of(reason) if activity == "paused" else "",
            "since": local_iso(since, tz),
            "seconds_in_state": max(0, round((now - as_utc(since)).total_seconds())) if since else None,
        })
    return agents


def open_orders(*, session: Session) -> dict:
    counts = dict(session.exec(select(WorkOrder.status, func.count()).where(WorkOrder.status.in_(OPEN_ORDERS))
                               .group_by(WorkOrder.status)).all())
    return {"by_status": [{"status": status, "label": status.label, "count": counts.get(status, 0)}
                          for status in OPEN_ORDERS],
            "open": sum(counts.values()), "escalated": counts.get(OrderStatus.ESCALATED, 0)}


def emergency_drafts(*, session: Session, now: datetime) -> list[dict]:
    """The IVR's emergency drafts no agent has confirmed or cancelled yet, the oldest first."""
    rows = session.exec(select(WorkOrder.id, WorkOrder.number, WorkOrder.created_at, Elder.name)
                        .join(Elder, Elder.id == WorkOrder.elder_id).where(WorkOrder.status == OrderStatus.DRAFT)
                        .order_by(WorkOrder.created_at)).all()
    return [{"order_id": order_id, "number": number, "elder_name": name,
             "minutes": max(0, int((now - as_utc(created)).total_seconds() // 60))} for order_id, number, created, name in rows]


def live(*, session: Session, settings, now: datetime) -> dict:
    """What the page then keeps from the live events alone: callers waiting and agents."""
    return {"waiting": waiting_calls(session=session, tz=settings.tz, now=now),
            "agents": agents_now(session=session, tz=settings.tz, now=now)}


def figures(*, session: Session, settings, now: datetime | None = None) -> dict:
    """Today's KPIs (by hour and agent), the last hour's service level, orders, the IVR's
    unconfirmed emergency drafts and today's care calls (care/reports.py `today_tile`): what the
    page reloads after calls end, from a copy shared by all screens (stats/api.py)."""
    tz, now = settings.tz, now or utcnow()
    today = now.astimezone(tz).date()
    threshold = settings.service_level_seconds
    report = stats_service.report(session=session, tz=tz, date_from=today, date_to=today, threshold=threshold, now=now)
    last_hour = stats_service.call_kpis(stats_service.tally_until_now(session=session, start=now - timedelta(hours=1), now=now,
                                                                      threshold=threshold), threshold=threshold)
    return {
        "at": local_iso(now, tz), "day": today.isoformat(),
        "settings": {"threshold_seconds": threshold, "service_level_target": settings.service_level_target,
                     "long_wait_alert_seconds": settings.long_wait_alert_seconds},
        "today": report["total"], "by_hour": report["by_hour"], "by_agent": report["by_agent"], "last_hour": last_hour,
        "orders": open_orders(session=session) | order_stats.created_on(session=session, tz=tz, day=today),
        "drafts": emergency_drafts(session=session, now=now),
        "care": care_reports.today_tile(session=session, tz=tz, now=now),
    }


def snapshot(*, session: Session, settings, now: datetime | None = None, shared_figures: dict | None = None) -> dict:
    """Everything the page shows (on load, and again after a reconnect or lost events).
    `shared_figures`: today's figures as another screen just read them."""
    now = now or utcnow()
    board = (shared_figures or figures(session=session, settings=settings, now=now)) | live(session=session, settings=settings, now=now)
    board["at"] = local_iso(now, settings.tz)
    return board
