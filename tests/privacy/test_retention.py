"""Retention (issue 17): the daily purge, run by the real RQ worker as `callcenter worker` queues it
(the sweeper's kick), removes only calls, recordings and audit entries past their retention."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
import redis
from pydantic import ValidationError
from rq import SimpleWorker
from rq.job import Job
from sqlmodel import select
from typer.testing import CliRunner

from callcenter.audit.models import AuditLog
from callcenter.calls.models import CallLeg, CallRecord
from callcenter.cli import app as cli_app
from callcenter.config import Settings
from callcenter.privacy import jobs as privacy_jobs
from callcenter.privacy.models import ElderErasure
from callcenter.timeutil import utcnow
from tests.conftest import make_user
from tests.elders.test_access import add_zhang
from workorders.models import WorkOrder


@pytest.fixture
def purge(settings, services, tmp_path):
    """Run the purge as the worker does: the sweeper's kick queues it, a real RQ worker runs it;
    returns the job's counts. Retention: calls 30 days, recordings 7, audit 180."""
    configured = settings.model_copy(update={"retention_call_days": 30, "retention_recording_days": 7, "retention_audit_days": 180,
                                             "recordings_dir": tmp_path / "monitor"})
    privacy_jobs.configure(configured)
    connection = redis.Redis.from_url(settings.redis_url)

    def run() -> dict | None:
        connection.delete(privacy_jobs.PURGE_FLAG)  # a day has passed since the last kick
        assert privacy_jobs.kick(connection) is True
        assert privacy_jobs.kick(connection) is False  # once a day, however many sweeps
        job_id = privacy_jobs.queue(connection).job_ids[0]
        SimpleWorker([privacy_jobs.queue(connection)], connection=connection).work(burst=True)
        return Job.fetch(job_id, connection=connection).return_value()

    yield run
    privacy_jobs.configure(settings)


def add_call(services, linkedid: str, days_ago: float, state: str = "ended") -> int:
    started = utcnow() - timedelta(days=days_ago)
    with services.db.session_scope() as session:
        call = CallRecord(linkedid=linkedid, direction="inbound", state=state, outcome="answered" if state == "ended" else None,
                          started_at=started, ended_at=started + timedelta(minutes=5) if state == "ended" else None,
                          caller_e164="+8613800138000")
        session.add(call)
        session.flush()
        session.add(CallLeg(call_id=call.id, seq=1, channel=f"PJSIP/8001-{linkedid}", agent_interface="PJSIP/8001",
                            connected_at=started))
        return call.id


def add_audit(services, days_ago: float, count: int = 1) -> None:
    with services.db.session_scope() as session:
        for _ in range(count):
            session.add(AuditLog(at=utcnow() - timedelta(days=days_ago), username="agent", action="view", detail={}))


def recording(folder, name: str, days_ago: float):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"RIFF")
    stamp = (utcnow() - timedelta(days=days_ago)).timestamp()
    os.utime(path, (stamp, stamp))
    return path


def test_the_purge_removes_only_what_is_past_retention(purge, services, tmp_path, monkeypatch):
    monkeypatch.setattr(privacy_jobs, "BATCH", 2)  # several batches, each its own transaction
    old_calls = [add_call(services, f"old.{n}", days_ago=40 + n) for n in range(3)]
    recent = add_call(services, "recent", days_ago=29)
    stuck = add_call(services, "stuck", days_ago=45, state="talking")  # not ended: never purged
    elder_id = add_zhang(services)
    user = make_user(services, "agent")
    with services.db.session_scope() as session:
        order = WorkOrder(number="GD20261001-0001", elder_id=elder_id, call_id=old_calls[0], service_type="meal", created_by=user.id,
                          status="closed", created_at=utcnow() - timedelta(days=40), accept_due=utcnow(), arrive_due=utcnow(),
                          complete_due=utcnow())
        session.add(order)
        session.add(ElderErasure(elder_id=elder_id, username="supervisor", reason="本人申请", at=utcnow() - timedelta(days=400)))
        session.flush()
        order_id = order.id
    add_audit(services, days_ago=200, count=5)
    add_audit(services, days_ago=170)
    folder = tmp_path / "monitor"
    old_wav, new_wav = recording(folder, "call-1.wav", 8), recording(folder, "call-2.wav", 6)
    nested = recording(folder / "2026" / "10", "call-3.WAV", 30)
    not_a_recording = recording(folder, "README.txt", 100)

    assert purge() == {"calls": 3, "audit": 5, "recordings": 2}
    with services.db.session_scope() as session:
        assert sorted(session.exec(select(CallRecord.id))) == sorted([recent, stuck])
        assert sorted(set(session.exec(select(CallLeg.call_id)))) == sorted([recent, stuck])
        assert session.get(WorkOrder, order_id).call_id is None  # the order stays, without its purged call
        assert len(session.exec(select(AuditLog).where(AuditLog.username == "agent")).all()) == 1
        assert len(session.exec(select(ElderErasure)).all()) == 1  # the record of erasures is kept
    assert (old_wav.exists(), nested.exists(), new_wav.exists(), not_a_recording.exists()) == (False, False, True, True)

    assert purge() == {"calls": 0, "audit": 0, "recordings": 0}  # twice: nothing more


def test_audit_retention_under_six_months_is_a_configuration_error(monkeypatch):
    with pytest.raises(ValidationError, match="RETENTION_AUDIT_DAYS=179 is too short: audit logs must be kept at least 180 days"):
        Settings(_env_file=None, retention_audit_days=179)
    assert Settings(_env_file=None).retention_audit_days >= 180
    monkeypatch.setenv("RETENTION_AUDIT_DAYS", "90")
    result = CliRunner().invoke(cli_app, ["db", "upgrade"])
    assert result.exit_code == 1
    assert "RETENTION_AUDIT_DAYS=90 is too short" in result.output and "Traceback" not in result.output
