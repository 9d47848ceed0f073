"""The visitors' check-in at the door (定期巡访): when, by whom, and where if the phone's browser
told us. The visit's record itself is a `CareCheck` (models.py), made when the visitor submits it,
with `checked_in_at` copied from here.

Kept apart from models.py (the lead's file while issue 18 is built); one table, registered in the
area scope like the domain's others.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, Float, select
from sqlmodel import Field, SQLModel

from callcenter.areas import scope as areas_scope
from callcenter.care.models import CareTask
from callcenter.elders.models import elders_within
from callcenter.timeutil import utcnow


class VisitCheckIn(SQLModel, table=True):
    """One per visit task: the visitor at the elder's door."""

    __tablename__ = "care_visit_checkins"

    task_id: int = Field(foreign_key="care_tasks.id", primary_key=True, ondelete="CASCADE")
    user_id: int = Field(foreign_key="users.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    latitude: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    longitude: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    accuracy_m: int | None = None  # the browser's estimate of its error, metres


areas_scope.register(VisitCheckIn, lambda scope: VisitCheckIn.task_id.in_(
    select(CareTask.id).where(CareTask.elder_id.in_(elders_within(scope)))))
