"""The menu and business hours as values, and the decisions made from them (no I/O here).

Where they come from: the menu file (`ivr/menu.toml`, or IVR_MENU_FILE) gives the defaults;
what supervisors saved in the database (`ivr_settings`) goes over them (`ivr/service.py`).
Both pass through `parse`, so a bad file and a bad form get the same Chinese error per field.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

from callcenter.calls.models import IVR_ROUTES
from callcenter.errors import FieldErrors
from ivr import prompts

DEFAULT_FILE = Path(__file__).with_name("menu.toml")
MENU_ROUTES = ("meal", "home_service", "medical", "emergency", "agent")
WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
_PERIOD = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
_QUEUE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


@dataclass(frozen=True)
class Menu:
    keys: dict[str, str]
    digit_timeout_seconds: int = 5
    retries: int = 1
    queue: str = "hotline"
    on_duty_queue: str = "emergency"
    emergency_priority: int = 10
    high_risk_skip_menu: bool = True
    survey_timeout_seconds: int = 8

    @property
    def escape_digits(self) -> str:
        """Keys that cut a prompt short: every key, so an invalid one is heard and answered."""
        return "0123456789*#"


@dataclass(frozen=True)
class Hours:
    always_open: bool = False
    open_days: frozenset[int] = frozenset(range(7))
    periods: tuple[tuple[time, time], ...] = ((time(8), time(20)),)
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()

    def open_on(self, day: date) -> bool:
        if day in self.holidays:
            return False
        return day in self.workdays or day.weekday() in self.open_days

    def is_open(self, at: datetime) -> bool:
        """`at` in the centre's local time."""
        if self.always_open:
            return True
        if not self.open_on(at.date()):
            return False
        now = at.time().replace(tzinfo=None)
        return any(start <= now < end for start, end in self.periods)

    def next_opening(self, at: datetime) -> datetime:
        """When the centre next opens after `at` (local, aware); `at` itself when open now."""
        if self.is_open(at):
            return at
        for offset in range(0, 400):
            day = at.date() + timedelta(days=offset)
            if not self.open_on(day):
                continue
            for start, _ in sorted(self.periods):
                opening = datetime.combine(day, start, tzinfo=at.tzinfo)
                if opening > at:
                    return opening
        return at  # never opens: the request is due at once, for whoever is on duty

    def describe(self) -> str:
        """工作时间 in words, for pages and prompts."""
        if self.always_open:
            return "全天24小时"
        days = "每天" if self.open_days == frozenset(range(7)) else "、".join(WEEKDAYS[d] for d in sorted(self.open_days))
        return days + " " + "、".join(period_text(start, end) for start, end in self.periods)


def period_text(start: time, end: time) -> str:
    """`08:00-20:00`; a period to midnight ends `24:00` (stored as time.max)."""
    return f"{start:%H:%M}-{'24:00' if end == time.max else f'{end:%H:%M}'}"


@dataclass(frozen=True)
class IvrConfig:
    menu: Menu
    hours: Hours
    prompt_texts: dict[str, str] = field(default_factory=prompts.texts)


def read_file(path: Path | None = None) -> dict:
    """The menu file as plain data (sections menu, hours, prompts)."""
    with open(path or DEFAULT_FILE, "rb") as handle:
        data = tomllib.load(handle)
    return {"menu": data.get("menu", {}), "hours": data.get("hours", {}), "prompts": data.get("prompts", {})}


def parse(data: dict) -> IvrConfig:
    """Plain data (file, database, form) → IvrConfig, or FieldErrors naming each bad field."""
    errors: list[tuple[str, str]] = []
    menu = _parse_menu(data.get("menu", {}), errors)
    hours = _parse_hours(data.get("hours", {}), errors)
    texts = _parse_prompts(data.get("prompts", {}), errors)
    if errors:
        raise FieldErrors(errors)
    return IvrConfig(menu=menu, hours=hours, prompt_texts=texts)


def _integer(raw: dict, name: str, default: int, low: int, high: int, label: str, errors: list) -> int:
    value = raw.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        errors.append((name, f"{label}应为整数"))
        return default
    if isinstance(value, float) and value != number or not low <= number <= high:
        errors.append((name, f"{label}应在 {low}–{high} 之间"))
        return default
    return number


