"""What comes in through the API and the importer. Codes are checked in `service.validate`,
which names each bad field in Chinese; these models only fix the shape."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import BaseModel, Field


class PhoneIn(BaseModel):
    number: str
    relation: str = "self"
    owner_name: str = ""
    is_primary: bool = False


class ContactIn(BaseModel):
    name: str = Field(min_length=1, max_length=50)
    relation: str = "relative"
    phone: str
    priority: int = 1
    note: str = ""


class ElderFields(BaseModel):
    """Every scalar field of a profile; all optional so it also serves partial updates."""

    name: str | None = Field(default=None, max_length=50)
    id_number: str | None = None
    gender: str | None = None
    birth_date: date | None = None
    community_id: int | None = None
    address: str | None = Field(default=None, max_length=255)
    living_situation: str | None = None
    economic_status: str | None = None
    ability_level: str | None = None
    chronic_conditions: str | None = Field(default=None, max_length=500)
    allergies: str | None = Field(default=None, max_length=500)
    steward_name: str | None = Field(default=None, max_length=50)
    steward_phone: str | None = None
    subsidy_balance: Decimal | None = None
    risk_flags: list[str] | None = None
    notes: str | None = Field(default=None, max_length=2000)


class ElderIn(ElderFields):
    name: str = Field(min_length=1, max_length=50)
    phones: list[PhoneIn] = []
    emergency_contacts: list[ContactIn] = []


class ElderUpdate(ElderFields):
    pass


class DeactivateIn(BaseModel):
    reason: str = Field(min_length=1, max_length=200)
