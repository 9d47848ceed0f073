"""Work-order KPIs (DESIGN.md, "KPIs"), for the supervisors' reports and wallboard.

An order counts on the local day it was created. 办结率 completion = completed / created (an
order is completed once it reached `completed`, closed or not); 及时办结率 on-time completion =
completed by its SLA's `complete_due` / completed; 满意率 satisfaction = callbacks scoring 4–5 /
callbacks with a score; complaints; escalations (orders escalated at least once). Subsidy spent
is the ledger's draws on those days, per service type and per street.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

from sqlalchemy import func
from sqlmodel import Session, select

from callcenter.areas import service as areas_service
from callcenter.elders.models import Elder
from callcenter.stats import service as stats_service
from callcenter.timeutil import as_utc, day_start_utc
from workorders.models import Provider, ServiceType, SubsidyLedger, WorkOrder, WorkOrderEvent


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _met(rows: list[WorkOrder], done: str, due: str) -> float | None:
    reached = [row for row in rows if getattr(row, done) is not None]
    return _rate(sum(1 for row in reached if as_utc(getattr(row, done)) <= as_utc(getattr(row, due))), len(reached))


def order_kpis(rows: list[WorkOrder], escalated: set[int]) -> dict:
    completed = [row for row in rows if row.completed_at is not None]
    scored = [row.satisfaction for row in rows if row.satisfaction is not None]
    return {
        "created": len(rows), "completed": len(completed), "closed": sum(1 for row in rows if row.status == "closed"),
        "cancelled": sum(1 for row in rows if row.status == "cancelled"),
        "completion_rate": _rate(len(completed), len(rows)),  # 办结率
        "on_time_completion_rate": _met(rows, "completed_at", "complete_due"),  # 及时办结率
        "accepted_in_time_rate": _met(rows, "accepted_at", "accept_due"),
        "arrived_in_time_rate": _met(rows, "arrived_at", "arrive_due"),
        "callbacks": len(scored),
        "satisfaction_rate": _rate(sum(1 for score in scored if score >= 4), len(scored)),  # 满意率
        "mean_satisfaction": round(sum(scored) / len(scored), 2) if scored else None,
        "complaints": sum(1 for row in rows if row.complaint),
        "escalations": sum(1 for row in rows if row.id in escalated),
    }


def report(*, session: Session, tz, date_from: date, date_to: date) -> dict:
    """Totals and splits per service type, provider and status; subsidy spent per type and street."""
    start, end = day_start_utc(date_from, tz), day_start_utc(date_to + timedelta(days=1), tz)
    rows = list(session.exec(select(WorkOrder).where(WorkOrder.created_at >= start, WorkOrder.created_at < end)))
    ids = [row.id for row in rows]
    escalated = set(session.exec(select(WorkOrderEvent.order_id).where(WorkOrderEvent.order_id.in_(ids),
                                                                       WorkOrderEvent.to_status == "escalated"))) if ids else set()
    kinds = {row.code: row.name for row in session.exec(select(ServiceType))}
    providers = {row.id: row.name for row in session.exec(select(Provider))}
    by_type, by_provider, by_status = defaultdict(list), defaultdict(list), defaultdict(int)
    for row in rows:
        by_type[row.service_type].append(row)
        if row.provider_id is not None:
            by_provider[row.provider_id].append(row)
        by_status[row.status] += 1
    return {
        "from": date_from.isoformat(), "to": date_to.isoformat(), "total": order_kpis(rows, escalated),
        "by_type": [{"service_type": code, "service_name": kinds.get(code, code), **order_kpis(group, escalated)}
                    for code, group in sorted(by_type.items())],
        "by_provider": [{"provider_id": pid, "provider_name": providers.get(pid, ""), **order_kpis(group, escalated)}
                        for pid, group in sorted(by_provider.items())],
        "by_status": dict(sorted(by_status.items())),
        **_subsidy(session=session, start=start, end=end, kinds=kinds),
    }


def _subsidy(*, session: Session, start, end, kinds: dict[str, str]) -> dict:
    rows = session.exec(select(SubsidyLedger.service_type, Elder.community_id, func.sum(SubsidyLedger.amount))
                        .join(Elder, Elder.id == SubsidyLedger.elder_id)
                        .where(SubsidyLedger.at >= start, SubsidyLedger.at < end, SubsidyLedger.order_id.is_not(None))
                        .group_by(SubsidyLedger.service_type, Elder.community_id)).all()
    by_type, by_street, streets = defaultdict(int), defaultdict(int), {}
    for code, community_id, amount in rows:
        spent = -amount  # draws are negative in the ledger
        by_type[code] += spent
        if community_id not in streets:
            path = areas_service.path_of(session=session, area_id=community_id)
            streets[community_id] = path[1].name if len(path) > 1 else "（未登记街道）"
        by_street[streets[community_id]] += spent
    return {"subsidy_by_type": [{"service_type": code, "service_name": kinds.get(code, code), "spent": str(total)}
                                for code, total in sorted(by_type.items())],
            "subsidy_by_street": [{"street": name, "spent": str(total)} for name, total in sorted(by_street.items())]}


ORDER_COLUMNS = {
    "created": "建单量", "completed": "办结量", "closed": "回访办结量", "cancelled": "取消量", "completion_rate": "办结率",
    "on_time_completion_rate": "及时办结率", "accepted_in_time_rate": "及时接单率", "arrived_in_time_rate": "及时上门率",
    "callbacks": "回访量", "satisfaction_rate": "满意率", "mean_satisfaction": "平均满意度", "complaints": "投诉量",
    "escalations": "督办量",
}
ORDER_TABLES = {
    "total": ({}, "合计"), "by_type": ({"service_name": "服务类型"}, "按服务类型"), "by_provider": ({"provider_name": "服务商"}, "按服务商"),
    "subsidy_by_type": ({"service_name": "服务类型", "spent": "补贴支出（元）"}, "补贴按服务类型"),
    "subsidy_by_street": ({"street": "街道", "spent": "补贴支出（元）"}, "补贴按街道"),
}


def order_table(report: dict, table: str) -> tuple[list[list], str]:
    keys, title = ORDER_TABLES[table]
    if table.startswith("subsidy_"):
        return stats_service.table_rows(report[table], keys), title
    items = [report["total"]] if table == "total" else report[table]
    return stats_service.table_rows(items, keys | ORDER_COLUMNS), title
