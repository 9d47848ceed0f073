"""The elder's subsidy (政府购买服务补贴): checked when an order is made, drawn when it is completed.

An order for a government-purchased service commits `unit_cost` of the elder's balance. It is
refused when the balance, less what the elder's other open orders have committed, cannot pay
for it, unless a supervisor approves the overdraw. The draw at completion is a conditional
UPDATE (balance >= cost, or approved), so two completions at once cannot overdraw between them;
each draw writes a ledger row with the balance after it.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, or_, update
from sqlmodel import Session, select

from callcenter.auth.models import User
from callcenter.elders.models import Elder
from callcenter.elders import service as elders_service
from callcenter.errors import Conflict
from workorders.models import COMMITTED, ServiceType, SubsidyLedger, WorkOrder



class SubsidyOverdraw(Conflict):
    pass


def applies(kind: ServiceType, *, self_paid: bool) -> bool:
    """Whether an order of this kind draws on the subsidy."""
    return kind.government_purchased and kind.unit_cost > 0 and not self_paid


def committed(*, session: Session, elder_id: int, exclude_order_id: int | None = None) -> Decimal:
    """What the elder's open, not self-paid, government-purchased orders will draw."""
    query = (select(func.coalesce(func.sum(ServiceType.unit_cost), 0)).select_from(WorkOrder)
             .join(ServiceType, ServiceType.code == WorkOrder.service_type)
             .where(WorkOrder.elder_id == elder_id, WorkOrder.status.in_(COMMITTED), ServiceType.government_purchased,
                    WorkOrder.self_paid.is_(False), WorkOrder.subsidy_amount.is_(None)))
    if exclude_order_id is not None:
        query = query.where(WorkOrder.id != exclude_order_id)
    return Decimal(session.exec(query).one())


def check_new_order(*, session: Session, elder: Elder, kind: ServiceType, approved: bool) -> None:
    """Refuse an order the balance cannot pay for (after the elder's open orders), unless approved."""
    pending = committed(session=session, elder_id=elder.id)
    if approved or elder.subsidy_balance - pending >= kind.unit_cost:
        return
    raise SubsidyOverdraw(f"补贴余额不足：余额 {elder.subsidy_balance} 元，未结算工单已占用 {pending} 元，本次{kind.name} "
                          f"{kind.unit_cost} 元。可改为自费，或请班长批准超额使用补贴。")


def draw(*, session: Session, order: WorkOrder, kind: ServiceType) -> SubsidyLedger | None:
    """Draw the order's cost from the elder's balance (at completion); the ledger row, or None
    when the service is not subsidised. SubsidyOverdraw when the balance cannot pay and no
    supervisor approved."""
    if not applies(kind, self_paid=order.self_paid):
        return None
    cost = kind.unit_cost
    approved = order.overdraw_approved_by is not None
    moved = session.execute(update(Elder).where(Elder.id == order.elder_id, or_(Elder.subsidy_balance >= cost, approved))
                            .values(subsidy_balance=Elder.subsidy_balance - cost)).rowcount
    balance = session.exec(select(Elder.subsidy_balance).where(Elder.id == order.elder_id)).one()
    if moved != 1:
        raise SubsidyOverdraw(f"老人补贴余额不足（余额 {balance} 元，本次{kind.name} {cost} 元），不能结算；"
                              "请联系热线由班长批准超额后再完成。")
    order.subsidy_amount = cost
    session.add(order)
    entry = SubsidyLedger(elder_id=order.elder_id, order_id=order.id, service_type=kind.code, amount=-cost, balance_after=balance,
                          overdraw_approved_by=order.overdraw_approved_by,
                          note=f"{order.number} {kind.name}" + ("（班长批准超额）" if balance < 0 else ""))
    session.add(entry)
    session.flush()
    return entry


def approve_overdraw(*, session: Session, order: WorkOrder, supervisor: User) -> WorkOrder:
    order.overdraw_approved_by = supervisor.id
    session.add(order)
    session.flush()
    return order


def adjust(*, session: Session, elder_id: int, amount: Decimal, note: str) -> tuple[Decimal, SubsidyLedger]:
    """A supervisor's grant (positive) or correction (negative) of an elder's balance, the one way
    besides a service's draw that moves it; never below zero. (balance before, ledger row)."""
    elder = elders_service.get_or_raise(session=session, elder_id=elder_id)
    before = elder.subsidy_balance
    moved = session.execute(update(Elder).where(Elder.id == elder_id, Elder.subsidy_balance + amount >= 0)
                            .values(subsidy_balance=Elder.subsidy_balance + amount)).rowcount
    if moved != 1:
        raise SubsidyOverdraw(f"调整后补贴余额不能为负数（当前余额 {before} 元）")
    session.refresh(elder)
    entry = SubsidyLedger(elder_id=elder_id, amount=amount, balance_after=elder.subsidy_balance, note=f"班长调整：{note}"[:200])
    session.add(entry)
    session.flush()
    return before, entry


def ledger_of(*, session: Session, elder_id: int) -> list[SubsidyLedger]:
    return list(session.exec(select(SubsidyLedger).where(SubsidyLedger.elder_id == elder_id).order_by(SubsidyLedger.id.desc())))
