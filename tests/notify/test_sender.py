"""The sender's rules: claims (two workers never send one message twice), the back-off, each
recipient's channel, configuration errors said clearly, the templates' texts."""

from __future__ import annotations

import multiprocessing
import os
import subprocess

import pytest
from rq import SimpleWorker
from sqlmodel import select

from callcenter.config import Settings
from callcenter.errors import FieldErrors
from callcenter.notify import gateways, service, templates
from callcenter.notify import jobs as notify_jobs
from callcenter.notify.gateways.base import GatewayConfigError
from callcenter.notify.models import OutboxMessage
from callcenter.timeutil import utcnow
from tests.notify.conftest import messages, send
from tests.test_cli import CALLCENTER
from tests.workorders.conftest import new_order, work as route_and_send_orders


def write_messages(services, count: int) -> list[int]:
    with services.db.session_scope() as session:
        notifier = service.Notifier(session=session)
        rows = [notifier.notify("order_dispatched_elder", to=f"+86138000{n:05d}",
                                values={"service": "助餐", "number": f"GD20261205-{n:04d}", "provider": "乐龄", "code": "123456"})
                for n in range(count)]
        session.flush()
        return [row.id for row in rows]


def test_a_message_is_claimed_once(services):
    [message_id] = write_messages(services, 1)
    with services.db.session_scope() as session:
        first = service.claim(session=session, message_id=message_id, now=utcnow())
        second = service.claim(session=session, message_id=message_id, now=utcnow())
    assert first is not None and first[1:] == ("sms", 1) and second is None


def _burst(redis_url: str, settings) -> None:
    """One worker process: its own engine and Redis connection (never shared across a fork)."""
    import redis

    notify_jobs.configure(settings)
    connection = redis.Redis.from_url(redis_url)
    SimpleWorker([notify_jobs.queue(connection)], connection=connection).work(burst=True)
    os._exit(0)


def test_two_workers_given_the_same_messages_send_each_once(services, settings, rq_redis, tencent, configure_notify):
    from tests.notify.conftest import tencent_settings

    configured = configure_notify(**tencent_settings(tencent.endpoint))
    ids = write_messages(services, 12)
    target = notify_jobs.queue(rq_redis)
    for _ in range(3):  # every message enqueued three times: the workers race for each
        for message_id in ids:
            target.enqueue(notify_jobs.send_message, message_id)
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_burst, args=(settings.redis_url, configured)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert sorted(int(row["session"]) for row in tencent.sent) == ids  # each message sent exactly once
    assert {(m.status, m.attempts) for m in messages(services)} == {("sent", 1)}


def test_the_back_off_follows_the_settings_and_gives_up_after_the_last_attempt():
    step = lambda attempt, permanent=False: service.next_step(attempt=attempt, permanent=permanent, max_attempts=4,  # noqa: E731
                                                               retry_seconds=[30, 120])
    assert [step(1), step(2), step(3), step(4)] == [30, 120, 120, None]
    assert step(1, permanent=True) is None


def test_each_recipient_gets_their_channel(services, console, city, rq_redis):
    with services.db.session_scope() as session:
        service.set_recipient(session=session, phone="+8613900000001", channel="wechat", wechat_openid="oWx-provider-0001")
        service.set_recipient(session=session, phone="+8613800138000", channel="none")
        with pytest.raises(FieldErrors):
            service.set_recipient(session=session, phone="+8613800138001", channel="wechat")
    new_order(console, city["elder"])
    route_and_send_orders(rq_redis)
    send(rq_redis)
    provider_msg, elder_msg = messages(services)
    assert (provider_msg.channel, provider_msg.address, provider_msg.status) == ("wechat", "oWx-provider-0001", "sent")
    assert (elder_msg.channel, elder_msg.status, elder_msg.attempts) == ("none", "skipped", 0)


def test_every_kind_renders_todays_texts():
    values = {"number": "GD20261205-0001", "service": "助餐", "minutes": 60, "link": "http://h/m/link/x"}
    assert templates.KINDS["order_dispatched_provider"].render(templates.values_for(templates.KINDS["order_dispatched_provider"], values)) \
        == "【12349】新工单 GD20261205-0001（助餐），请于 60 分钟内接单：http://h/m/link/x"
    with pytest.raises(ValueError):
        templates.values_for(templates.KINDS["order_dispatched_elder"], values)


def test_settings_that_make_no_gateway_are_named(settings):
    with pytest.raises(GatewayConfigError, match="TENCENT_SMS_SECRET_ID, TENCENT_SMS_SECRET_KEY, TENCENT_SMS_APP_ID"):
        gateways.build(Settings(_env_file=None, sms_gateway="tencent"))
    with pytest.raises(GatewayConfigError, match="SMS_TEMPLATE_IDS has no template id for order_dispatched_provider_nolink, order_dispatched_elder"):
        gateways.build(Settings(_env_file=None, sms_gateway="tencent", tencent_sms_secret_id="id", tencent_sms_secret_key="k",
                                tencent_sms_app_id="1", sms_template_ids={"order_dispatched_provider": "1"}))
    with pytest.raises(GatewayConfigError, match="SMPP_HOST"):
        gateways.build(Settings(_env_file=None, sms_gateway="smpp", smpp_system_id="x", smpp_password="p"))
    with pytest.raises(GatewayConfigError, match="WECHAT_APP_ID, WECHAT_APP_SECRET"):
        gateways.build(Settings(_env_file=None, wechat_gateway="mp"))


def test_the_worker_refuses_to_start_on_bad_gateway_settings_without_showing_secrets(settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMI_", "SMPP_", "SMS_", "TENCENT_"))}
    env |= {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url, "DATA_DIR": str(settings.data_dir),
            "SMS_GATEWAY": "smpp", "SMPP_SYSTEM_ID": "hotline", "SMPP_PASSWORD": "do-not-print-me"}
    result = subprocess.run([CALLCENTER, "worker", "--burst"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "SMS_GATEWAY=smpp needs SMPP_HOST" in result.stderr
    assert "do-not-print-me" not in result.stdout + result.stderr


def test_sweep_releases_a_message_whose_worker_died_mid_send(services, rq_redis):
    [message_id] = write_messages(services, 1)
    with services.db.session_scope() as session:
        service.claim(session=session, message_id=message_id, now=utcnow() - notify_jobs.SEND_LEASE * 2)  # claimed long ago
    notify_jobs.queue(rq_redis).enqueue(notify_jobs.sweep)
    send(rq_redis)  # the sweep releases it and sends what is due
    with services.db.session_scope() as session:
        row = session.exec(select(OutboxMessage)).one()
    assert (row.status, row.attempts) == ("sent", 2)


def test_supervisors_set_how_a_phone_is_notified(supervisor_client, console):
    assert supervisor_client.get("/api/notify/recipients/13800138000").json()["channel"] == "sms"  # the default
    answer = supervisor_client.put("/api/notify/recipients/138-0013-8000", json={"channel": "wechat", "wechat_openid": "oWx-1"})
    assert answer.status_code == 200 and answer.json() == {"phone": "+8613800138000", "channel": "wechat", "channel_label": "微信模板消息",
                                                           "wechat_openid": "oWx-1"}
    assert supervisor_client.put("/api/notify/recipients/13800138000", json={"channel": "wechat"}).status_code == 422
    assert console.get("/api/notify/recipients/13800138000").status_code == 403  # an agent
