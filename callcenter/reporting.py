"""What every report shares, whichever domain it counts (calls in stats, orders in workorders):
the day range asked for, rates, conditional counts in SQL, and the rows of a downloaded table."""

from __future__ import annotations

from datetime import date

from sqlalchemy import case, func

from callcenter.errors import FieldErrors
from callcenter.timeutil import today_in

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


def rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def count_where(condition):
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def table_rows(items: list[dict], columns: dict[str, str]) -> list[list]:
    """A header row of `columns`' Chinese names, then one row per item; rates as percentages."""
    def cell(key, value):
        if value is None:
            return ""
        if key.endswith("_rate") or key.startswith("service_level") or key == "occupancy":
            return f"{value * 100:.2f}%"
        if key == "hour":
            return f"{value:02d}:00-{value:02d}:59"
        return value

    return [list(columns.values())] + [[cell(key, item.get(key)) for key in columns] for item in items]
