"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from callcenter import migrate
from callcenter.db import make_engine
from callcenter.models import metadata
from tests.conftest import fresh_database_url


def test_migrations_produce_the_models_schema(tmp_path_factory):
    url, drop = fresh_database_url(tmp_path_factory, "schema")
    try:
        migrate.upgrade(url)
        engine = make_engine(url)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
            tables = set(inspect(connection).get_table_names())
        engine.dispose()
        assert {"areas", "elders", "elder_phones", "emergency_contacts", "users", "audit_log", "alembic_version"} <= tables
    finally:
        drop()


def test_upgrade_twice_is_harmless(tmp_path_factory):
    url, drop = fresh_database_url(tmp_path_factory, "twice")
    try:
        migrate.upgrade(url)
        migrate.upgrade(url)
    finally:
        drop()


def test_upgrading_to_the_rollups_sums_the_calls_already_recorded(tmp_path_factory):
    """A centre upgrading with calls on record: revision 0006 fills call_rollup from them, and the
    report read from the rollup gives the figures computed by hand."""
    from datetime import date, datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    import sqlalchemy as sa
    from sqlalchemy import func
    from sqlmodel import Session, select

    from callcenter.calls.models import CallRecord
    from callcenter.stats.models import CallRollup
    from callcenter.stats import service as stats_service

    url, drop = fresh_database_url(tmp_path_factory, "rollup")
    try:
        migrate.upgrade(url, "0005")
        engine = make_engine(url)
        start = datetime(2026, 11, 20, 1, 0, tzinfo=timezone.utc)  # 09:00 in Shanghai
        rows = [("a", 10, "answered", 120, "8001"), ("b", 40, "answered", 60, "8002"), ("c", 30, "abandoned", None, None),
                ("d", 3, "short_abandon", None, None)]
        with engine.begin() as connection:  # plain SQL, as the code of revision 0005 wrote them
            for n, (name, wait, outcome, talk, agent) in enumerate(rows):
                queued = start + timedelta(minutes=7 * n)
                answered = queued + timedelta(seconds=wait) if talk else None
                values = dict(
                    linkedid=name, direction="inbound", context="from-elders", state="ended", outcome=outcome, queue="hotline",
                    elder_candidates=[], channels=[], priority=0, ring_attempts=0, transfers=0, notes="", started_at=queued,
                    queued_at=queued, answered_at=answered, agent_done_at=answered + timedelta(seconds=talk) if talk else None,
                    wrapup_ended_at=answered + timedelta(seconds=talk + 30) if talk else None, wait_seconds=wait,
                    talk_seconds=talk, agent_extension=agent, updated_at=queued)
                calls_0005 = sa.table("calls", *[sa.column(key, CallRecord.__table__.c[key].type) for key in values])  # its columns then
                connection.execute(calls_0005.insert().values(**values))
        migrate.upgrade(url)
        tz, day = ZoneInfo("Asia/Shanghai"), date(2026, 11, 20)
        with Session(engine) as session:
            report = stats_service.report(session=session, tz=tz, date_from=day, date_to=day, threshold=15)
            # the 09:00 hour: a (8001), b (8002), c and d (no agent)
            assert session.exec(select(func.count()).select_from(CallRollup)).one() == 3
        engine.dispose()
        total = report["total"]
        assert (total["offered"], total["answered"], total["answered_within_threshold"]) == (4, 2, 1)  # a waited 10 s
        assert (total["abandoned"], total["short_abandons"], total["service_level"]) == (1, 1, 0.3333)  # 1 / (4 − 1)
        assert (total["asa_seconds"], total["longest_wait_seconds"], total["aht_seconds"]) == (25.0, 40, 120.0)  # (150 + 90) / 2
        assert [(a["agent"], a["answered"]) for a in report["by_agent"]] == [("8001", 1), ("8002", 1)]
    finally:
        drop()
