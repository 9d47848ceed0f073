"""How each recipient wants to be notified: GET/PUT /api/notify/recipients/{phone} (supervisors).
The outbox itself is `GET /api/sms-outbox` (workorders/api.py, where it always was)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from callcenter.deps import DbSession, ServicesDep, SupervisorUser
from callcenter.errors import FieldErrors
from callcenter.notify import service
from callcenter.notify.models import Channel, Recipient
from callcenter.phones import InvalidPhoneNumber, parse_phone

router = APIRouter(tags=["notify"])


class RecipientIn(BaseModel):
    channel: Literal["sms", "wechat", "none"]
    wechat_openid: str | None = Field(default=None, max_length=64)


def _phone(raw: str, area_code: str) -> str:
    try:
        return parse_phone(raw, default_area_code=area_code).e164
    except InvalidPhoneNumber as exc:
        raise FieldErrors.single("phone", str(exc)) from exc


def _recipient_dict(phone: str, row: Recipient | None) -> dict:
    channel = row.channel if row else "sms"
    return {"phone": phone, "channel": channel, "channel_label": Channel(channel).label, "wechat_openid": row.wechat_openid if row else None}


@router.get("/api/notify/recipients/{phone}")
def get_recipient(phone: str, session: DbSession, services: ServicesDep, user: SupervisorUser):
    """How the owner of `phone` is notified (no row: by SMS)."""
    phone = _phone(phone, services.settings.city_area_code)
    return _recipient_dict(phone, session.get(Recipient, phone))


@router.put("/api/notify/recipients/{phone}")
def put_recipient(phone: str, body: RecipientIn, session: DbSession, services: ServicesDep, user: SupervisorUser):
    phone = _phone(phone, services.settings.city_area_code)
    row = service.set_recipient(session=session, phone=phone, channel=body.channel, wechat_openid=body.wechat_openid)
    return _recipient_dict(phone, row)
