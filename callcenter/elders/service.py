"""Elder profiles: create, update, deactivate, phones and contacts, lookup by phone, search.

Functions flush and never commit: the caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from sqlalchemy import bindparam, func, literal, union, union_all
from sqlmodel import Session, select

from callcenter import db

from callcenter.areas import service as areas_service
from callcenter.areas import scope as areas_scope
from callcenter.crypto import Sealer
from callcenter.elders.idcard import InvalidIdNumber, parse_id_number
from callcenter.elders.models import (
    ABILITY_LEVELS,
    ECONOMIC_STATUSES,
    GENDERS,
    LIVING_SITUATIONS,
    RELATIONS,
    RISK_FLAGS,
    Elder,
    ElderPhone,
    EmergencyContact,
)
from callcenter.elders.pinyin import name_keys
from callcenter.elders.schemas import ContactIn, ElderFields, ElderIn, PhoneIn
from callcenter.errors import Conflict, FieldErrors, NotFound
from callcenter.phones import InvalidPhoneNumber, Phone, parse_phone
from callcenter.timeutil import utcnow

CODED_FIELDS = {
    "gender": (GENDERS, "性别"),
    "living_situation": (LIVING_SITUATIONS, "居住状况"),
    "economic_status": (ECONOMIC_STATUSES, "经济状况"),
    "ability_level": (ABILITY_LEVELS, "失能等级"),
}
SCALAR_FIELDS = [name for name in ElderFields.model_fields if name != "id_number"]


@dataclass
class PhoneMatch:
    """An elder found by a caller's number, and whose number it is."""

    elder: Elder
    relation: str
    owner_name: str
    source: str  # phone | emergency_contact


COUNT_LIMIT = 1000


@dataclass
class SearchPage:
    items: list[Elder]
    total: int  # at most COUNT_LIMIT
    page: int
    page_size: int
    total_is_capped: bool = False  # more than COUNT_LIMIT matched


# --- validation -----------------------------------------------------------------------------


def validate(*, session: Session, fields: dict, area_code: str) -> tuple[dict, list[tuple[str, str]]]:
    """Check and normalize profile fields; returns (clean values, [(field, message)])."""
    clean: dict = {}
    errors: list[tuple[str, str]] = []
    for name, value in fields.items():
        try:
            clean[name] = _clean_field(session, name, value, area_code)
        except (ValueError, InvalidOperation) as exc:
            errors.append((name, str(exc) or "无效的值"))
    id_number = clean.get("id_number")
    if id_number is not None:
        for name in ("birth_date", "gender"):
            given = clean.get(name)
            if given is not None and given != getattr(id_number, name):
                errors.append((name, f"与身份证号不一致（身份证号显示为{_show(name, getattr(id_number, name))}）"))
    return clean, errors


def _show(name: str, value) -> str:
    return GENDERS.get(value, value) if name == "gender" else str(value)


def _clean_field(session: Session, name: str, value, area_code: str):
    if value is None:
        return None
    if name == "name":
        value = value.strip()
        if not value:
            raise ValueError("姓名不能为空")
        return value
    if name == "id_number":
        try:
            return parse_id_number(value)
        except InvalidIdNumber as exc:
            raise ValueError(str(exc)) from exc
    if name in CODED_FIELDS:
        return _code(value, *CODED_FIELDS[name])
    if name == "birth_date":
        if value > date.today() or value.year < 1880:
            raise ValueError("出生日期无效")
        return value
    if name == "community_id":
        community = areas_service.get_community_or_raise(session=session, community_id=value).id
        scope = areas_scope.current(session)
        if not scope.city and community not in scope.communities:  # a scoped account registers only its own area's elders
            raise ValueError("该社区不在您的管辖范围内")
        return community
    if name == "steward_phone":
        return _phone(value, area_code).e164 if str(value).strip() else None
    if name == "risk_flags":
        return [_code(flag, RISK_FLAGS, "风险标记") for flag in value]
    return value.strip() if isinstance(value, str) else value


def _code(value: str, choices: dict[str, str], label: str) -> str:
    """Accept the code or its Chinese label; return the code."""
    value = str(value).strip()
    if value in choices:
        return value
    for code, text in choices.items():
        if text == value:
            return code
    raise ValueError(f"{label}无效：{value}（可选：{'、'.join(choices.values())}）")


def _phone(raw: str, area_code: str) -> Phone:
    try:
        return parse_phone(raw, default_area_code=area_code)
    except InvalidPhoneNumber as exc:
        raise ValueError(str(exc)) from exc


