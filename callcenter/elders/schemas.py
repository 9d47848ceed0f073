"""What comes in through the API and the importer. Codes are checked in `service.validate`,
which names each bad field in Chinese; these models only fix the shape."""

from __future__ import annotations

from datetime import date
from pydantic import BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError

# Money on a profile moves only through its own audited paths (workorders/subsidy.py: a service's
# draw at completion, a supervisor's adjustment or overdraw approval), never through a profile edit.
MONEY_FIELDS = {"subsidy_balance": "补贴余额"}


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
    risk_flags: list[str] | None = None
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
    phones: list[PhoneIn] = []
    emergency_contacts: list[ContactIn] = []


class ElderUpdate(ElderFields):
    pass


class DeactivateIn(BaseModel):
    reason: str = Field(min_length=1, max_length=200)
