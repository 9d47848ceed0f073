"""Tables as files people open in Excel: CSV (UTF-8 with a BOM, so Excel reads Chinese) and
XLSX. Used by the elders' export and the reports."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

import openpyxl

XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MEDIA = "text/csv; charset=utf-8"


def to_csv(rows: Iterable[list]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode("utf-8-sig")


def to_xlsx(rows: Iterable[list], title: str) -> bytes:
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet(title[:31])  # Excel's limit on sheet names
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def encode(rows: list[list], *, format: str, title: str) -> tuple[bytes, str]:
    """The file's bytes and media type."""
    if format == "xlsx":
        return to_xlsx(rows, title), XLSX_MEDIA
    return to_csv(rows), CSV_MEDIA
