"""Each gateway, through the real RQ worker path: an order created over HTTP is routed by the
work-order worker, whose commit kicks the sender; a SimpleWorker on the `notify` queue sends the
messages to a local server speaking the provider's protocol (tests/notify/fake_*.py)."""

from __future__ import annotations

from tests.notify.conftest import messages, route_and_send
from tests.workorders.conftest import new_order


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