# --- create / update ------------------------------------------------------------------------


MAX_BALANCE = Decimal("1000000")


def opening_balance_or_error(value) -> Decimal:
    """A subsidy balance handed over with a new profile (a street office's file): two decimals,
    not negative, below a million; ValueError in Chinese otherwise."""
    try:
        amount = Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation as exc:
        raise ValueError(f"补贴余额应为金额：{value}") from exc
    if not amount.is_finite() or amount < 0 or amount >= MAX_BALANCE:
        raise ValueError("补贴余额应在 0 至 999999.99 元之间")
    return amount.quantize(Decimal("0.01"))


def create(*, session: Session, elder_in: ElderIn, sealer: Sealer, area_code: str, opening_balance: Decimal | None = None) -> Elder:
    """Create a profile with its phones and contacts, or raise FieldErrors naming every bad field.
    `opening_balance` is the subsidy a street office's import hands over with a new elder; every
    later change of it goes through the subsidy ledger."""
    fields = elder_in.model_dump(exclude={"phones", "emergency_contacts"}, exclude_none=True)
    clean, errors = validate(session=session, fields=fields, area_code=area_code)
    if opening_balance is not None:
        try:
            clean["subsidy_balance"] = opening_balance_or_error(opening_balance)
        except ValueError as exc:
            errors.append(("subsidy_balance", str(exc)))
    phones, phone_errors = validate_phones(elder_in.phones, area_code)
    contacts, contact_errors = validate_contacts(elder_in.emergency_contacts, area_code)
    errors += phone_errors + contact_errors
    if errors:
        raise FieldErrors(errors)
    elder = Elder(name=clean["name"], name_pinyin="", name_initials="")
    _apply(session=session, elder=elder, clean=clean, sealer=sealer)
    session.add(elder)
    session.flush()
    for phone_in, phone in phones:
        _attach_phone(session=session, elder=elder, phone=phone, phone_in=phone_in)
    for contact_in, phone in contacts:
        _attach_contact(session=session, elder=elder, contact_in=contact_in, phone=phone)
    session.flush()
    return elder


def update(*, session: Session, elder_id: int, changes: dict, sealer: Sealer, area_code: str) -> tuple[Elder, dict[str, tuple]]:
    """Apply `changes` (only the keys present); returns the elder and {field: (old, new)} of the
    fields that changed (the ID number as its masked form)."""
    elder = get_or_raise(session=session, elder_id=elder_id)
    clean, errors = validate(session=session, fields=changes, area_code=area_code)
    if elder.id_number_hash and "id_number" not in clean:
        for name in ("birth_date", "gender"):
            if name in clean and clean[name] != getattr(elder, name):
                errors.append((name, "已登记身份证号，出生日期和性别以身份证号为准"))
    if errors:
        raise FieldErrors(errors)
    before = _snapshot(elder)
    _apply(session=session, elder=elder, clean=clean, sealer=sealer)
    after = _snapshot(elder)
    changed = {name: (before[name][1], after[name][1]) for name in after if before[name][0] != after[name][0]}
    if changed:
        elder.updated_at = utcnow()
        session.add(elder)
        session.flush()
    return elder, changed


def _snapshot(elder: Elder) -> dict[str, tuple]:
    """{field: (value compared, value shown)}: the ID number is compared by its hash, shown masked."""
    values = {name: (getattr(elder, name),) * 2 for name in SCALAR_FIELDS}
    return values | {"id_number": (elder.id_number_hash, elder.id_number_masked)}


def _apply(*, session: Session, elder: Elder, clean: dict, sealer: Sealer) -> None:
    # The ID number goes first: it is the one change that can still be refused (registered to
    # another profile), and it must be refused before anything else on the elder has changed.
    for name, value in sorted(clean.items(), key=lambda item: item[0] != "id_number"):
        if name == "id_number":
            _set_id_number(session=session, elder=elder, id_number=value, sealer=sealer)
        elif name == "name":
            elder.name = value
            elder.name_pinyin, elder.name_initials = name_keys(value)
        elif value is not None or name in ("steward_phone", "community_id", "gender", "birth_date"):
            setattr(elder, name, value)


