"""Resident ID numbers (居民身份证号码), GB 11643-1999: 17 digits and a check character.

The number carries the birth date (digits 7-14) and the sex (digit 17: odd male, even female),
so a profile's birth date and gender are checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


class InvalidIdNumber(ValueError):
    """An ID number that fails the GB 11643 format, date or checksum."""


@dataclass(frozen=True)
class IdNumber:
    value: str  # 18 characters, upper-case X
    birth_date: date
    gender: str  # male | female

    @property
    def masked(self) -> str:
        """First 4 and last 4 shown: 2102**********1234."""
        return self.value[:4] + "*" * 10 + self.value[-4:]

    @property
    def last4(self) -> str:
        return self.value[-4:]


def check_character(first17: str) -> str:
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS)) % 11]


def parse_id_number(raw: str) -> IdNumber:
    """Validate and decode `raw`, or raise InvalidIdNumber with a message in Chinese."""
    value = (raw or "").strip().upper()
    if len(value) != 18 or not value[:17].isdigit() or not (value[17].isdigit() or value[17] == "X"):
        raise InvalidIdNumber("身份证号应为18位（前17位数字，末位为数字或X）")
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError as exc:
        raise InvalidIdNumber("身份证号中的出生日期无效") from exc
    if born.year < 1880 or born > date.today():
        raise InvalidIdNumber("身份证号中的出生日期无效")
    if check_character(value[:17]) != value[17]:
        raise InvalidIdNumber("身份证号校验位错误")
    return IdNumber(value=value, birth_date=born, gender="male" if int(value[16]) % 2 else "female")


def make_id_number(area_code: str, born: date, sequence: int, gender: str) -> str:
    """Build a valid number (demo data, tests): sequence 0-99 plus a sex digit."""
    sex_digit = (sequence % 5) * 2 + (1 if gender == "male" else 0)
    first17 = f"{area_code[:6]}{born:%Y%m%d}{sequence % 100:02d}{sex_digit}"
    return first17 + check_character(first17)
