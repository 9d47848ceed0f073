"""The work orders' part of purpose-bound access (callcenter/elders/access.py): an open order on the
elder that the user created, or that waits on the agents' shared list (the callback, 回访)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from callcenter.auth.models import User
from callcenter.elders.access import Grant, Purpose
from workorders.models import OPEN, OrderStatus, WorkOrder

SHARED = (OrderStatus.COMPLETED,)  # completed orders wait for any agent's callback (workorders.service.callbacks_due)


def open_order(*, session: Session, user: User, elder_id: int, now: datetime) -> Grant | None:
    """The newest open order on the elder that is `user`'s or on every agent's list."""
    row = session.exec(select(WorkOrder.id).where(WorkOrder.elder_id == elder_id, WorkOrder.status.in_(OPEN),
                                                  (WorkOrder.created_by == user.id) | WorkOrder.status.in_(SHARED))
                       .order_by(WorkOrder.created_at.desc()).limit(1)).first()
    return Grant(Purpose.ORDER, row) if row is not None else None


def open_orders_of(*, session: Session, elder_id: int) -> list[WorkOrder]:
    """Every order on the elder still somebody's work (erasure waits for them)."""
    return list(session.exec(select(WorkOrder).where(WorkOrder.elder_id == elder_id, WorkOrder.status.in_(OPEN))))
