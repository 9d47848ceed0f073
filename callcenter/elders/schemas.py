"""What comes in through the API and the importer. Codes are checked in `service.validate`,
which names each bad field in Chinese; these models only fix the shape."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from pydantic import BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError

from callcenter.inputs import Id

# Money on a profile moves only through its own audited paths (workorders/subsidy.py: a service's
# draw at completion, a supervisor's adjustment or overdraw approval), never through a profile edit.
MONEY_FIELDS = {"subsidy_balance": "补贴余额"}


class PhoneIn(BaseModel):
    number: str = Field(max_length=40)
    relation: str = Field(default="self", max_length=32)
    owner_name: str = Field(default="", max_length=50)
    is_primary: bool = False


class ContactIn(BaseModel):
    name: str = Field(min_length=1, max_length=50)
    relation: str = Field(default="relative", max_length=32)
    phone: str = Field(max_length=40)
    priority: int = Field(default=1, ge=1, le=99)
    note: str = Field(default="", max_length=200)


class ElderFields(BaseModel):
    """Every scalar field of a profile; all optional so it also serves partial updates."""

    name: str | None = Field(default=None, max_length=50)
    id_number: str | None = Field(default=None, max_length=40)
    gender: str | None = Field(default=None, max_length=16)
    birth_date: date | None = None
    community_id: Id | None = None
    address: str | None = Field(default=None, max_length=255)
    living_situation: str | None = Field(default=None, max_length=32)
    economic_status: str | None = Field(default=None, max_length=32)
    ability_level: str | None = Field(default=None, max_length=32)
    chronic_conditions: str | None = Field(default=None, max_length=500)
    allergies: str | None = Field(default=None, max_length=500)
    steward_name: str | None = Field(default=None, max_length=50)
    steward_phone: str | None = Field(default=None, max_length=40)
    risk_flags: list[Annotated[str, Field(max_length=32)]] | None = Field(default=None, max_length=20)
    notes: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="before")
    @classmethod
    def _no_money(cls, data):
        """A money field in a profile's body is refused by name (422), not silently dropped."""
        if isinstance(data, dict):
            for name, label in MONEY_FIELDS.items():
                if name in data:
                    raise PydanticCustomError("money_field", "{field}：{label}不能在档案中修改，只能经补贴台账变动（服务结算扣减、班长调整）",
                                              {"field": name, "label": label})
        return data


class ElderIn(ElderFields):
    name: str = Field(min_length=1, max_length=50)
    phones: list[PhoneIn] = Field(default=[], max_length=20)
    emergency_contacts: list[ContactIn] = Field(default=[], max_length=20)


class ElderUpdate(ElderFields):
    pass


class DeactivateIn(BaseModel):
    reason: str = Field(min_length=1, max_length=200)
