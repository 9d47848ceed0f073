"""Time helpers: store UTC, show Asia/Shanghai."""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def local_iso(value: datetime | None, tz: ZoneInfo) -> str | None:
    """A stored (UTC) time as shown to people: ISO 8601 in the centre's time zone."""
    return as_utc(value).astimezone(tz).isoformat() if value else None


def day_start_utc(day: date, tz: ZoneInfo) -> datetime:
    """Midnight of `day` in the centre's time zone, in UTC (what is stored; SQLite keeps no zone)."""
    return datetime.combine(day, time.min, tz).astimezone(timezone.utc)


def today_in(tz: ZoneInfo) -> date:
    return datetime.now(tz).date()


def age_on(birth_date: date | None, today: date) -> int | None:
    if birth_date is None:
        return None
    return today.year - birth_date.year - ((today.month, today.day) < (birth_date.month, birth_date.day))
