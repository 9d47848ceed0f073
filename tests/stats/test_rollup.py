"""The call rollup through every kind of write (a new call, its answer and end, a move to another
agent or queue taking the longest wait with it, a deletion): each write marks its hour dirty,
reports stay exact meanwhile (they read a marked hour from the calls), and summing the marked
hours again (what the bridge does a second later) leaves the rollup equal to the calls. The
bridge's writes mark their hours through the keeper it is given; a write that marks nothing (a
Core UPDATE) is found by `callcenter stats check` and repaired; the rollup table has a column per
measure."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlmodel import select
from typer.testing import CliRunner

from callcenter import cli
from callcenter.calls.bridge import Bridge
from callcenter.calls.models import CallRecord
from callcenter.stats import rollup
from callcenter.stats import service as stats_service
from callcenter.stats.measures import MEASURES, NAMES
from callcenter.stats.models import CallRollup, CallRollupDirty
from tests.stats.test_supervisor import DAY_AGENTS, DAY_KPIS, play

SH = ZoneInfo("Asia/Shanghai")

NINE = datetime(2026, 11, 20, 1, 0, tzinfo=timezone.utc)  # 09:00 in Shanghai
DAY = (NINE - timedelta(hours=9), NINE + timedelta(hours=15))


def rows(services) -> dict[tuple, tuple]:
    """Refresh as the bridge would, checking the report is the same before and after."""
    with services.db.session_scope() as session:
        assert session.exec(select(CallRollupDirty)).all(), "the write did not mark its hour"
        before = report(session)
    with services.db.session_scope() as session:
        assert rollup.refresh_dirty(session) == 1
    with services.db.session_scope() as session:
        assert session.exec(select(CallRollupDirty)).all() == []
        assert rollup.differences(session, *DAY) == []  # the rollup equals the calls summed afresh
        assert report(session) == before  # read from the rollup now, from the calls before
        return {(r.queue, r.agent): (r.offered, r.answered, r.longest_wait, r.handled, r.handle)
                for r in session.exec(select(CallRollup)) if r.offered}


def report(session) -> dict:
    day = (NINE + timedelta(hours=8)).date()
    result = stats_service.report(session=session, tz=SH, date_from=day, date_to=day, threshold=15)
    return {"total": result["total"], "by_agent": result["by_agent"], "by_hour": result["by_hour"][9]}


def write(services, linkedid: str, **values) -> None:
    """Change a call as a writer of calls must: marking its queue hour before and after."""
    with services.db.session_scope() as session:
        call = session.exec(select(CallRecord).where(CallRecord.linkedid == linkedid)).one()
        queued_before = call.queued_at
        for name, value in values.items():
            setattr(call, name, value)
        session.add(call)
        session.flush()
        rollup.mark_dirty(session, [queued_before, call.queued_at])


def test_the_rollup_follows_each_write_of_a_call(services):
    with services.db.session_scope() as session:
        waiting = CallRecord(linkedid="x", direction="inbound", state="queued", started_at=NINE, queued_at=NINE, queue="hotline")
        other = CallRecord(linkedid="y", direction="inbound", state="ended", started_at=NINE, queued_at=NINE + timedelta(minutes=5),
                           queue="hotline", outcome="abandoned", wait_seconds=20)
        session.add_all([waiting, other])
        rollup.mark_dirty(session, [waiting.queued_at, other.queued_at])
    assert rows(services) == {("hotline", ""): (2, 0, 20, 0, 0)}  # waiting: offered, no wait yet

    answered = NINE + timedelta(seconds=50)  # answered by 8001 after 50 s, talks 100 s, 10 s wrap-up
    write(services, "x", answered_at=answered, wait_seconds=50, agent_extension="8001", state="talking")
    assert rows(services) == {("hotline", ""): (1, 0, 20, 0, 0), ("hotline", "8001"): (1, 1, 50, 0, 0)}
    write(services, "x", agent_done_at=answered + timedelta(seconds=100), talk_seconds=100, outcome="answered",
          wrapup_ended_at=answered + timedelta(seconds=110))
    assert rows(services) == {("hotline", ""): (1, 0, 20, 0, 0), ("hotline", "8001"): (1, 1, 50, 1, 110)}

    write(services, "x", agent_extension="8002", queue="emergency")  # recorded against the wrong agent and queue: moved
    assert rows(services) == {("hotline", ""): (1, 0, 20, 0, 0), ("emergency", "8002"): (1, 1, 50, 1, 110)}

    with services.db.session_scope() as session:
        gone = session.exec(select(CallRecord).where(CallRecord.linkedid == "y")).one()
        session.delete(gone)
        rollup.mark_dirty(session, [gone.queued_at])
    assert rows(services) == {("emergency", "8002"): (1, 1, 50, 1, 110)}


def test_the_rollup_table_has_a_column_per_measure(services):
    """A measure added without its call_rollup column (in the model and in a migration) fails here,
    not as a report that silently reads nothing; a maximum is the only nullable figure (no wait is
    not a wait of 0 s)."""
    expected = sorted((*rollup.ROLLUP_KEYS, *NAMES))
    assert len(set(expected)) == len(expected), "a measure is named like a rollup key, or twice"
    assert sorted(CallRollup.__table__.columns.keys()) == expected
    migrated = {column["name"]: column for column in sa.inspect(services.db.engine).get_columns("call_rollup")}
    assert sorted(migrated) == expected
    assert {m.name for m in MEASURES if migrated[m.name]["nullable"]} == {m.name for m in MEASURES if m.combine == "max"}


def test_a_core_update_that_marks_nothing_is_found_by_stats_check_and_repaired(services, settings, monkeypatch):
    """The rollup is kept by its writers marking what they wrote: a Core UPDATE that does not
    (plain SQL, an import) leaves it behind, and `callcenter stats check` says where; `--repair`
    sums those hours again."""
    with services.db.session_scope() as session:
        call = CallRecord(linkedid="y", direction="inbound", state="ended", started_at=NINE, queued_at=NINE, queue="hotline",
                          outcome="abandoned", wait_seconds=20)
        session.add(call)
        rollup.mark_dirty(session, [call.queued_at])
    with services.db.session_scope() as session:
        rollup.refresh_dirty(session)
    with services.db.engine.begin() as connection:
        table = CallRecord.__table__
        connection.execute(sa.update(table).where(table.c.linkedid == "y").values(wait_seconds=95, outcome="timeout"))
    with services.db.session_scope() as session:
        assert report(session)["total"]["longest_wait_seconds"] == 20  # behind the calls: nothing marked the hour
        [(bucket, queue, agent, stored, summed)] = rollup.differences(session, *DAY)
    assert (bucket, queue, agent) == (rollup.bucket_of(NINE), "hotline", "")
    assert (stored.longest_wait, stored.abandoned, summed.longest_wait, summed.abandoned, summed.timeouts) == (20, 1, 95, 0, 1)

    for name in ("DATABASE_URL", "REDIS_URL"):
        monkeypatch.setenv(name, getattr(settings, name.lower()))
    check = CliRunner().invoke(cli.app, ["stats", "check", "--from", "2026-11-20"])
    assert check.exit_code == 1 and "queue=hotline" in check.output and "longest_wait=95" in check.output
    repair = CliRunner().invoke(cli.app, ["stats", "check", "--from", "2026-11-20", "--repair"])
    assert repair.exit_code == 0 and "repaired 1 hours" in repair.output
    assert CliRunner().invoke(cli.app, ["stats", "check", "--from", "2026-11-20"]).exit_code == 0
    with services.db.session_scope() as session:
        total = report(session)["total"]
    assert (total["longest_wait_seconds"], total["abandoned"], total["timeouts"]) == (95, 0, 1)


class MarkOnly(rollup.Keeper):
    """The bridge's keeper, but never summing again: what the bridge's writes marked stays marked."""

    def refresh(self, session) -> int:
        return 0


def test_the_bridges_writes_mark_their_hours_and_add_the_agents_time(settings, services):
    """The day of tests/stats/test_supervisor.py through the real bridge, with a keeper that never
    sums again: every hour a call entered the queue in is marked, the rollup itself is still empty,
    and the report (read from the calls through the marks) is already the hand-computed one,
    agents' occupancy included (the keeper added their stretches)."""
    play(settings, services, date(2026, 11, 20), rollups=MarkOnly(tz=settings.tz))
    with services.db.session_scope() as session:
        queued = session.exec(select(CallRecord.queued_at).where(CallRecord.queued_at.is_not(None))).all()
        assert rollup.dirty_buckets(session, 0, 2**40) == {rollup.bucket_of(at) for at in queued}
        assert session.exec(select(CallRollup)).all() == []
        report = stats_service.report(session=session, tz=SH, date_from=date(2026, 11, 20), date_to=date(2026, 11, 20), threshold=15)
        assert (report["total"], report["by_agent"]) == (DAY_KPIS, DAY_AGENTS)
        assert rollup.refresh_dirty(session) == len({rollup.bucket_of(at) for at in queued})
    with services.db.session_scope() as session:
        assert rollup.differences(session, datetime(2026, 11, 19, tzinfo=timezone.utc), datetime(2026, 11, 22, tzinfo=timezone.utc)) == []


