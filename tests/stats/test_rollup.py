"""The call rollup through every kind of write (a new call, its answer and end, a move to another
agent or queue taking the longest wait with it, a deletion): each write marks its hour dirty,
reports stay exact meanwhile (they read a marked hour from the calls), and summing the marked
hours again (what the bridge does a second later) leaves the rollup equal to the calls. The
rollup table has a column per measure."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import select

from callcenter.calls.models import CallRecord
from callcenter.stats import rollup
from callcenter.stats import service as stats_service
from callcenter.stats.measures import MEASURES, NAMES
from callcenter.stats.models import CallRollup, CallRollupDirty

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


def test_the_rollup_follows_each_write_of_a_call(services):
    with services.db.session_scope() as session:
        waiting = CallRecord(linkedid="x", direction="inbound", state="queued", started_at=NINE, queued_at=NINE, queue="hotline")
        other = CallRecord(linkedid="y", direction="inbound", state="ended", started_at=NINE, queued_at=NINE + timedelta(minutes=5),
                           queue="hotline", outcome="abandoned", wait_seconds=20)
        session.add_all([waiting, other])
    assert rows(services) == {("hotline", ""): (2, 0, 20, 0, 0)}  # waiting: offered, no wait yet

    with services.db.session_scope() as session:  # answered by 8001 after 50 s, talks 100 s, 10 s wrap-up
        call = session.exec(select(CallRecord).where(CallRecord.linkedid == "x")).one()
        call.answered_at, call.wait_seconds, call.agent_extension, call.state = NINE + timedelta(seconds=50), 50, "8001", "talking"
        session.add(call)
        session.flush()
        call.agent_done_at, call.talk_seconds, call.outcome = call.answered_at + timedelta(seconds=100), 100, "answered"
        call.wrapup_ended_at = call.agent_done_at + timedelta(seconds=10)
        session.add(call)
    assert rows(services) == {("hotline", ""): (1, 0, 20, 0, 0), ("hotline", "8001"): (1, 1, 50, 1, 110)}

    with services.db.session_scope() as session:  # recorded against the wrong agent and queue: moved
        call = session.exec(select(CallRecord).where(CallRecord.linkedid == "x")).one()
        call.agent_extension, call.queue = "8002", "emergency"
        session.add(call)
    assert rows(services) == {("hotline", ""): (1, 0, 20, 0, 0), ("emergency", "8002"): (1, 1, 50, 1, 110)}

    with services.db.session_scope() as session:
        session.delete(session.exec(select(CallRecord).where(CallRecord.linkedid == "y")).one())
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
