"""Form fields of the server-rendered pages, parsed with errors in Chinese (FieldErrors)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

from callcenter import inputs
from callcenter.errors import FieldErrors


def date_field(text: str, field: str, label: str = "日期") -> date | None:
    if not (text or "").strip():
        return None
    try:
        value = date.fromisoformat(text.strip())
    except ValueError:
        raise FieldErrors.single(field, f"{label}格式应为 YYYY-MM-DD：{text}") from None
    if not inputs.FIRST_DAY <= value <= inputs.LAST_DAY:
        raise FieldErrors.single(field, f"{label}应在 {inputs.FIRST_DAY} 至 {inputs.LAST_DAY} 之间")
    return value


def integer_field(text: str, field: str, label: str) -> int:
    if not (text or "").strip().lstrip("-").isdigit():
        raise FieldErrors.single(field, f"{label}应为整数：{text}")
    if abs(int(text)) > inputs.DB_INT_MAX:
        raise FieldErrors.single(field, f"{label}超出范围：{text}")
    return int(text)


def decimal_field(text: str, field: str, label: str) -> Decimal:
    try:
        return Decimal((text or "").strip() or "0")
    except InvalidOperation:
        raise FieldErrors.single(field, f"{label}应为数字：{text}") from None
