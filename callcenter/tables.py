"""Tables as files people open in Excel: CSV (UTF-8 with a BOM, so Excel reads Chinese) and
XLSX. Every export (elders, call and work-order reports, the subsidy ledger) goes through
`encode`, so what makes a cell safe is decided here once.

Formula injection (OWASP "CSV injection"): a name or note such as `=cmd|' /C calc'!A0` or
`=HYPERLINK(…)` must reach the spreadsheet as text. In CSV a text cell starting with = + - @, a
tab or a carriage return gets a leading single quote; in XLSX every text cell is written as a
string (never a formula) and such a cell is also marked quote-prefixed, so editing it in Excel
keeps it text. Cells that are numbers (int, Decimal, or text that is a plain number such as a
negative balance "-20.00") are left as they are: a number cannot carry a formula.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable

import openpyxl
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MEDIA = "text/csv; charset=utf-8"

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def is_formula_like(value: object) -> bool:
    """Whether a spreadsheet would take this text cell as a formula (or a DDE command)."""
    return isinstance(value, str) and value.startswith(FORMULA_TRIGGERS) and not _PLAIN_NUMBER.fullmatch(value)


def escape_cell(value: object) -> object:
    """The CSV form of a cell: formula-like text behind a single quote (OWASP)."""
    return "'" + value if is_formula_like(value) else value


def unescape_cell(value: object) -> object:
    """Undo `escape_cell` for a file read back (the elders' import reads its own exports)."""
    if isinstance(value, str) and value.startswith("'") and is_formula_like(value[1:]):
        return value[1:]
    return value


def to_csv(rows: Iterable[list]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows([escape_cell(value) for value in row] for row in rows)
    return buffer.getvalue().encode("utf-8-sig")


def _xlsx_cell(sheet, value: object):
    if not isinstance(value, str):
        return value
    cell = WriteOnlyCell(sheet, value=ILLEGAL_CHARACTERS_RE.sub("", value))  # control characters XML cannot hold
    cell.data_type = "s"  # text, whatever it starts with: openpyxl would make "=…" a formula
    cell.quotePrefix = is_formula_like(value)
    return cell


def to_xlsx(rows: Iterable[list], title: str) -> bytes:
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet(title[:31])  # Excel's limit on sheet names
    for row in rows:
        sheet.append([_xlsx_cell(sheet, value) for value in row])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def encode(rows: list[list], *, format: str, title: str) -> tuple[bytes, str]:
    """The file's bytes and media type."""
    if format == "xlsx":
        return to_xlsx(rows, title), XLSX_MEDIA
    return to_csv(rows), CSV_MEDIA
