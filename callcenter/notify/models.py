"""The outbox (`sms_outbox`: every notification, whatever its channel) and how each recipient
wants to be told (`notify_recipients`).

A message is written in the transaction of the change it announces and sent after the commit
by an RQ job (notify/jobs.py):

    queued ─→ sending ─→ sent ─→ delivered (a delivery report came back)
                 │   ↖       └─→ failed (the report says it never arrived)
                 ├─→ retrying (a transient error; back-off, then sending again)
                 └─→ failed (a permanent error, or the last attempt failed)
    skipped: the recipient asked not to be notified (written all the same, for the record)

The foreign keys name the work-order tables by name only: this core domain imports nothing from
`workorders` (DESIGN.md, rule 1)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, DateTime, Index
from sqlmodel import Field, SQLModel

from callcenter.timeutil import utcnow
from callcenter.vocabulary import Vocabulary



class MessageStatus(Vocabulary):
    QUEUED = "queued", "待发送"
    SENDING = "sending", "发送中"
    RETRYING = "retrying", "等待重试"
    SENT = "sent", "已发送"
    DELIVERED = "delivered", "已送达"
    FAILED = "failed", "发送失败"
    SKIPPED = "skipped", "按偏好不发送"


CLAIMABLE = (MessageStatus.QUEUED, MessageStatus.RETRYING)  # a sender may take these


class Channel(Vocabulary):
    SMS = "sms", "短信"
    WECHAT = "wechat", "微信模板消息"
    NONE = "none", "不通知"



def _ts(**kwargs):
    return Field(default=None, sa_column=Column(DateTime(timezone=True), **kwargs))


class OutboxMessage(SQLModel, table=True):
    """One notification to one recipient: its kind and values (template-based gateways send
    these), the text as rendered (what the outbox shows), and where its sending stands."""

    __tablename__ = "sms_outbox"
    __table_args__ = (Index("ix_sms_outbox_status_next", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    to: str = Field(max_length=20, index=True, description="the recipient's phone (E.164)")
    text: str = Field(max_length=500)
    order_id: int | None = Field(default=None, foreign_key="work_orders.id", index=True)
    provider_id: int | None = Field(default=None, foreign_key="providers.id")
    status: str = Field(default=MessageStatus.QUEUED, max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    kind: str = Field(default="", max_length=40, description="templates.KINDS key")
    params: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    channel: str = Field(default="sms", max_length=16)
    address: str = Field(default="", max_length=64, description="where the channel sends it: the phone, or a WeChat openid")
    gateway: str = Field(default="", max_length=16, description="which gateway sent it (outbox, tencent, smpp, wechat)")
    attempts: int = 0
    next_attempt_at: datetime | None = _ts()
    claimed_at: datetime | None = _ts()
    sent_at: datetime | None = _ts()
    delivered_at: datetime | None = _ts()
    provider_message_id: str | None = Field(default=None, max_length=64, index=True,
                                            description="the gateway's id, matched by delivery reports")
    error: str = Field(default="", max_length=500)


class Recipient(SQLModel, table=True):
    """How one phone's owner (an elder, a relative, a provider) wants notifications: by SMS (the
    default for a phone with no row), by WeChat template message (when their openid is known),
    or not at all."""

    __tablename__ = "notify_recipients"

    phone: str = Field(primary_key=True, max_length=20, description="E.164")
    channel: str = Field(default="sms", max_length=16)
    wechat_openid: str | None = Field(default=None, max_length=64)
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
