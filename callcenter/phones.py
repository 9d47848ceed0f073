"""Phone numbers as caller ID delivers them, normalized to E.164 with `phonenumbers` (region CN).

Caller ID reaches us as `13800138000`, `+8613800138000`, `008613800138000`, `8613800138000`,
`041112345678`, `12345678` (a landline dialled without its area code) and with spaces or dashes.
Every form of one number normalizes to the same E.164 string, which is what we store and match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

_SEPARATORS = re.compile(r"[\s\-().]")


class InvalidPhoneNumber(ValueError):
    """A number that is not a valid Chinese or international phone number."""


@dataclass(frozen=True)
class Phone:
    e164: str
    national: str  # national significant number, digits only (no trunk 0)
    kind: str  # mobile | landline | other

    @property
    def display(self) -> str:
        """How a Chinese agent reads it: 138 0013 8000 or 0411-12345678."""
        parsed = phonenumbers.parse(self.e164)
        if parsed.country_code != 86:
            return phonenumbers.format_number(parsed, PhoneNumberFormat.INTERNATIONAL)
        if self.kind == "mobile":
            n = self.national
            return f"{n[:3]} {n[3:7]} {n[7:]}"
        return phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL).replace(" ", "-", 1).replace(" ", "")


def _candidate(raw: str, default_area_code: str) -> str:
    digits = _SEPARATORS.sub("", raw.strip())
    if digits.startswith("+"):
        return digits
    if not digits.isdigit():
        raise InvalidPhoneNumber(f"号码含有非数字字符：{raw}")
    if digits.startswith("00"):
        return "+" + digits[2:]
    if digits.startswith("86") and len(digits) == 13 and digits[2] == "1":
        return "+" + digits  # mobile with country code but no '+'
    if digits.startswith("1") or digits.startswith("0"):
        return digits
    if 7 <= len(digits) <= 8:
        return default_area_code + digits  # local landline without its area code
    return digits


def parse_phone(raw: str, *, default_area_code: str) -> Phone:
    """Normalize `raw` or raise InvalidPhoneNumber with a message in Chinese."""
    if raw is None or not str(raw).strip():
        raise InvalidPhoneNumber("号码为空")
    raw = str(raw)
    try:
        parsed = phonenumbers.parse(_candidate(raw, default_area_code), "CN")
    except NumberParseException as exc:
        raise InvalidPhoneNumber(f"无法识别的号码：{raw}") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber(f"无效的电话号码：{raw}")
    number_type = phonenumbers.number_type(parsed)
    if number_type == PhoneNumberType.MOBILE:
        kind = "mobile"
    elif number_type in (PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE):
        kind = "landline"
    else:
        kind = "other"
    return Phone(
        e164=phonenumbers.format_number(parsed, PhoneNumberFormat.E164),
        national=str(parsed.national_number),
        kind=kind,
    )


def try_parse_phone(raw: str | None, *, default_area_code: str) -> Phone | None:
    """Like parse_phone, but None for anything unusable (anonymous, service numbers, garbage)."""
    try:
        return parse_phone(raw or "", default_area_code=default_area_code)
    except InvalidPhoneNumber:
        return None