def _set_id_number(*, session: Session, elder: Elder, id_number, sealer: Sealer) -> None:
    digest = sealer.lookup_hash(id_number.value)
    with areas_scope.city_wide(session):  # an ID number is registered once in the whole city, whoever asks
        other = session.exec(select(Elder.id).where(Elder.id_number_hash == digest)).first()
    if other is not None and other != elder.id:
        raise FieldErrors.single("id_number", f"该身份证号已登记在档案 {other}")
    elder.id_number_hash = digest
    elder.id_number_enc = sealer.encrypt(id_number.value)
    elder.id_number_masked = id_number.masked
    elder.id_last4 = id_number.last4
    elder.birth_date = id_number.birth_date
    elder.gender = id_number.gender


def deactivate(*, session: Session, elder_id: int, reason: str) -> Elder:
    """Mark a profile inactive (moved away, deceased…); it stays for history but leaves searches."""
    elder = get_or_raise(session=session, elder_id=elder_id)
    if not elder.active:
        raise Conflict("该档案已停用")
    elder.active = False
    elder.deactivated_reason = reason
    elder.updated_at = utcnow()
    session.add(elder)
    session.flush()
    return elder


def get_or_raise(*, session: Session, elder_id: int) -> Elder:
    return db.get_or_raise(session, Elder, elder_id, "老人档案")


def find_by_id_number(*, session: Session, sealer: Sealer, id_number: str) -> Elder | None:
    return session.exec(select(Elder).where(Elder.id_number_hash == sealer.lookup_hash(id_number.strip().upper()))).first()


def reveal_id_number(*, elder: Elder, sealer: Sealer) -> str | None:
    return sealer.decrypt(elder.id_number_enc) if elder.id_number_enc else None


# --- phones and contacts ------------------------------------------------------------------


def _validate_entries(items: list, *, prefix: str, number_attr: str, area_code: str):
    """Check relation and number of each phone or contact; errors name e.g. `phones[1].number`."""
    valid, errors = [], []
    for index, item in enumerate(items):
        entry_errors = []
        try:
            relation = _code(item.relation, RELATIONS, "关系")
        except ValueError as exc:
            entry_errors.append((f"{prefix}[{index}].relation", str(exc)))
        try:
            phone = _phone(getattr(item, number_attr), area_code)
        except ValueError as exc:
            entry_errors.append((f"{prefix}[{index}].{number_attr}", str(exc)))
        if entry_errors:
            errors += entry_errors
        else:
            valid.append((item.model_copy(update={"relation": relation}), phone))
    return valid, errors


def validate_phones(items: list[PhoneIn], area_code: str):
    return _validate_entries(items, prefix="phones", number_attr="number", area_code=area_code)


def validate_contacts(items: list[ContactIn], area_code: str):
    return _validate_entries(items, prefix="emergency_contacts", number_attr="phone", area_code=area_code)


def _single_entry_errors(errors: list[tuple[str, str]]) -> FieldErrors:
    """`phones[0].number` → `number`: the request carried one entry, not a list."""
    return FieldErrors([(field.rsplit(".", 1)[-1], message) for field, message in errors])


def _attach_phone(*, session: Session, elder: Elder, phone: Phone, phone_in: PhoneIn) -> ElderPhone:
    existing = session.exec(select(ElderPhone).where(ElderPhone.elder_id == elder.id, ElderPhone.number == phone.e164)).first()
    row = existing or ElderPhone(elder_id=elder.id, number=phone.e164, number_rev=phone.national[::-1])
    row.kind = phone.kind
    row.relation = phone_in.relation
    row.owner_name = phone_in.owner_name.strip()
    row.is_primary = phone_in.is_primary
    session.add(row)
    return row


def _attach_contact(*, session: Session, elder: Elder, contact_in: ContactIn, phone: Phone) -> EmergencyContact:
    query = select(EmergencyContact).where(
        EmergencyContact.elder_id == elder.id, EmergencyContact.phone == phone.e164, EmergencyContact.name == contact_in.name.strip()
    )
    row = session.exec(query).first() or EmergencyContact(elder_id=elder.id, name=contact_in.name.strip(), phone=phone.e164)
    row.relation = contact_in.relation
    row.priority = contact_in.priority
    row.note = contact_in.note
    session.add(row)
    return row


def add_phone(*, session: Session, elder_id: int, phone_in: PhoneIn, area_code: str) -> ElderPhone:
    elder = get_or_raise(session=session, elder_id=elder_id)
    valid, errors = validate_phones([phone_in], area_code)
    if errors:
        raise _single_entry_errors(errors)
    row = _attach_phone(session=session, elder=elder, phone=valid[0][1], phone_in=valid[0][0])
    session.flush()
    return row


