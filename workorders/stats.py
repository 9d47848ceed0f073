"""Work-order KPIs (DESIGN.md, "KPIs"), for the supervisors' reports and wallboard.

An order counts on the local day it was created. 办结率 completion = completed / created (an
order is completed once it reached `completed`, closed or not); 及时办结率 on-time completion =
completed by its SLA's `complete_due` / completed; 满意率 satisfaction = callbacks scoring 4–5 /
callbacks with a score; complaints; escalations (orders escalated at least once). Subsidy spent
is the ledger's draws on those days, per service type and per street.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, fields
from datetime import date, timedelta

from sqlalchemy import and_, func
from sqlmodel import Session, select

from callcenter.areas import service as areas_service
from callcenter.elders.models import Elder
from callcenter.reporting import count_where, rate, table_rows
from callcenter.timeutil import day_start_utc
from workorders.models import OrderStatus, Provider, ServiceType, SubsidyLedger, WorkOrder, WorkOrderEvent


@dataclass
class OrderTally:
    """Sums over a set of orders, from which every work-order KPI follows (added up in Python
    from one GROUP BY per service type, provider and status)."""

    created: int = 0
    completed: int = 0
    completed_in_time: int = 0
    accepted: int = 0
    accepted_in_time: int = 0
    arrived: int = 0
    arrived_in_time: int = 0
    closed: int = 0
    cancelled: int = 0
    callbacks: int = 0
    satisfied: int = 0
    satisfaction_sum: int = 0
    complaints: int = 0
    escalations: int = 0

    @classmethod
    def of_row(cls, row) -> "OrderTally":
        """The tally in a result row whose columns are labelled with the field names (`tally_columns`)."""
        values = row._mapping
        return cls(**{field.name: int(values[field.name]) for field in fields(cls)})

    def add(self, other: "OrderTally") -> None:
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


def tally_columns() -> tuple:
    """Each `OrderTally` field's SQL aggregate, labelled with the field's name (read back by name,
    so their order does not matter; a field without its aggregate fails `OrderTally.of_row`)."""
    def reached(done, due) -> tuple:
        return count_where(done.is_not(None)), count_where(and_(done.is_not(None), done <= due))

    escalated = WorkOrder.id.in_(select(WorkOrderEvent.order_id).where(WorkOrderEvent.to_status == OrderStatus.ESCALATED))
    completed, completed_in_time = reached(WorkOrder.completed_at, WorkOrder.complete_due)
    accepted, accepted_in_time = reached(WorkOrder.accepted_at, WorkOrder.accept_due)
    arrived, arrived_in_time = reached(WorkOrder.arrived_at, WorkOrder.arrive_due)
    aggregates = {
        "created": func.count(), "completed": completed, "completed_in_time": completed_in_time,
        "accepted": accepted, "accepted_in_time": accepted_in_time, "arrived": arrived, "arrived_in_time": arrived_in_time,
        "closed": count_where(WorkOrder.status == OrderStatus.CLOSED),
        "cancelled": count_where(WorkOrder.status == OrderStatus.CANCELLED),
        "callbacks": count_where(WorkOrder.satisfaction.is_not(None)), "satisfied": count_where(WorkOrder.satisfaction >= 4),
        "satisfaction_sum": func.coalesce(func.sum(WorkOrder.satisfaction), 0),
        "complaints": count_where(WorkOrder.complaint), "escalations": count_where(escalated),
    }
    return tuple(aggregate.label(name) for name, aggregate in aggregates.items())


def order_kpis(tally: OrderTally) -> dict:
    return {
        "created": tally.created, "completed": tally.completed, "closed": tally.closed, "cancelled": tally.cancelled,
        "completion_rate": rate(tally.completed, tally.created),  # 办结率
        "on_time_completion_rate": rate(tally.completed_in_time, tally.completed),  # 及时办结率
        "accepted_in_time_rate": rate(tally.accepted_in_time, tally.accepted),
        "arrived_in_time_rate": rate(tally.arrived_in_time, tally.arrived),
        "callbacks": tally.callbacks,
        "satisfaction_rate": rate(tally.satisfied, tally.callbacks),  # 满意率
        "mean_satisfaction": round(tally.satisfaction_sum / tally.callbacks, 2) if tally.callbacks else None,
        "complaints": tally.complaints, "escalations": tally.escalations,
    }


def _service_names(session: Session) -> dict[str, str]:
    return {row.code: row.name for row in session.exec(select(ServiceType))}


def created_on(*, session: Session, tz, day: date) -> dict:
    """The wallboard's orders of the day: created and (of those) completed, per service type."""
    start, end = day_start_utc(day, tz), day_start_utc(day + timedelta(days=1), tz)
    rows = session.exec(select(WorkOrder.service_type, func.count(), func.count(WorkOrder.completed_at))
                        .where(WorkOrder.created_at >= start, WorkOrder.created_at < end)
                        .group_by(WorkOrder.service_type)).all()
    kinds = _service_names(session)
    return {"created_today": sum(row[1] for row in rows), "completed_today": sum(row[2] for row in rows),
            "by_type_today": [{"service_name": kinds.get(code, code), "created": created} for code, created, _ in sorted(rows)]}


