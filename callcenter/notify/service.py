"""Notifications: written by `Notifier` in the caller's transaction, sent after the commit by
the jobs (notify/jobs.py) through these steps, each its own short transaction:

- `claim`: a compare-and-set UPDATE queued/retrying → sending (attempts + 1). Of two workers
  given the same message only one gets it, so nothing is sent twice.
- the gateway sends, with no database connection held;
- `record_sent` / `record_failure`: compare-and-set on (sending, that attempt), so a worker that
  lost its claim (a stale one released by the sweeper) cannot overwrite a later attempt;
- `record_receipts`: delivery reports mark messages delivered (or failed).

The caller owns the transaction: these functions flush, never commit."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, select

from callcenter.errors import FieldErrors
from callcenter.notify import templates
from callcenter.notify.gateways.base import Outgoing, Receipt, Sent
from callcenter.notify.models import CLAIMABLE, Channel, MessageStatus, OutboxMessage, Recipient
from callcenter.timeutil import utcnow

TABLE = OutboxMessage.__table__


class Notifier:
    """Writes notifications into the outbox (in the caller's transaction), each on its
    recipient's channel. How each phone wants to be told is read once per Notifier (`prefetch`
    reads many in one query: routing a batch of orders)."""

    def __init__(self, *, session: Session):
        self.session = session
        self.recipients: dict[str, Recipient | None] = {}

    def prefetch(self, phones: Iterable[str]) -> None:
        wanted = {phone for phone in phones if phone and phone not in self.recipients}
        if wanted:
            self.recipients.update(dict.fromkeys(wanted))
            for row in self.session.exec(select(Recipient).where(Recipient.phone.in_(wanted))):
                self.recipients[row.phone] = row

    def notify(self, kind: str, *, to: str, values: dict, order_id: int | None = None, provider_id: int | None = None) -> OutboxMessage:
        """Queue one notification of `kind` (templates.KINDS) with `values` for the owner of phone `to`."""
        template = templates.kind_or_raise(kind)
        values = templates.values_for(template, values)
        self.prefetch([to])
        channel, address = channel_for(self.recipients[to], phone=to)
        now = utcnow()
        message = OutboxMessage(to=to, kind=template.name, params=values, text=template.render(values)[:500], channel=channel,
                                address=address, status=MessageStatus.SKIPPED if channel == Channel.NONE else MessageStatus.QUEUED,
                                next_attempt_at=now, created_at=now, order_id=order_id, provider_id=provider_id)
        self.session.add(message)
        return message


def channel_for(recipient: Recipient | None, *, phone: str) -> tuple[str, str]:
    """(channel, address): WeChat when asked for and the openid is known, nothing when asked
    for, else SMS to the phone (the default, and the fallback of WeChat without an openid)."""
    if recipient is not None and recipient.channel == Channel.NONE:
        return Channel.NONE, ""
    if recipient is not None and recipient.channel == Channel.WECHAT and recipient.wechat_openid:
        return Channel.WECHAT, recipient.wechat_openid
    return Channel.SMS, phone


def set_recipient(*, session: Session, phone: str, channel: str, wechat_openid: str | None = None) -> Recipient:
    """How the owner of `phone` (E.164) wants notifications."""
    if channel not in Channel.labels():
        raise FieldErrors.single("channel", f"通知方式无效：{channel}（可选：{Channel.choices()}）")
    if channel == Channel.WECHAT and not (wechat_openid or "").strip():
        raise FieldErrors.single("wechat_openid", "选择微信通知须填写该用户的 openid")
    row = session.get(Recipient, phone) or Recipient(phone=phone)
    row.channel, row.wechat_openid, row.updated_at = channel, (wechat_openid or "").strip() or None, utcnow()
    session.add(row)
    session.flush()
    return row


# --- sending --------------------------------------------------------------------------------------

def claim(*, session: Session, message_id: int, now: datetime) -> tuple[Outgoing, str, int] | None:
    """Take the message for sending: (what to send, its channel, this attempt's number), or
    None when it is not waiting to be sent (sent, failed, or another worker has it)."""
    claimed = session.connection().execute(
        update(TABLE).where(TABLE.c.id == message_id, TABLE.c.status.in_(CLAIMABLE))
        .values(status=MessageStatus.SENDING, attempts=TABLE.c.attempts + 1, claimed_at=now)).rowcount
    if claimed != 1:
        return None
    row = session.connection().execute(select(TABLE).where(TABLE.c.id == message_id)).one()
    outgoing = Outgoing(id=row.id, kind=row.kind, params=row.params or {}, text=row.text, address=row.address or row.to)
    return outgoing, row.channel, row.attempts


def _while_sending(message_id: int, attempt: int):
    return update(TABLE).where(TABLE.c.id == message_id, TABLE.c.status == MessageStatus.SENDING, TABLE.c.attempts == attempt)


def record_sent(*, session: Session, message_id: int, attempt: int, gateway: str, sent: Sent, now: datetime) -> bool:
    delivered = {"status": MessageStatus.DELIVERED, "delivered_at": now} if sent.delivered else {"status": MessageStatus.SENT}
    values = {"gateway": gateway, "provider_message_id": sent.provider_message_id[:64], "sent_at": now, "error": "", **delivered}
    return session.connection().execute(_while_sending(message_id, attempt).values(**values)).rowcount == 1


def next_step(*, attempt: int, permanent: bool, max_attempts: int, retry_seconds: list[int]) -> int | None:
    """Seconds until the next attempt after attempt number `attempt` failed, or None: give up."""
    if permanent or attempt >= max_attempts:
        return None
    return retry_seconds[min(attempt, len(retry_seconds)) - 1]


def record_failure(*, session: Session, message_id: int, attempt: int, gateway: str, error: str, retry_in: int | None,
                   now: datetime) -> bool:
    """`retry_in` seconds: retrying then; None: failed for good."""
    values = {"gateway": gateway, "error": error[:500]}
    if retry_in is None:
        values["status"] = MessageStatus.FAILED
    else:
        values.update(status=MessageStatus.RETRYING, next_attempt_at=now + timedelta(seconds=retry_in))
    return session.connection().execute(_while_sending(message_id, attempt).values(**values)).rowcount == 1


def record_receipts(*, session: Session, gateway: str, receipts: Iterable[Receipt], now: datetime) -> int:
    """Mark the messages the reports name delivered (or failed, with the report's words); how
    many changed. A report for an unknown id (another system on the account) is ignored."""
    changed = 0
    for receipt in receipts:
        values = ({"status": MessageStatus.DELIVERED, "delivered_at": now} if receipt.delivered
                  else {"status": MessageStatus.FAILED, "error": f"未送达（回执：{receipt.detail}）"[:500]})
        changed += session.connection().execute(
            update(TABLE).where(TABLE.c.provider_message_id == receipt.provider_message_id, TABLE.c.gateway == gateway,
                                TABLE.c.status == MessageStatus.SENT).values(**values)).rowcount
    return changed


def due_messages(*, session: Session, now: datetime, limit: int = 500) -> list[int]:
    """Messages waiting to be sent whose time has come, oldest first."""
    query = (select(OutboxMessage.id).where(OutboxMessage.status.in_(CLAIMABLE), OutboxMessage.next_attempt_at <= now)
             .order_by(OutboxMessage.id).limit(limit))
    return list(session.exec(query))


def release_stale(*, session: Session, now: datetime, lease: timedelta, max_attempts: int) -> int:
    """Messages left `sending` longer than `lease` (their worker died mid-send): tried again
    (the provider may have taken it: at worst the recipient gets it twice) or, after the last
    attempt, failed. How many were released."""
    stale = TABLE.c.status == MessageStatus.SENDING, TABLE.c.claimed_at < now - lease
    failed = session.connection().execute(update(TABLE).where(*stale, TABLE.c.attempts >= max_attempts).values(
        status=MessageStatus.FAILED, error="发送中断（工作进程停止），已达最多尝试次数")).rowcount
    retried = session.connection().execute(update(TABLE).where(*stale).values(
        status=MessageStatus.RETRYING, next_attempt_at=now, error="发送中断（工作进程停止），重试")).rowcount
    return failed + retried


# --- reading ------------------------------------------------------------------------------------------

def outbox(*, session: Session, order_id: int | None = None, page: int = 1, page_size: int = 50) -> list[OutboxMessage]:
    """The outbox, newest first (of one order when `order_id` is given)."""
    query = select(OutboxMessage)
    if order_id is not None:
        query = query.where(OutboxMessage.order_id == order_id)
    return list(session.exec(query.order_by(OutboxMessage.id.desc()).offset((page - 1) * page_size).limit(page_size)))
