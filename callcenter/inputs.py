"""Shared input types: one place for each rule about what a request may carry, so every route
and body model refuses the same things with the same Chinese message (422), instead of the
database failing on them (500).

- `Id`: a row id, 1 … 2³¹−1 (PostgreSQL's integer; SQLite and Python take more, the column not).
- `Page`: a page number, 1 … MAX_PAGE (beyond it the OFFSET overflows and nobody pages that far).
- `ReportDate`: a day between FIRST_DAY and LAST_DAY (a report's range is built from it plus a day).
NUL characters are refused for every route in one place too: callcenter/nul.py (web layer).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

import annotated_types
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

DB_INT_MAX = 2**31 - 1
MAX_PAGE = 100_000
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)

Id = Annotated[int, annotated_types.Ge(1), annotated_types.Le(DB_INT_MAX)]
Page = Annotated[int, annotated_types.Ge(1), annotated_types.Le(MAX_PAGE)]


def _reasonable_day(value: date) -> date:
    if not FIRST_DAY <= value <= LAST_DAY:
        raise PydanticCustomError("date_out_of_range", "日期应在 {first} 至 {last} 之间",
                                  {"first": FIRST_DAY.isoformat(), "last": LAST_DAY.isoformat()})
    return value


ReportDate = Annotated[date, AfterValidator(_reasonable_day)]