def report(*, session: Session, tz, date_from: date, date_to: date, district_id: int | None = None) -> dict:
    """Totals and splits per service type, provider and status; subsidy spent per type and street.
    `district_id` keeps the orders (and draws) of elders living in that area."""
    start, end = day_start_utc(date_from, tz), day_start_utc(date_to + timedelta(days=1), tz)
    communities = areas_service.communities_under(session=session, area_id=district_id) if district_id else None
    query = select(WorkOrder.service_type, WorkOrder.provider_id, WorkOrder.status, *tally_columns()).where(
        WorkOrder.created_at >= start, WorkOrder.created_at < end)
    if communities is not None:
        query = query.where(WorkOrder.community_id.in_(communities))
    total, by_type, by_provider, by_status = OrderTally(), defaultdict(OrderTally), defaultdict(OrderTally), defaultdict(int)
    for row in session.exec(query.group_by(WorkOrder.service_type, WorkOrder.provider_id, WorkOrder.status)):
        code, provider_id, status, tally = row.service_type, row.provider_id, row.status, OrderTally.of_row(row)
        for bucket in (total, by_type[code]) + ((by_provider[provider_id],) if provider_id is not None else ()):
            bucket.add(tally)
        by_status[status] += tally.created
    kinds = _service_names(session)
    providers = {row.id: row.name for row in session.exec(select(Provider))}
    return {
        "from": date_from.isoformat(), "to": date_to.isoformat(), "district_id": district_id, "total": order_kpis(total),
        "by_type": [{"service_type": code, "service_name": kinds.get(code, code), **order_kpis(tally)}
                    for code, tally in sorted(by_type.items())],
        "by_provider": [{"provider_id": pid, "provider_name": providers.get(pid, ""), **order_kpis(tally)}
                        for pid, tally in sorted(by_provider.items())],
        "by_status": dict(sorted(by_status.items())),
        **_subsidy(session=session, start=start, end=end, kinds=kinds, communities=communities),
    }


def _subsidy(*, session: Session, start, end, kinds: dict[str, str], communities: list[int] | None) -> dict:
    query = (select(SubsidyLedger.service_type, Elder.community_id, func.sum(SubsidyLedger.amount))
             .join(Elder, Elder.id == SubsidyLedger.elder_id)
             .where(SubsidyLedger.at >= start, SubsidyLedger.at < end, SubsidyLedger.order_id.is_not(None)))
    if communities is not None:
        query = query.where(Elder.community_id.in_(communities))
    rows = session.exec(query.group_by(SubsidyLedger.service_type, Elder.community_id)).all()
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
        return table_rows(report[table], keys), title
    items = [report["total"]] if table == "total" else report[table]
    return table_rows(items, keys | ORDER_COLUMNS), title
