"""Each gateway, through the real RQ worker path: an order created over HTTP is routed by the
work-order worker, whose commit kicks the sender; a SimpleWorker on the `notify` queue sends the
messages to a local server speaking the provider's protocol (tests/notify/fake_*.py)."""

from __future__ import annotations

from tests.notify.conftest import TENCENT_TEMPLATES, messages, retries_due_now, route_and_send, send, smpp_settings
from tests.workorders.conftest import new_order, order_row
from callcenter.notify import jobs as notify_jobs


def test_the_default_outbox_gateway_marks_messages_sent_and_the_outbox_shows_them(services, supervisor_client, console, city,
                                                                                   rq_redis):
    order_id = new_order(console, city["elder"])
    route_and_send(rq_redis)
    sent = messages(services)
    assert [(m.to, m.status, m.gateway, m.attempts) for m in sent] == [("+8613900000001", "sent", "outbox", 1),
                                                                          ("+8613800138000", "sent", "outbox", 1)]
    outbox = supervisor_client.get("/api/sms-outbox", params={"order_id": order_id}).json()
    assert {(m["status_label"], m["channel_label"], m["kind"]) for m in outbox} == {
        ("已发送", "短信", "order_dispatched_provider"), ("已发送", "短信", "order_dispatched_elder")}
    assert all(m["sent_at"] for m in outbox)
    # The provider's SMS carries a one-time login link: whoever reads the outbox must not be able to spend it.
    dispatched = next(m for m in outbox if m["kind"] == "order_dispatched_provider")
    token = next(m.text for m in sent if m.kind == "order_dispatched_provider").split("/m/link/")[1].split()[0]
    assert "/m/link/（一次性登录链接，已隐藏）" in dispatched["text"] and token not in dispatched["text"]


def test_tencent_cloud_sms_sends_the_templates_through_the_sdk_and_pulls_the_receipts(services, console, city, rq_redis, tencent):
    order_id = new_order(console, city["elder"])
    route_and_send(rq_redis)
    order = order_row(services, order_id)
    provider_sms, elder_sms = messages(services)
    assert [(m.status, m.gateway) for m in (provider_sms, elder_sms)] == [("sent", "tencent"), ("sent", "tencent")]
    by_phone = {row["phone"]: row for row in tencent.sent}
    provider_sent, elder_sent = by_phone["+8613900000001"], by_phone["+8613800138000"]
    assert provider_sent["template"] == TENCENT_TEMPLATES["order_dispatched_provider"]
    assert provider_sent["values"][:3] == [order.number, "助餐", "60"] and "/m/link/" in provider_sent["values"][3]
    assert elder_sent["values"] == ["助餐", order.number, "乐龄", order.confirm_code]
    assert (provider_sms.provider_message_id, elder_sms.provider_message_id) == (provider_sent["serial"], elder_sent["serial"])
    assert provider_sent["session"] == str(provider_sms.id)

    rq_redis.delete(notify_jobs.SEND_KICK)
    notify_jobs.queue(rq_redis).enqueue(notify_jobs.poll_receipts)  # as the sweep does every minute
    send(rq_redis)
    assert [(m.status, m.delivered_at is not None) for m in messages(services)] == [("delivered", True), ("delivered", True)]


def test_tencent_transient_errors_are_retried_with_back_off_then_fail(services, console, city, rq_redis, tencent,
                                                                      configure_notify):
    from tests.notify.conftest import tencent_settings

    configure_notify(**tencent_settings(tencent.endpoint), notify_max_attempts=3, notify_retry_seconds=[30, 120])
    tencent.errors = ["InternalError.Timeout"] * 6  # both messages, three attempts each
    new_order(console, city["elder"])
    route_and_send(rq_redis)
    assert [(m.status, m.attempts) for m in messages(services)] == [("retrying", 1), ("retrying", 1)]
    assert retries_due_now(rq_redis) == 2
    send(rq_redis)
    assert [(m.status, m.attempts) for m in messages(services)] == [("retrying", 2), ("retrying", 2)]
    assert retries_due_now(rq_redis) == 2
    send(rq_redis)
    final = messages(services)
    assert [(m.status, m.attempts) for m in final] == [("failed", 3), ("failed", 3)]
    assert all("InternalError.Timeout" in m.error for m in final)
    assert retries_due_now(rq_redis) == 0 and tencent.sent == []


