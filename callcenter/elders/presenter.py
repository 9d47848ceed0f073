"""Profiles as shown to a person: labels in Chinese, age, area path, ID number masked unless the
viewer may see it. The API, the pages and the export all use these, so masking lives in one place."""

from __future__ import annotations

from datetime import date

from sqlmodel import Session

from callcenter.areas import service as areas_service
from callcenter.crypto import Sealer
from callcenter.elders import service as elders_service
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
from callcenter.phones import try_parse_phone
from callcenter.timeutil import age_on


def display_phone(e164: str | None) -> str:
    phone = try_parse_phone(e164, default_area_code="")
    return phone.display if phone else (e164 or "")


def id_number_shown(*, elder: Elder, reveal: bool, sealer: Sealer | None) -> str | None:
    if reveal and sealer is not None:
        return elders_service.reveal_id_number(elder=elder, sealer=sealer)
    return elder.id_number_masked


def summary(elder: Elder, *, today: date) -> dict:
    """What a search result row or a screen pop needs."""
    return {
        "id": elder.id,
        "name": elder.name,
        "gender": elder.gender,
        "gender_label": GENDERS.get(elder.gender, "未知"),
        "age": age_on(elder.birth_date, today),
        "id_number": elder.id_number_masked,
        "community_id": elder.community_id,
        "address": elder.address,
        "living_situation": elder.living_situation,
        "living_situation_label": LIVING_SITUATIONS.get(elder.living_situation, elder.living_situation),
        "ability_level": elder.ability_level,
        "ability_level_label": ABILITY_LEVELS.get(elder.ability_level, elder.ability_level),
        "risk_flags": elder.risk_flags,
        "risk_flag_labels": [RISK_FLAGS.get(flag, flag) for flag in elder.risk_flags],
        "active": elder.active,
    }


def phone_dict(row: ElderPhone) -> dict:
    return {
        "id": row.id,
        "number": row.number,
        "display": display_phone(row.number),
        "kind": row.kind,
        "relation": row.relation,
        "relation_label": RELATIONS.get(row.relation, row.relation),
        "owner_name": row.owner_name,
        "is_primary": row.is_primary,
    }


def contact_dict(row: EmergencyContact) -> dict:
    return {
        "id": row.id,
        "name": row.name,
        "relation": row.relation,
        "relation_label": RELATIONS.get(row.relation, row.relation),
        "phone": row.phone,
        "display": display_phone(row.phone),
        "priority": row.priority,
        "note": row.note,
    }


def profile(*, session: Session, elder: Elder, today: date, reveal_id: bool, sealer: Sealer) -> dict:
    """The whole profile, with phones, contacts and the district / street / community path."""
    path = areas_service.path_of(session=session, area_id=elder.community_id)
    names = {area.level: area.name for area in path}
    return summary(elder, today=today) | {
        "id_number": id_number_shown(elder=elder, reveal=reveal_id, sealer=sealer),
        "id_number_masked": not reveal_id,
        "birth_date": elder.birth_date.isoformat() if elder.birth_date else None,
        "district": names.get("district"),
        "street": names.get("street"),
        "community": names.get("community"),
        "economic_status": elder.economic_status,
        "economic_status_label": ECONOMIC_STATUSES.get(elder.economic_status, elder.economic_status),
        "chronic_conditions": elder.chronic_conditions,
        "allergies": elder.allergies,
        "steward_name": elder.steward_name,
        "steward_phone": elder.steward_phone,
        "steward_phone_display": display_phone(elder.steward_phone) if elder.steward_phone else "",
        "subsidy_balance": str(elder.subsidy_balance),
        "notes": elder.notes,
        "deactivated_reason": elder.deactivated_reason,
        "phones": [phone_dict(row) for row in elders_service.phones_of(session=session, elder_id=elder.id)],
        "emergency_contacts": [contact_dict(row) for row in elders_service.contacts_of(session=session, elder_id=elder.id)],
    }


# --- audit: old and new values of a change, masked where sensitive ---------------------------

HEALTH_FIELDS = ("chronic_conditions", "allergies")  # health data: PIPL's sensitive personal information
PHONE_FIELDS = ("steward_phone",)


def mask_phone(e164: str) -> str:
    """+8613512345678 → +86135****5678: enough to tell two numbers apart, not to dial one."""
    return e164[:-8] + "****" + e164[-4:] if len(e164) > 8 else "****"


def audit_value(name: str, value):
    """A field's value as an audit entry keeps it: the ID number masked (the service gives it so),
    health data hidden (only that there was some and its length), phone numbers masked."""
    if value is None or value == "":
        return value
    if name in HEALTH_FIELDS:
        return f"已隐藏（{len(str(value))} 字）"
    if name in PHONE_FIELDS:
        return mask_phone(str(value))
    if isinstance(value, list):
        return list(value)
    if isinstance(value, (bool, int)):
        return value
    return str(value)


def audit_changes(changes: dict[str, tuple]) -> dict:
    """{field: (old, new)} → the audit entry's detail: the fields and their old and new values."""
    return {"fields": list(changes),
            "changes": {name: {"old": audit_value(name, old), "new": audit_value(name, new)} for name, (old, new) in changes.items()}}
