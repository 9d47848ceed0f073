"""Administrative areas: district (区) / street (街道, 乡镇) / community (社区, 村)."""

from __future__ import annotations

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

AREA_LEVELS = {"district": "区", "street": "街道", "community": "社区"}
CHILD_LEVEL = {None: "district", "district": "street", "street": "community"}


class Area(SQLModel, table=True):
    __tablename__ = "areas"
    __table_args__ = (
        UniqueConstraint("parent_id", "name", name="uq_areas_parent_name"),
        Index("ix_areas_name", "name"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    level: str = Field(max_length=16)
    parent_id: int | None = Field(default=None, foreign_key="areas.id", index=True)
    code: str | None = Field(default=None, max_length=12, description="administrative division code")