def test_a_permanent_error_fails_at_once_and_a_transient_one_recovers(services, console, city, rq_redis, tencent):
    tencent.bad_numbers["+8613800138000"] = "FailedOperation.PhoneNumberInBlacklist"  # the elder's phone
    tencent.errors = ["RequestLimitExceeded"]  # the first request: throttled
    new_order(console, city["elder"])
    route_and_send(rq_redis)
    provider_sms, elder_sms = messages(services)
    assert (elder_sms.status, elder_sms.attempts) == ("failed", 1) and "PhoneNumberInBlacklist" in elder_sms.error
    assert (provider_sms.status, provider_sms.attempts) == ("retrying", 1) and "RequestLimitExceeded" in provider_sms.error
    retries_due_now(rq_redis)
    send(rq_redis)
    provider_sms = messages(services)[0]
    assert (provider_sms.status, provider_sms.attempts, provider_sms.error) == ("sent", 2, "")


def test_smpp_sends_long_chinese_texts_in_ucs2_parts_and_reads_the_delivery_receipt(services, console, city, rq_redis, smsc):
    new_order(console, city["elder"])
    route_and_send(rq_redis)
    provider_sms, elder_sms = messages(services)
    received = {m["to"]: m for m in smsc.messages}
    assert received["8613900000001"]["text"] == provider_sms.text and received["8613800138000"]["text"] == elder_sms.text
    assert {m["data_coding"] for m in smsc.messages} == {8}  # UCS-2
    assert received["8613900000001"]["parts"] > 1 and len(provider_sms.text) > 70  # concatenated (UDH)
    assert received["8613900000001"]["from"] == "12349"
    assert [(m.status, m.gateway) for m in (provider_sms, elder_sms)] == [("delivered", "smpp"), ("delivered", "smpp")]
    assert provider_sms.provider_message_id == received["8613900000001"]["message_ids"][0]
    assert smsc.binds == ["transceiver", "transceiver"] and smsc.unbinds == 2


def test_smpp_throttling_is_retried_and_a_late_receipt_is_collected_by_the_receipt_poll(services, console, city, rq_redis, smsc,
                                                                                         configure_notify):
    # Each send waits its whole receipt wait for a receipt the SMSC holds back: a short one here.
    configure_notify(**smpp_settings(smsc.port) | {"smpp_receipt_wait_seconds": 1.0})
    smsc.submit_statuses = [0x58]  # ESME_RTHROTTLED for the first submit_sm
    smsc.hold_receipts = True
    new_order(console, city["elder"])
    route_and_send(rq_redis)
    statuses = sorted((m.status, m.attempts) for m in messages(services))
    assert statuses == [("retrying", 1), ("sent", 1)]
    assert "0x00000058" in next(m.error for m in messages(services) if m.status == "retrying")
    retries_due_now(rq_redis)
    send(rq_redis)
    assert sorted((m.status, m.attempts) for m in messages(services)) == [("sent", 1), ("sent", 2)]
    smsc.hold_receipts = False  # the SMSC hands the receipts to the next bind
    notify_jobs.queue(rq_redis).enqueue(notify_jobs.poll_receipts)
    send(rq_redis)
    assert [m.status for m in messages(services)] == ["delivered", "delivered"]
    assert smsc.binds[-1] == "receiver"


def test_an_undelivered_receipt_fails_the_message(services, console, city, rq_redis, smsc):
    smsc.receipt_state = "UNDELIV"
    new_order(console, city["elder"])
    route_and_send(rq_redis)
    assert [m.status for m in messages(services)] == ["failed", "failed"]
    assert all("UNDELIV" in m.error for m in messages(services))