def test_the_end_of_a_wrapup_marks_its_hour(settings, services):
    """The bridge records a wrap-up's end on its own, after the call: that write marks the call's
    hour too, and the handling time counts the wrap-up at once."""
    with services.db.session_scope() as session:
        call = CallRecord(linkedid="w", direction="inbound", state="ended", started_at=NINE, queued_at=NINE, queue="hotline",
                          outcome="answered", wait_seconds=5, answered_at=NINE + timedelta(seconds=5), talk_seconds=60,
                          agent_done_at=NINE + timedelta(seconds=65), agent_extension="8001", agent_interface="Local/8001@agents")
        session.add(call)
        rollup.mark_dirty(session, [call.queued_at])
    with services.db.session_scope() as session:
        rollup.refresh_dirty(session)
        assert report(session)["total"]["aht_seconds"] == 60.0
    bridge = Bridge(database=services.db, rollups=MarkOnly(tz=settings.tz), redis=aioredis.from_url(settings.redis_url),
                    area_code="0411", host="127.0.0.1", port=1, username="u", secret="s")
    bridge._record_wrapup_end("w", NINE + timedelta(seconds=85), "Local/8001@agents")
    with services.db.session_scope() as session:
        assert rollup.dirty_buckets(session, 0, 2**40) == {rollup.bucket_of(NINE)}
        assert report(session)["total"]["aht_seconds"] == 80.0  # 60 s talk + 20 s wrap-up