def remove_phone(*, session: Session, elder_id: int, phone_id: int) -> ElderPhone:
    row = session.get(ElderPhone, phone_id)
    if row is None or row.elder_id != elder_id:
        raise NotFound("该号码不属于此档案")
    session.delete(row)
    session.flush()
    return row


def add_contact(*, session: Session, elder_id: int, contact_in: ContactIn, area_code: str) -> EmergencyContact:
    elder = get_or_raise(session=session, elder_id=elder_id)
    valid, errors = validate_contacts([contact_in], area_code)
    if errors:
        raise _single_entry_errors(errors)
    row = _attach_contact(session=session, elder=elder, contact_in=valid[0][0], phone=valid[0][1])
    session.flush()
    return row


def remove_contact(*, session: Session, elder_id: int, contact_id: int) -> EmergencyContact:
    row = session.get(EmergencyContact, contact_id)
    if row is None or row.elder_id != elder_id:
        raise NotFound("该紧急联系人不属于此档案")
    session.delete(row)
    session.flush()
    return row


def phones_of(*, session: Session, elder_id: int) -> list[ElderPhone]:
    query = select(ElderPhone).where(ElderPhone.elder_id == elder_id).order_by(ElderPhone.is_primary.desc(), ElderPhone.id)
    return list(session.exec(query))


def contacts_of(*, session: Session, elder_id: int) -> list[EmergencyContact]:
    query = select(EmergencyContact).where(EmergencyContact.elder_id == elder_id).order_by(EmergencyContact.priority, EmergencyContact.id)
    return list(session.exec(query))


def numbers_of(*, session: Session, elder: Elder) -> set[str]:
    """Every number in the profile (E.164): phones, emergency contacts, steward."""
    numbers = {row.number for row in phones_of(session=session, elder_id=elder.id)}
    numbers |= {row.phone for row in contacts_of(session=session, elder_id=elder.id)}
    if elder.steward_phone:
        numbers.add(elder.steward_phone)
    return numbers


# --- lookup and search --------------------------------------------------------------------


def lookup_by_phone(*, session: Session, raw: str, area_code: str) -> tuple[Phone, list[PhoneMatch]]:
    """Elders reachable at the caller's number, in any caller-ID format. Raises FieldErrors for
    a number that cannot be a phone number; an unknown valid number gives an empty list."""
    try:
        phone = parse_phone(raw, default_area_code=area_code)
    except InvalidPhoneNumber as exc:
        raise FieldErrors.single("phone", str(exc)) from exc
    return phone, matches_for_number(session=session, e164=phone.e164)


def _build_matches_query():
    """Built once: this runs for every incoming call, and building the statement cost more than
    running it."""
    e164 = bindparam("e164")
    hits = union_all(
        select(ElderPhone.elder_id.label("elder_id"), ElderPhone.relation.label("relation"),
               ElderPhone.owner_name.label("owner"), literal("phone").label("source"))
        .where(ElderPhone.number == e164),
        select(EmergencyContact.elder_id, EmergencyContact.relation, EmergencyContact.name, literal("emergency_contact"))
        .where(EmergencyContact.phone == e164),
    ).subquery()
    return select(Elder, hits.c.relation, hits.c.owner, hits.c.source).join(hits, hits.c.elder_id == Elder.id).where(Elder.active)


_MATCHES_QUERY = _build_matches_query()


def matches_for_number(*, session: Session, e164: str) -> list[PhoneMatch]:
    """Active elders whose phones or emergency contacts carry this E.164 number, own numbers
    first, then relatives'. One round trip."""
    matches: dict[int, PhoneMatch] = {}
    for elder, relation, owner, source in session.execute(_MATCHES_QUERY, {"e164": e164}):
        if elder.id not in matches or (source == "phone" and matches[elder.id].source != "phone"):
            matches[elder.id] = PhoneMatch(elder=elder, relation=relation, owner_name=owner, source=source)
    return sorted(matches.values(), key=lambda m: (m.relation != "self", m.source != "phone", m.elder.id))


_WILDCARDS = str.maketrans("", "", "%_\\")


def _like_prefix(text: str) -> str:
    """A LIKE pattern matching strings that start with `text` (wildcards in it are dropped)."""
    return text.translate(_WILDCARDS) + "%"


