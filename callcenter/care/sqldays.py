"""Day arithmetic in SQL that runs on PostgreSQL and on SQLite alike (the care plans and reports
work on days in the centre's zone, in bulk, inside the database)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Date, Integer, cast, func
from sqlmodel import Session


def dialect_of(session: Session) -> str:
    return session.get_bind().dialect.name


def local_date(column, tz: ZoneInfo, dialect: str):
    """The day (in the centre's zone) of a stored UTC time."""
    if dialect == "postgresql":
        return cast(func.timezone(str(tz), column), Date)
    offset = tz.utcoffset(datetime(2026, 1, 1)).total_seconds() / 3600  # SQLite: the zone's fixed offset
    return func.date(column, f"{offset:+.0f} hours")


def shift_days(day, days, dialect: str):
    """`day` plus `days` (a column or a number; negative: before)."""
    if dialect == "postgresql":
        return day + days
    return func.date(day, func.printf("%+d days", days))


def days_between(later, earlier, dialect: str):
    """Whole days from `earlier` to `later` (two dates)."""
    if dialect == "postgresql":
        return later - earlier
    return cast(func.julianday(later) - func.julianday(earlier), Integer)


def earlier_of(first, second, dialect: str):
    """The earlier of two times, either of which may be NULL."""
    if dialect == "postgresql":
        return func.least(first, second)  # PostgreSQL's LEAST skips NULLs
    return func.min(func.coalesce(first, second), func.coalesce(second, first))
