"""Elder profiles (老年人档案), their phones and emergency contacts.

Codes are English (glossary in DESIGN.md); the dictionaries below give the Chinese labels shown to
users and accepted on import.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import JSON, Column, DateTime, Index, Numeric, UniqueConstraint, or_
from sqlmodel import Field, SQLModel, select

from callcenter.areas import scope as areas_scope
from callcenter.timeutil import utcnow

GENDERS = {"male": "男", "female": "女"}
LIVING_SITUATIONS = {
    "lives_alone": "独居",
    "empty_nest": "空巢",
    "left_behind": "留守",
    "with_family": "与家人同住",
    "institution": "入住养老机构",
}
ECONOMIC_STATUSES = {
    "extreme_poverty": "特困",
    "minimum_living": "低保",
    "near_minimum": "低保边缘",
    "family_planning_hardship": "计生特殊困难",
    "normal": "一般",
}
ABILITY_LEVELS = {"intact": "能力完好", "mild": "轻度失能", "moderate": "中度失能", "severe": "重度失能"}
RISK_FLAGS = {
    "fall_history": "跌倒史",
    "cognitive_impairment": "认知障碍",
    "bedridden": "长期卧床",
    "recent_discharge": "近期出院",
    "hearing_impaired": "听力障碍",
    "mental_crisis": "心理危机",
    "no_children": "无子女",
    "frequent_emergency": "多次紧急呼叫",
}
RELATIONS = {
    "self": "本人",
    "spouse": "配偶",
    "son": "儿子",
    "daughter": "女儿",
    "son_in_law": "女婿",
    "daughter_in_law": "儿媳",
    "grandchild": "孙辈",
    "sibling": "兄弟姐妹",
    "relative": "其他亲属",
    "neighbor": "邻居",
    "friend": "朋友",
    "caregiver": "护工",
    "steward": "养老服务管家",
    "other": "其他",
}


class Elder(SQLModel, table=True):
    __tablename__ = "elders"
    __table_args__ = (
        # text_pattern_ops: prefix LIKE uses the index whatever the database collation; with
        # active and id in the index, a name search never touches the table (index-only scan).
        Index("ix_elders_name", "name", "active", "id", postgresql_ops={"name": "text_pattern_ops"}),
        Index("ix_elders_name_pinyin", "name_pinyin", "active", "id", postgresql_ops={"name_pinyin": "text_pattern_ops"}),
        Index("ix_elders_name_initials", "name_initials", "active", "id", postgresql_ops={"name_initials": "text_pattern_ops"}),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50)
    name_pinyin: str = Field(max_length=200)
    name_initials: str = Field(max_length=50)
    gender: str | None = Field(default=None, max_length=8)
    birth_date: date | None = None
    id_number_hash: str | None = Field(default=None, max_length=64, unique=True)
    id_number_enc: str | None = Field(default=None, max_length=255)
    id_number_masked: str | None = Field(default=None, max_length=18)
    id_last4: str | None = Field(default=None, max_length=4, index=True)
    community_id: int | None = Field(default=None, foreign_key="areas.id", index=True)
    address: str = Field(default="", max_length=255)
    living_situation: str = Field(default="with_family", max_length=32)
    economic_status: str = Field(default="normal", max_length=32)
    ability_level: str = Field(default="intact", max_length=16)
    chronic_conditions: str = Field(default="", max_length=500)
    allergies: str = Field(default="", max_length=500)
    steward_name: str = Field(default="", max_length=50)
    steward_phone: str | None = Field(default=None, max_length=20)
    subsidy_balance: Decimal = Field(default=Decimal("0.00"), sa_column=Column(Numeric(12, 2), nullable=False))
    risk_flags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    notes: str = Field(default="", max_length=2000)
    active: bool = Field(default=True)
    deactivated_reason: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class ElderPhone(SQLModel, table=True):
    """A number that identifies the elder when it calls: the elder's own or a relative's."""

    __tablename__ = "elder_phones"
    __table_args__ = (
        UniqueConstraint("elder_id", "number", name="uq_elder_phones_elder_number"),
        # One index serves both the exact caller-ID match and "starts with" searches.
        Index("ix_elder_phones_number", "number", postgresql_ops={"number": "text_pattern_ops"}),
        Index("ix_elder_phones_number_rev", "number_rev", postgresql_ops={"number_rev": "text_pattern_ops"}),
    )

    id: int | None = Field(default=None, primary_key=True)
    elder_id: int = Field(foreign_key="elders.id", index=True, ondelete="CASCADE")
    number: str = Field(max_length=20, description="E.164")
    number_rev: str = Field(max_length=20, description="national digits reversed, for 'ends with' search")
    kind: str = Field(default="mobile", max_length=16)
    relation: str = Field(default="self", max_length=32)
    owner_name: str = Field(default="", max_length=50)
    is_primary: bool = Field(default=False)


class EmergencyContact(SQLModel, table=True):
    __tablename__ = "emergency_contacts"

    id: int | None = Field(default=None, primary_key=True)
    elder_id: int = Field(foreign_key="elders.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=50)
    relation: str = Field(default="relative", max_length=32)
    phone: str = Field(max_length=20, index=True, description="E.164")
    priority: int = Field(default=1)
    note: str = Field(default="", max_length=200)


def elders_within(scope: areas_scope.Scope):
    """SELECT of the ids of the elders `scope` sees (the other models' criteria use it)."""
    return select(Elder.id).where(elder_within(scope))


def elder_within(scope: areas_scope.Scope):
    """Living in the scope's communities, or on the line with its agent now."""
    return or_(areas_scope.any_of(Elder.community_id, scope.communities), areas_scope.any_of(Elder.id, scope.callers))


areas_scope.register(Elder, elder_within)
areas_scope.register(ElderPhone, lambda scope: ElderPhone.elder_id.in_(elders_within(scope)))
areas_scope.register(EmergencyContact, lambda scope: EmergencyContact.elder_id.in_(elders_within(scope)))
