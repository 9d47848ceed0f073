"""The record of each erasure: who anonymised which elder, when and why. A table of its own, kept
when audit log entries are purged after their retention."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, DateTime
from sqlmodel import Field, SQLModel

from callcenter.areas import scope as areas_scope
from callcenter.elders.models import elders_within
from callcenter.timeutil import utcnow


class ElderErasure(SQLModel, table=True):
    __tablename__ = "elder_erasures"

    id: int | None = Field(default=None, primary_key=True)
    elder_id: int = Field(foreign_key="elders.id", index=True, description="the anonymised elder (the row stays)")
    at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    user_id: int | None = Field(default=None, foreign_key="users.id")
    username: str = Field(max_length=64, description="kept even if the account is renamed")
    reason: str = Field(max_length=500, description="why: the elder's or guardian's request, as stated")
    request_ref: str = Field(default="", max_length=64, description="the request's reference (申请编号), if any")
    counts: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False),
                         description="what was cleared: phones, contacts, calls, orders, callback requests, audit entries")


areas_scope.register(ElderErasure, lambda scope: ElderErasure.elder_id.in_(elders_within(scope)))