def _parse_menu(raw: dict, errors: list) -> Menu:
    keys = {}
    for digit, route in (raw.get("keys") or {}).items():
        digit, route = str(digit).strip(), str(route).strip()
        if not route:
            continue
        if digit not in "0123456789" or len(digit) != 1:
            errors.append(("keys", f"按键只能是 0–9：{digit}"))
        elif route not in MENU_ROUTES:
            errors.append(("keys", f"按键 {digit} 的去向无效：{route}（可选：{'、'.join(IVR_ROUTES[r] for r in MENU_ROUTES)}）"))
        else:
            keys[digit] = route
    if "emergency" not in keys.values():
        errors.append(("keys", "必须保留一个紧急求助按键"))
    queues = {}
    for name, label in (("queue", "工作时间队列"), ("on_duty_queue", "值班队列")):
        queues[name] = str(raw.get(name, Menu.__dataclass_fields__[name].default)).strip()
        if not _QUEUE.match(queues[name]):
            errors.append((name, f"{label}名只能含字母、数字、- 和 _"))
    return Menu(
        keys=keys,
        digit_timeout_seconds=_integer(raw, "digit_timeout_seconds", 5, 2, 20, "按键等待秒数", errors),
        retries=_integer(raw, "retries", 1, 0, 2, "按错重听次数", errors),
        emergency_priority=_integer(raw, "emergency_priority", 10, 1, 100, "紧急优先级", errors),
        survey_timeout_seconds=_integer(raw, "survey_timeout_seconds", 8, 3, 30, "评价等待秒数", errors),
        high_risk_skip_menu=bool(raw.get("high_risk_skip_menu", True)),
        **queues,
    )


def _parse_hours(raw: dict, errors: list) -> Hours:
    periods = []
    for text in raw.get("periods") or []:
        match = _PERIOD.match(str(text).strip())
        if not match:
            errors.append(("periods", f"时段格式应为 HH:MM-HH:MM：{text}"))
            continue
        start = time(int(match.group(1)), int(match.group(2)))
        end = time.max if match.group(3) == "24" else time(int(match.group(3)), int(match.group(4)))
        if end <= start:
            errors.append(("periods", f"时段的结束须晚于开始：{text}"))
        else:
            periods.append((start, end))
    always_open = bool(raw.get("always_open", False))
    if not periods and not always_open:
        errors.append(("periods", "请至少设置一个工作时段，或选择全天24小时"))
    days = set()
    for day in raw.get("open_days", []):
        if str(day).isdigit() and 0 <= int(day) <= 6:
            days.add(int(day))
        else:
            errors.append(("open_days", f"星期无效：{day}"))
    return Hours(always_open=always_open, open_days=frozenset(days), periods=tuple(sorted(periods)),
                 holidays=_dates(raw.get("holidays"), "holidays", "节假日", errors),
                 workdays=_dates(raw.get("workdays"), "workdays", "调休上班日", errors))


def _dates(values, name: str, label: str, errors: list) -> frozenset[date]:
    out = set()
    for value in values or []:
        try:
            out.add(value if isinstance(value, date) else date.fromisoformat(str(value).strip()))
        except ValueError:
            errors.append((name, f"{label}日期格式应为 YYYY-MM-DD：{value}"))
    return frozenset(out)


def _parse_prompts(raw: dict, errors: list) -> dict[str, str]:
    overrides = {}
    for name, text in (raw or {}).items():
        if name not in prompts.PROMPTS:
            errors.append(("prompts", f"没有这个提示音：{name}"))
        elif len(str(text)) > 300:
            errors.append((name, "提示语过长（最多 300 字）"))
        else:
            overrides[name] = str(text)
    return prompts.texts(overrides)


def to_data(config: IvrConfig) -> dict:
    """IvrConfig → plain data (what the database stores and the settings page shows)."""
    menu, hours = config.menu, config.hours
    return {
        "menu": {"keys": dict(sorted(menu.keys.items())), "digit_timeout_seconds": menu.digit_timeout_seconds,
                 "retries": menu.retries, "queue": menu.queue, "on_duty_queue": menu.on_duty_queue,
                 "emergency_priority": menu.emergency_priority, "high_risk_skip_menu": menu.high_risk_skip_menu,
                 "survey_timeout_seconds": menu.survey_timeout_seconds},
        "hours": {"always_open": hours.always_open, "open_days": sorted(hours.open_days),
                  "periods": [period_text(start, end) for start, end in hours.periods],
                  "holidays": sorted(d.isoformat() for d in hours.holidays),
                  "workdays": sorted(d.isoformat() for d in hours.workdays)},
        "prompts": dict(config.prompt_texts),
    }
