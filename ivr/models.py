"""The IVR's tables: the settings supervisors edit, and the callback requests callers leave."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, DateTime, Index
from sqlmodel import Field, SQLModel

from callcenter.areas import scope as areas_scope
from callcenter.elders.models import elders_within
from callcenter.timeutil import utcnow
from callcenter.vocabulary import Vocabulary

CALLBACK_REASONS = {"after_hours": "非工作时间来电", "busy": "坐席忙"}


class CallbackStatus(Vocabulary):
    WAITING = "waiting", "待回电"
    DONE = "done", "已回电"
    UNREACHED = "unreached", "未联系上"
    CANCELLED = "cancelled", "已取消"


FINISHED_CALLBACKS = tuple(status for status in CallbackStatus if status != CallbackStatus.WAITING)  # how an agent closes one


class IvrSetting(SQLModel, table=True):
    """One row per part of the IVR configuration (`menu`, `hours`, `prompts`), over the menu file's
    defaults. `version` goes up with every save, so a page saved from a stale copy is refused."""

    __tablename__ = "ivr_settings"

    key: str = Field(primary_key=True, max_length=16)
    value: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    version: int = 1
    updated_by: int | None = Field(default=None, foreign_key="users.id")
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class CallbackRequest(SQLModel, table=True):
    """A caller asked to be called back (out of hours, or nobody free): a task on the agents'
    callback list from `due_at` (the centre's next opening). One waiting request per number:
    calling again adds to `requests` instead of making another task."""

    __tablename__ = "callback_requests"
    __table_args__ = (Index("ix_callback_requests_waiting", "status", "due_at"),)

    id: int | None = Field(default=None, primary_key=True)
    caller_number: str = Field(max_length=40, description="as the trunk delivered it")
    caller_e164: str | None = Field(default=None, max_length=20, index=True)
    elder_id: int | None = Field(default=None, foreign_key="elders.id", index=True)
    call_linkedid: str | None = Field(default=None, max_length=64, description="the call that asked (Linkedid)")
    reason: str = Field(max_length=16)
    requests: int = 1
    status: str = Field(default=CallbackStatus.WAITING, max_length=16)
    requested_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    due_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    handled_by: int | None = Field(default=None, foreign_key="users.id")
    handled_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    note: str = Field(default="", max_length=500)


areas_scope.register(CallbackRequest, lambda scope: CallbackRequest.elder_id.in_(elders_within(scope)))
