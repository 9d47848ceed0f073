"""Shared by the notification tests: the notify jobs configured for one gateway (and back to
the outbox after the test), a real RQ worker draining the `notify` queue, messages' rows."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from rq import SimpleWorker
from sqlmodel import select

from callcenter.notify import jobs as notify_jobs
from callcenter.notify.models import OutboxMessage
from tests.notify import fake_smsc, fake_tencent_sms
from tests.workorders.conftest import city, rq_redis, scheduled_jobs_due_now  # noqa: F401  (fixtures)
from workorders import jobs as order_jobs

TENCENT_TEMPLATES = {"order_dispatched_provider": "2000001", "order_dispatched_provider_nolink": "2000002",
                     "order_dispatched_elder": "2000003", "visitor_login_link": "2000004"}


@pytest.fixture
def configure_notify(settings):
    """`configure_notify(**settings)`: the notify jobs of this process use these settings."""
    def configure(**changes):
        configured = settings.model_copy(update=changes)
        notify_jobs.configure(configured)
        return configured

    yield configure
    notify_jobs.configure(settings)


@pytest.fixture
def tencent(configure_notify, rq_redis):  # noqa: F811
    with fake_tencent_sms.FakeTencentSms({TENCENT_TEMPLATES[k]: n for k, n in (("order_dispatched_provider", 4),
                                          ("order_dispatched_provider_nolink", 3), ("order_dispatched_elder", 4),
                                          ("visitor_login_link", 4))}) as server:
        configure_notify(**tencent_settings(server.endpoint))
        yield server


def tencent_settings(endpoint: str) -> dict:
    return dict(sms_gateway="tencent", tencent_sms_secret_id=fake_tencent_sms.SECRET_ID,
                tencent_sms_secret_key=SecretStr(fake_tencent_sms.SECRET_KEY), tencent_sms_app_id=fake_tencent_sms.APP_ID,
                sms_sign_name=fake_tencent_sms.SIGN_NAME, sms_template_ids=TENCENT_TEMPLATES, tencent_sms_endpoint=endpoint)


@pytest.fixture
def smsc(configure_notify, rq_redis):  # noqa: F811
    with fake_smsc.FakeSmsc() as server:
        configure_notify(**smpp_settings(server.port))
        yield server


def smpp_settings(port: int) -> dict:
    return dict(sms_gateway="smpp", smpp_host="127.0.0.1", smpp_port=port, smpp_system_id=fake_smsc.SYSTEM_ID,
                smpp_password=SecretStr(fake_smsc.PASSWORD), smpp_receipt_wait_seconds=10.0)


def route_and_send(connection) -> None:
    """The work-order worker routes (and kicks the sender), then the notify worker sends."""
    SimpleWorker([order_jobs.queue(connection)], connection=connection).work(burst=True)
    send(connection)


def send(connection) -> None:
    SimpleWorker([notify_jobs.queue(connection)], connection=connection).work(burst=True)


def retries_due_now(connection) -> int:
    """Time control: the scheduled retries are due now (no sleeping through the back-off)."""
    return scheduled_jobs_due_now(notify_jobs.queue(connection))


def messages(services) -> list[OutboxMessage]:
    with services.db.session_scope() as session:
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)))
