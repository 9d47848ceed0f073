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