def search_conditions(*, session: Session, q: str, sealer: Sealer | None = None, active_only: bool = True) -> list:
    """What `q` can mean: a name, pinyin or initials, a phone fragment, the last 4 of an ID
    number, a whole ID number, a community. Each is a SELECT of elder ids served by one index
    (a prefix or an equality), so their union stays fast with millions of elders."""
    text = q.translate(_WILDCARDS).strip()
    compact = text.replace(" ", "").replace("-", "").upper()
    if not text:
        return []

    def elders_where(condition):
        query = select(Elder.id).where(condition)
        return query.where(Elder.active) if active_only else query

    def phones_where(condition):
        query = select(ElderPhone.elder_id.label("id")).where(condition)
        return query.join(Elder, Elder.id == ElderPhone.elder_id).where(Elder.active) if active_only else query

    if compact.isascii() and compact.isalpha():
        key = _like_prefix(compact.lower())
        return [elders_where(Elder.name_pinyin.like(key)), elders_where(Elder.name_initials.like(key))]
    if compact.lstrip("+").isdigit() or (len(compact) in (4, 18) and compact[:-1].isdigit() and compact[-1] == "X"):
        return [elders_where(c) for c in _id_number_conditions(compact, sealer)] + [phones_where(c) for c in _phone_conditions(compact)]
    conditions = [elders_where(Elder.name.like(_like_prefix(text)))]
    community_ids = areas_service.communities_matching(session=session, text=text)
    if community_ids:
        conditions.append(elders_where(Elder.community_id.in_(community_ids)))
    return conditions


def _id_number_conditions(digits: str, sealer: Sealer | None) -> list:
    conditions = []
    if len(digits) == 4:
        conditions.append(Elder.id_last4 == digits)
    if len(digits) == 18 and sealer is not None:
        try:
            conditions.append(Elder.id_number_hash == sealer.lookup_hash(parse_id_number(digits).value))
        except InvalidIdNumber:
            pass
    return conditions


def _phone_conditions(digits: str) -> list:
    if digits.endswith("X"):
        return []  # only ID numbers end with X
    typed = digits.lstrip("+")
    if digits.startswith("+86"):
        typed = typed[2:]
    elif typed.startswith("0086"):
        typed = typed[4:]
    national = typed.lstrip("0")  # a whole number typed with its trunk 0: 0411…
    conditions = []
    if len(typed) >= 4:  # the last digits of a number: what agents type most
        tail = national if len(typed) >= 10 else typed
        conditions.append(ElderPhone.number_rev.like(_like_prefix(tail[::-1])))
    if len(national) >= 7:  # the start of a number; shorter would be an area code matching a whole city
        conditions.append(ElderPhone.number.like(_like_prefix("+86" + national)))
    return conditions


def matching_ids(*, session: Session, q: str, sealer: Sealer | None, include_inactive: bool = False):
    """SELECT of the distinct ids of the elders matching `q` (all when blank), or None when `q`
    can match nothing."""
    if not q.strip():
        query = select(Elder.id)
        return query if include_inactive else query.where(Elder.active)
    conditions = search_conditions(session=session, q=q, sealer=sealer, active_only=not include_inactive)
    if not conditions:
        return None
    return union(*conditions) if len(conditions) > 1 else conditions[0].distinct()


def search(
    *, session: Session, q: str, sealer: Sealer | None = None, page: int = 1, page_size: int = 20, include_inactive: bool = False
) -> SearchPage:
    """Profiles matching `q` (see search_conditions), newest first, one page at a time."""
    page, page_size = max(page, 1), min(max(page_size, 1), 200)
    ids = matching_ids(session=session, q=q, sealer=sealer, include_inactive=include_inactive)
    if ids is None:
        return SearchPage(items=[], total=0, page=page, page_size=page_size)
    ids = ids.subquery()
    # Counting stops at COUNT_LIMIT: "张" matches tens of thousands in a big city, and nobody
    # pages through them; the page says "more than …" and asks for a narrower query.
    counted = session.exec(select(func.count()).select_from(select(ids.c.id).limit(COUNT_LIMIT + 1).subquery())).one()
    # Pick the page's ids from the index-only union first, then read just those rows.
    page_ids = select(ids.c.id).order_by(ids.c.id.desc()).offset((page - 1) * page_size).limit(page_size)
    items = session.exec(select(Elder).where(Elder.id.in_(page_ids)).order_by(Elder.id.desc()))
    return SearchPage(items=list(items), total=min(counted, COUNT_LIMIT), page=page, page_size=page_size,
                      total_is_capped=counted > COUNT_LIMIT)
