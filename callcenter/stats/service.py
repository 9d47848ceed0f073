"""Call KPIs exactly as DESIGN.md defines them ("KPIs"), computed from each call's stored
timestamps so a definition can change without losing history.

A call counts on the day and hour (Asia/Shanghai, or the configured zone) it entered the queue;
only inbound calls that reached a queue are offered. Rates are None when their denominator is
zero (a day without calls has no service level, not 0 %).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlmodel import Session, select

from callcenter.calls.models import CallRecord
from callcenter.errors import FieldErrors
from callcenter.timeutil import as_utc, day_start_utc, today_in


@dataclass(frozen=True)
class CallFacts:
    """What the KPIs need of one offered call."""

    queued_at: datetime  # local time
    outcome: str | None
    wait: int | None
    talk: int | None
    wrapup: int | None
    agent: str | None
    queue: str | None


MAX_DAYS = 366


def resolve_range(date_from: date | None, date_to: date | None, *, tz) -> tuple[date, date]:
    """A report's days: both default to today (the centre's); a backwards or over-long range is
    refused in Chinese."""
    today = today_in(tz)
    date_from = date_from or today
    date_to = date_to or date_from
    if date_to < date_from:
        raise FieldErrors.single("to", "结束日期早于开始日期")
    if (date_to - date_from).days >= MAX_DAYS:
        raise FieldErrors.single("to", f"统计区间不能超过 {MAX_DAYS} 天")
    return date_from, date_to


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _mean(values: list[int]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def call_kpis(facts: list[CallFacts], *, threshold: int) -> dict:
    """The call KPIs of a set of offered calls; `threshold` is T (seconds) of the service level."""
    answered = [f for f in facts if f.outcome == "answered"]
    within = sum(1 for f in answered if (f.wait or 0) <= threshold)
    abandoned = sum(1 for f in facts if f.outcome == "abandoned")
    short = sum(1 for f in facts if f.outcome == "short_abandon")
    abandoned_within = sum(1 for f in facts if f.outcome in ("abandoned", "short_abandon") and (f.wait or 0) <= threshold)
    offered = len(facts)
    return {
        "offered": offered, "answered": len(answered), "abandoned": abandoned, "short_abandons": short,
        "timeouts": sum(1 for f in facts if f.outcome == "timeout"),
        "answered_within_threshold": within,
        "answer_rate": _rate(len(answered), offered),  # 人工接通率
        "timely_answer_rate": _rate(within, len(answered)),  # 人工应答及时率 (GB/T 33358-2016)
        "service_level": _rate(within, offered - short),  # inclusive definition (DESIGN.md)
        "service_level_asterisk": _rate(within + abandoned_within, offered),  # Asterisk's SL2, for comparison
        "abandon_rate": _rate(abandoned, offered),  # short abandons excluded
        "asa_seconds": _mean([f.wait or 0 for f in answered]),
        "longest_wait_seconds": max((f.wait or 0 for f in facts), default=None),
        "aht_seconds": _mean([(f.talk or 0) + (f.wrapup or 0) for f in answered]),
        "threshold_seconds": threshold,
    }


def offered_calls(*, session: Session, tz, date_from: date, date_to: date, queue: str | None = None,
                  agent: str | None = None) -> list[CallFacts]:
    """The inbound calls that entered a queue between the start of `date_from` and the end of
    `date_to` (local days)."""
    query = select(CallRecord).where(CallRecord.direction == "inbound", CallRecord.queued_at.is_not(None),
                                     CallRecord.queued_at >= day_start_utc(date_from, tz),
                                     CallRecord.queued_at < day_start_utc(date_to + timedelta(days=1), tz))
    if queue:
        query = query.where(CallRecord.queue == queue)
    if agent:
        query = query.where(CallRecord.agent_extension == agent)
    return [_facts(row, tz) for row in session.exec(query)]


def _facts(row: CallRecord, tz) -> CallFacts:
    wrapup = None
    if row.wrapup_ended_at is not None and row.agent_done_at is not None:
        wrapup = max(0, round((as_utc(row.wrapup_ended_at) - as_utc(row.agent_done_at)).total_seconds()))
    return CallFacts(queued_at=as_utc(row.queued_at).astimezone(tz), outcome=row.outcome, wait=row.wait_seconds, talk=row.talk_seconds,
                     wrapup=wrapup, agent=row.agent_extension, queue=row.queue)


def report(*, session: Session, tz, date_from: date, date_to: date, threshold: int, queue: str | None = None,
           agent: str | None = None) -> dict:
    """The KPIs of the range, and split per day, per hour of day and per agent."""
    facts = offered_calls(session=session, tz=tz, date_from=date_from, date_to=date_to, queue=queue, agent=agent)
    by_day, by_hour, by_agent = defaultdict(list), defaultdict(list), defaultdict(list)
    for f in facts:
        by_day[f.queued_at.date().isoformat()].append(f)
        by_hour[f.queued_at.hour].append(f)
        if f.outcome == "answered" and f.agent:
            by_agent[f.agent].append(f)
    return {
        "from": date_from.isoformat(), "to": date_to.isoformat(), "queue": queue, "agent": agent,
        "total": call_kpis(facts, threshold=threshold),
        "by_day": [{"day": day, **call_kpis(rows, threshold=threshold)} for day, rows in sorted(by_day.items())],
        "by_hour": [{"hour": hour, **call_kpis(by_hour.get(hour, []), threshold=threshold)} for hour in range(24)],
        "by_agent": [{"agent": name, "answered": len(rows), "aht_seconds": _mean([(f.talk or 0) + (f.wrapup or 0) for f in rows]),
                      "asa_seconds": _mean([f.wait or 0 for f in rows])} for name, rows in sorted(by_agent.items())],
    }


# Export headers (Chinese), in column order; rates are exported as percentages.
CALL_COLUMNS = {
    "offered": "进线量", "answered": "接通量", "abandoned": "放弃量", "short_abandons": "短时放弃量", "timeouts": "排队超时量",
    "answered_within_threshold": "及时接通量", "answer_rate": "人工接通率", "timely_answer_rate": "人工应答及时率",
    "service_level": "服务水平", "service_level_asterisk": "服务水平（Asterisk SL2 口径）", "abandon_rate": "放弃率",
    "asa_seconds": "平均应答时长（秒）", "longest_wait_seconds": "最长等待（秒）", "aht_seconds": "平均处理时长（秒）",
    "threshold_seconds": "及时阈值（秒）",
}
CALL_TABLES = {"total": ({}, "合计"), "by_day": ({"day": "日期"}, "按日"), "by_hour": ({"hour": "时段"}, "按时段"),
               "by_agent": ({"agent": "坐席分机", "answered": "接通量", "asa_seconds": "平均应答时长（秒）",
                             "aht_seconds": "平均处理时长（秒）"}, "按坐席")}


def table_rows(items: list[dict], columns: dict[str, str]) -> list[list]:
    """A header row of `columns`' Chinese names, then one row per item; rates as percentages."""
    def cell(key, value):
        if value is None:
            return ""
        if key.endswith("_rate") or key.startswith("service_level"):
            return f"{value * 100:.2f}%"
        if key == "hour":
            return f"{value:02d}:00-{value:02d}:59"
        return value

    return [list(columns.values())] + [[cell(key, item.get(key)) for key in columns] for item in items]


def call_table(report: dict, table: str) -> tuple[list[list], str]:
    """One of the report's tables for export: (rows, sheet title)."""
    keys, title = CALL_TABLES[table]
    if table == "by_agent":
        return table_rows(report["by_agent"], keys), title
    items = [report["total"]] if table == "total" else report[table]
    return table_rows(items, keys | CALL_COLUMNS), title
