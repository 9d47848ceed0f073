"""Audit log: who looked at or changed which elder's data, and when."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, DateTime, Index
from sqlmodel import Field, SQLModel

from callcenter.timeutil import utcnow


class AuditLog(SQLModel, table=True):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_elder_at", "elder_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
    user_id: int | None = Field(default=None, foreign_key="users.id", index=True)
    username: str = Field(max_length=64, description="kept even if the account is renamed")
    action: str = Field(max_length=32)
    elder_id: int | None = Field(default=None, foreign_key="elders.id")
    detail: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    ip: str | None = Field(default=None, max_length=64)
