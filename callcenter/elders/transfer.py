"""Import and export of elder profiles as CSV or XLSX, in the form a street office hands over.

Import checks every row first and reports each problem (row, column, reason); only then are the
valid rows written, all in the caller's transaction, so a failure leaves nothing half-written.
Rows are keyed by ID number: importing the same file again updates instead of duplicating.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import openpyxl
from pydantic import ValidationError
from sqlmodel import Session, select

from callcenter import tables
from callcenter.areas import service as areas_service
from callcenter.crypto import Sealer
from callcenter.elders import presenter
from callcenter.elders import service as elders_service
from callcenter.elders.models import ABILITY_LEVELS, ECONOMIC_STATUSES, GENDERS, LIVING_SITUATIONS, RISK_FLAGS, Elder
from callcenter.elders.schemas import ElderIn
from callcenter.errors import FieldErrors

# (key, header, accepted aliases)
COLUMNS: list[tuple[str, str, tuple[str, ...]]] = [
    ("name", "姓名", ("老人姓名",)),
    ("id_number", "身份证号", ("身份证号码", "身份证", "公民身份号码")),
    ("gender", "性别", ()),
    ("birth_date", "出生日期", ("出生年月日",)),
    ("phones", "联系电话", ("电话", "手机", "手机号", "本人电话", "联系方式")),
    ("district", "区", ("区县", "所属区")),
    ("street", "街道", ("街道(乡镇)", "街道（乡镇）", "乡镇", "所属街道")),
    ("community", "社区", ("社区(村)", "社区（村）", "村", "所属社区")),
    ("address", "详细地址", ("地址", "住址", "家庭住址")),
    ("living_situation", "居住状况", ("居住情况",)),
    ("economic_status", "经济状况", ("经济情况",)),
    ("ability_level", "失能等级", ("能力等级", "失能程度")),
    ("chronic_conditions", "慢性病", ("慢病", "疾病史")),
    ("allergies", "过敏史", ("过敏",)),
    ("contact_name", "紧急联系人", ()),
    ("contact_relation", "紧急联系人关系", ("与老人关系",)),
    ("contact_phone", "紧急联系人电话", ()),
    ("steward_name", "养老服务管家", ("管家",)),
    ("steward_phone", "管家电话", ()),
    ("subsidy_balance", "补贴余额", ("补贴余额(元)", "补贴余额（元）")),
    ("risk_flags", "风险标记", ()),
    ("notes", "备注", ()),
]
HEADER_OF = {key: header for key, header, _ in COLUMNS}
KEY_OF = {name: key for key, header, aliases in COLUMNS for name in (header, *aliases)}
REQUIRED = ("name", "id_number")
# Where the profile service names a field, which column of the file it came from.
COLUMN_OF_FIELD = {
    "community_id": "community",
    "phones.number": "phones",
    "phones.relation": "phones",
    "emergency_contacts.phone": "contact_phone",
    "emergency_contacts.relation": "contact_relation",
}
_LIST_SPLIT = re.compile(r"[,，;；/、\n]+")
MAX_ROWS = 50_000


@dataclass
class RowProblem:
    row: int
    column: str
    reason: str


@dataclass
class ImportReport:
    total: int = 0
    created: int = 0
    updated: int = 0
    rejected_rows: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    # (elder id, "create" | "update", {field: (old, new)} of what the row changed)
    written: list[tuple[int, str, dict]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "total": self.total,
            "created": self.created,
            "updated": self.updated,
            "rejected_rows": self.rejected_rows,
            "problems": [problem.__dict__ for problem in self.problems],
            "ignored_columns": self.ignored_columns,
        }


# --- reading files ----------------------------------------------------------------------------


def read_table(filename: str, content: bytes) -> list[dict[str, object]]:
    """Rows of a CSV (UTF-8 or GB18030, as Excel saves it) or XLSX file, keyed by header text.
    Rows are read one at a time and the file is refused as soon as it passes MAX_ROWS; an XLSX
    is looked at (declared sizes, compression ratio) before anything is unpacked."""
    name = filename.lower()
    if name.endswith(".csv"):
        return _rows_to_dicts(_read_csv(content))
    if name.endswith(".xlsx"):
        return _rows_to_dicts(_read_xlsx(content))
    raise FieldErrors.single("file", "仅支持 CSV 或 XLSX 文件")


def _read_csv(content: bytes) -> Iterator[list]:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = content.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise FieldErrors.single("file", "文件编码无法识别，请另存为 UTF-8 或 GBK 编码的 CSV")
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise FieldErrors.single("file", f"第 {line} 行含有空字符（NUL），文件可能已损坏，请用 Excel 另存为 CSV 后重试")
    reader = csv.reader(io.StringIO(text))
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a cell over the csv module's limit (128 KB), a broken quote
            raise FieldErrors.single("file", f"第 {reader.line_num} 行无法读取（单元格过大或引号不成对），请检查后重新导出") from exc
        yield row


# An XLSX is a zip of XML: a small file can unpack to gigabytes. What its members declare is
# checked before openpyxl unpacks anything (zipfile then stops at the declared size).
MAX_XLSX_UNPACKED = 200 * 1024 * 1024  # a full 50,000-row sheet is about 60 MB of XML
MAX_XLSX_RATIO = 100  # spreadsheets compress 5-20 times; a zip bomb a thousand


def check_xlsx_archive(content: bytes) -> None:
    """FieldErrors when the XLSX is not a zip or would unpack to far more than a spreadsheet."""
    try:
        members = zipfile.ZipFile(io.BytesIO(content)).infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise FieldErrors.single("file", "无法读取 XLSX 文件，文件可能已损坏") from exc
    unpacked = sum(member.file_size for member in members)
    if unpacked > MAX_XLSX_UNPACKED:
        raise FieldErrors.single("file", f"XLSX 解压后超过 {MAX_XLSX_UNPACKED // 1024 // 1024} MB，请拆分后导入")
    for member in members:
        if member.file_size > 1024 * 1024 and member.file_size > MAX_XLSX_RATIO * max(member.compress_size, 1):
            raise FieldErrors.single("file", "XLSX 文件的压缩比异常（可能是压缩炸弹），已拒绝导入")


def _read_xlsx(content: bytes) -> Iterator[list]:
    check_xlsx_archive(content)
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a damaged file
        raise FieldErrors.single("file", "无法读取 XLSX 文件，文件可能已损坏") from exc
    try:
        for row in workbook.worksheets[0].iter_rows(values_only=True):
            yield list(row)
    except FieldErrors:
        raise
    except Exception as exc:
        raise FieldErrors.single("file", "无法读取 XLSX 文件，文件可能已损坏") from exc
    finally:
        workbook.close()


MAX_CELL_CHARS = 5000  # the longest field (notes) takes 2,000


def _rows_to_dicts(rows: Iterator[list]) -> list[dict[str, object]]:
    """Header row, then up to MAX_ROWS rows: the file is refused at row MAX_ROWS + 1, unread beyond."""
    header = next(rows, None)
    if header is None:
        raise FieldErrors.single("file", "文件为空")
    headers = [str(cell).strip() if cell is not None else "" for cell in header]
    result = []
    for number, row in enumerate(rows, start=2):
        if len(result) == MAX_ROWS:
            raise FieldErrors.single("file", f"单个文件最多 {MAX_ROWS} 行，请拆分后导入")
        if any(isinstance(cell, str) and len(cell) > MAX_CELL_CHARS for cell in row):
            raise FieldErrors.single("file", f"第 {number} 行有单元格超过 {MAX_CELL_CHARS} 字，请检查后重新导出")
        result.append(dict(zip(headers, row)))
    return result


# --- import ---------------------------------------------------------------------------------


def import_rows(*, session: Session, rows: list[dict[str, object]], sealer: Sealer, area_code: str) -> ImportReport:
    """Check every row, then write the valid ones (create, or update by ID number)."""
    report = ImportReport(total=0)
    headers = list(rows[0].keys()) if rows else []
    known = {KEY_OF[h] for h in headers if h in KEY_OF}
    report.ignored_columns = [h for h in headers if h and h not in KEY_OF]
    missing = [HEADER_OF[key] for key in REQUIRED if key not in known]
    if missing:
        raise FieldErrors.single("file", f"缺少必填列：{'、'.join(missing)}")

    accepted: list[tuple[int, ElderIn, dict, Decimal | None]] = []
    first_row_of_id: dict[str, int] = {}
    for row_number, raw in enumerate(rows, start=2):
        values = {KEY_OF[h]: v for h, v in raw.items() if h in KEY_OF}
        cells = {key: _text(value) for key, value in values.items()}
        if not any(cells.values()):
            continue
        report.total += 1
        elder_in, area, problems = _parse_row(cells, id_was_number=isinstance(values.get("id_number"), (int, float)))
        balance = None
        if elder_in is not None and cells.get("subsidy_balance"):
            balance, balance_problems = _check_balance(session=session, sealer=sealer, elder_in=elder_in, text=cells["subsidy_balance"])
            problems += balance_problems
        if elder_in is not None and not problems:
            earlier = first_row_of_id.setdefault(elder_in.id_number, row_number)
            if earlier != row_number:
                problems.append(("id_number", f"与第 {earlier} 行身份证号重复"))
        if not problems:
            problems = _check_against_database(session=session, elder_in=elder_in, area_code=area_code)
        if problems:
            report.rejected_rows += 1
            report.problems += [RowProblem(row_number, HEADER_OF.get(key, key), reason) for key, reason in problems]
            continue
        accepted.append((row_number, elder_in, area, balance))

    for _row_number, elder_in, area, balance in accepted:
        if area:
            elder_in.community_id = areas_service.community_for_path(session=session, **area).id
        elder_id, created, changed = _write(session=session, elder_in=elder_in, balance=balance, sealer=sealer, area_code=area_code)
        report.written.append((elder_id, "create" if created else "update", changed))
        if created:
            report.created += 1
        else:
            report.updated += 1
    return report


def _text(value) -> str:
    """A cell as text; a formula-like cell our export quoted (tables.escape_cell) comes back unquoted."""
    if value is None:
        return ""
    if isinstance(value, str):
        return str(tables.unescape_cell(value)).strip()
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _parse_row(cells: dict[str, str], id_was_number: bool) -> tuple[ElderIn | None, dict | None, list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    for key in REQUIRED:
        if not cells.get(key):
            problems.append((key, "必填"))
    if problems:
        return None, None, problems
    id_number = cells["id_number"]
    # An 18-digit number does not fit a spreadsheet's floating-point cell: its last digits are gone.
    if id_was_number or "E+" in id_number.upper() or "." in id_number:
        problems.append(("id_number", "身份证号被 Excel 存成了数字，后几位已丢失，请把该列设为文本后重新导出"))
    birth_date = None
    if cells.get("birth_date"):
        birth_date = _parse_date(cells["birth_date"])
        if birth_date is None:
            problems.append(("birth_date", f"无法识别的日期：{cells['birth_date']}"))
    area = {k: cells.get(k, "") for k in ("district", "street", "community")}
    if any(area.values()) and not all(area.values()):
        problems.append(("community", "区、街道、社区须同时填写"))
    phones = [{"number": n, "relation": "self", "is_primary": i == 0} for i, n in enumerate(_split_numbers(cells.get("phones", "")))]
    contacts = []
    if cells.get("contact_name") or cells.get("contact_phone"):
        if not (cells.get("contact_name") and cells.get("contact_phone")):
            problems.append(("contact_phone", "紧急联系人须同时填写姓名和电话"))
        else:
            contacts.append({"name": cells["contact_name"], "relation": cells.get("contact_relation") or "relative", "phone": cells["contact_phone"]})
    fields = {
        key: cells[key]
        for key in ("gender", "address", "living_situation", "economic_status", "ability_level", "chronic_conditions",
                    "allergies", "steward_name", "steward_phone", "notes")
        if cells.get(key)
    }
    if cells.get("risk_flags"):
        fields["risk_flags"] = _split(cells["risk_flags"])
    if problems:
        return None, None, problems
    try:
        elder_in = ElderIn(name=cells["name"], id_number=id_number, birth_date=birth_date, phones=phones, emergency_contacts=contacts,
                           **fields)
    except ValidationError as exc:  # a cell longer than its field takes
        return None, None, [(_column_of(error["loc"]), _too_long(error)) for error in exc.errors()]
    return elder_in, (area if all(area.values()) else None), problems


def _column_of(loc: tuple) -> str:
    if loc and loc[0] == "emergency_contacts":
        return "contact_" + ("name" if loc[-1] == "name" else "phone")
    return "phones" if loc and loc[0] == "phones" else str(loc[0] if loc else "file")


def _too_long(error: dict) -> str:
    limit = (error.get("ctx") or {}).get("max_length")
    return f"不能超过 {limit} 字" if limit else "无效的值"


def _split(text: str) -> list[str]:
    return [part.strip() for part in _LIST_SPLIT.split(text or "") if part.strip()]


def _split_numbers(text: str) -> list[str]:
    """Numbers in one cell: "138 0000 3333；0411-82345678" or "13800001111 13900002222"."""
    numbers = []
    for part in _split(text):
        tokens = part.split()
        whole_numbers = len(tokens) > 1 and all(len(token.replace("-", "")) >= 7 for token in tokens)
        numbers += tokens if whole_numbers else [part]
    return numbers


def _parse_date(text: str) -> date | None:
    text = text.strip().replace("年", "-").replace("月", "-").replace("日", "").replace("/", "-").replace(".", "-")
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def _check_against_database(*, session: Session, elder_in: ElderIn, area_code: str) -> list[tuple[str, str]]:
    """The same checks the profile service makes, run before anything is written."""
    fields = elder_in.model_dump(exclude={"phones", "emergency_contacts", "community_id"}, exclude_none=True)
    _, problems = elders_service.validate(session=session, fields=fields, area_code=area_code)
    _, phone_problems = elders_service.validate_phones(elder_in.phones, area_code)
    _, contact_problems = elders_service.validate_contacts(elder_in.emergency_contacts, area_code)
    for name, message in phone_problems + contact_problems:
        entry, attribute = name.split("[")[0], name.rsplit(".", 1)[-1]
        problems.append((COLUMN_OF_FIELD[f"{entry}.{attribute}"], message))
    return problems


def _check_balance(*, session: Session, sealer: Sealer, elder_in: ElderIn, text: str) -> tuple[Decimal | None, list[tuple[str, str]]]:
    """The 补贴余额 column opens a new elder's balance; for an elder already registered it must
    match the balance on record (the file cannot move money: the subsidy ledger does)."""
    try:
        balance = elders_service.opening_balance_or_error(text)
    except ValueError as exc:
        return None, [("subsidy_balance", str(exc))]
    existing = elders_service.find_by_id_number(session=session, sealer=sealer, id_number=elder_in.id_number or "")
    if existing is not None and existing.subsidy_balance != balance:
        return None, [("subsidy_balance", f"与系统中的余额 {existing.subsidy_balance} 元不一致：导入不改变已登记老人的补贴余额，"
                                          "请清空该列，或由班长在补贴台账中调整")]
    return (balance if existing is None else None), []


def _write(*, session: Session, elder_in: ElderIn, balance: Decimal | None, sealer: Sealer, area_code: str) -> tuple[int, bool, dict]:
    """Create the elder (with its opening balance), or update the one with this ID number;
    (elder id, created?, {field: (old, new)})."""
    existing = elders_service.find_by_id_number(session=session, sealer=sealer, id_number=elder_in.id_number)
    if existing is None:
        elder = elders_service.create(session=session, elder_in=elder_in, sealer=sealer, area_code=area_code, opening_balance=balance)
        return elder.id, True, ({"subsidy_balance": (None, elder.subsidy_balance)} if balance is not None else {})
    changes = elder_in.model_dump(exclude={"phones", "emergency_contacts", "id_number"}, exclude_none=True)
    _, changed = elders_service.update(session=session, elder_id=existing.id, changes=changes, sealer=sealer, area_code=area_code)
    for phone_in in elder_in.phones:
        elders_service.add_phone(session=session, elder_id=existing.id, phone_in=phone_in.model_copy(update={"is_primary": False}),
                                 area_code=area_code)
    for contact_in in elder_in.emergency_contacts:
        elders_service.add_contact(session=session, elder_id=existing.id, contact_in=contact_in, area_code=area_code)
    return existing.id, False, changed


# --- export ---------------------------------------------------------------------------------

EXPORT_KEYS = [key for key, _, _ in COLUMNS]


def export_rows(*, session: Session, elders: Iterable[Elder], sealer: Sealer, reveal_ids: bool) -> Iterator[list[str]]:
    """The header row, then one row per elder, in the import layout (so a file round-trips)."""
    yield [HEADER_OF[key] for key in EXPORT_KEYS]
    area_names: dict[int | None, dict] = {}
    for elder in elders:
        if elder.community_id not in area_names:
            path = areas_service.path_of(session=session, area_id=elder.community_id)
            area_names[elder.community_id] = {area.level: area.name for area in path}
        names = area_names[elder.community_id]
        phones = elders_service.phones_of(session=session, elder_id=elder.id)
        contacts = elders_service.contacts_of(session=session, elder_id=elder.id)
        contact = contacts[0] if contacts else None
        own = [presenter.display_phone(p.number) for p in phones if p.relation == "self"]
        values = {
            "name": elder.name,
            "id_number": presenter.id_number_shown(elder=elder, reveal=reveal_ids, sealer=sealer) or "",
            "gender": GENDERS.get(elder.gender, ""),
            "birth_date": elder.birth_date.isoformat() if elder.birth_date else "",
            "phones": "；".join(own),
            "district": names.get("district", ""),
            "street": names.get("street", ""),
            "community": names.get("community", ""),
            "address": elder.address,
            "living_situation": LIVING_SITUATIONS.get(elder.living_situation, ""),
            "economic_status": ECONOMIC_STATUSES.get(elder.economic_status, ""),
            "ability_level": ABILITY_LEVELS.get(elder.ability_level, ""),
            "chronic_conditions": elder.chronic_conditions,
            "allergies": elder.allergies,
            "contact_name": contact.name if contact else "",
            "contact_relation": presenter.RELATIONS.get(contact.relation, "") if contact else "",
            "contact_phone": presenter.display_phone(contact.phone) if contact else "",
            "steward_name": elder.steward_name,
            "steward_phone": presenter.display_phone(elder.steward_phone) if elder.steward_phone else "",
            "subsidy_balance": str(elder.subsidy_balance),
            "risk_flags": "、".join(RISK_FLAGS.get(f, f) for f in elder.risk_flags),
            "notes": elder.notes,
        }
        yield [values[key] for key in EXPORT_KEYS]


def elders_for_export(*, session: Session, q: str, sealer: Sealer, include_inactive: bool) -> list[Elder]:
    ids = elders_service.matching_ids(session=session, q=q, sealer=sealer, include_inactive=include_inactive)
    return [] if ids is None else list(session.exec(select(Elder).where(Elder.id.in_(ids)).order_by(Elder.id)))

