"""Work orders as shown to a person: Chinese labels, times in the centre's time zone."""

from __future__ import annotations

from callcenter.notify import models as notify_models
from callcenter.notify import templates as notify_templates
from callcenter.timeutil import local_iso
from workorders import staff as staff_service
from workorders.models import (OrderStatus, ProviderStatus, Urgency, Provider, ProviderStaff, ServiceType, SmsMessage,
                               SubsidyLedger, WorkOrder, WorkOrderEvent)


def order_dict(order: WorkOrder, tz, *, service_name: str = "", events: list[WorkOrderEvent] | None = None) -> dict:
    out = {
        "id": order.id, "number": order.number, "elder_id": order.elder_id, "call_id": order.call_id,
        "service_type": order.service_type, "service_name": service_name, "urgency": order.urgency,
        "urgency_label": Urgency.label_of(order.urgency), "status": order.status,
        "status_label": OrderStatus.label_of(order.status), "provider_id": order.provider_id, "address": order.address,
        "description": order.description, "window_start": local_iso(order.window_start, tz), "window_end": local_iso(order.window_end, tz),
        "created_at": local_iso(order.created_at, tz), "accept_due": local_iso(order.accept_due, tz),
        "arrive_due": local_iso(order.arrive_due, tz), "complete_due": local_iso(order.complete_due, tz),
        "dispatched_at": local_iso(order.dispatched_at, tz), "accepted_at": local_iso(order.accepted_at, tz),
        "arrived_at": local_iso(order.arrived_at, tz), "completed_at": local_iso(order.completed_at, tz),
        "closed_at": local_iso(order.closed_at, tz), "service_notes": order.service_notes, "service_minutes": order.service_minutes,
        "has_photo": bool(order.photo), "satisfaction": order.satisfaction, "callback_comment": order.callback_comment,
        "complaint": order.complaint, "self_paid": order.self_paid,
        "subsidy_amount": str(order.subsidy_amount) if order.subsidy_amount is not None else None,
        "overdraw_approved": order.overdraw_approved_by is not None,
        # hotline staff read the elder's confirmation code out on the phone; provider pages never show it
        "confirm_code": order.confirm_code,
    }
    if events is not None:
        out["events"] = [{"at": local_iso(e.at, tz), "actor": e.actor, "from": e.from_status, "to": e.to_status,
                          "from_label": OrderStatus.label_of(e.from_status),
                          "to_label": OrderStatus.label_of(e.to_status), "note": e.note} for e in events]
    return out


def service_type_dict(row: ServiceType) -> dict:
    return {"code": row.code, "name": row.name, "accept_minutes": row.accept_minutes, "arrive_minutes": row.arrive_minutes,
            "complete_minutes": row.complete_minutes, "government_purchased": row.government_purchased,
            "unit_cost": str(row.unit_cost), "active": row.active}


def provider_dict(row: Provider) -> dict:
    return {"id": row.id, "name": row.name, "contact_name": row.contact_name, "phone": row.phone,
            "service_types": row.service_types, "coverage": row.coverage, "daily_capacity": row.daily_capacity,
            "contract_start": row.contract_start.isoformat() if row.contract_start else None,
            "contract_end": row.contract_end.isoformat() if row.contract_end else None, "rating": str(row.rating),
            "status": row.status, "status_label": ProviderStatus.label_of(row.status),
            "status_reason": row.status_reason}


def staff_dict(row: ProviderStaff) -> dict:
    return {"id": row.id, "provider_id": row.provider_id, "name": row.name, "phone": row.phone, "active": row.active,
            "has_password": row.password_hash is not None}


def ledger_dict(row: SubsidyLedger, tz) -> dict:
    return {"id": row.id, "elder_id": row.elder_id, "order_id": row.order_id, "service_type": row.service_type,
            "amount": str(row.amount), "balance_after": str(row.balance_after), "note": row.note,
            "overdraw_approved": row.overdraw_approved_by is not None, "at": local_iso(row.at, tz)}


def sms_dict(row: SmsMessage, tz) -> dict:
    """One outbox message, with its sending status, channel and kind in Chinese."""
    kind = notify_templates.KINDS.get(row.kind)
    return {"id": row.id, "to": row.to, "text": staff_service.hide_login_links(row.text), "order_id": row.order_id, "provider_id": row.provider_id,
            "status": row.status, "status_label": notify_models.MessageStatus.label_of(row.status),
            "channel": row.channel, "channel_label": notify_models.Channel.label_of(row.channel),
            "kind": row.kind, "kind_label": kind.label if kind else "", "gateway": row.gateway, "attempts": row.attempts,
            "error": row.error, "created_at": local_iso(row.created_at, tz), "sent_at": local_iso(row.sent_at, tz),
            "delivered_at": local_iso(row.delivered_at, tz), "next_attempt_at": local_iso(row.next_attempt_at, tz)
            if row.status == "retrying" else None}
