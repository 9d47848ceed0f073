"""Database engine and sessions.

Web requests get a session from `deps.get_session`; jobs, the bridge and the CLI open their own
with `session_scope()`. The caller owns the transaction: service functions flush, never commit.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import BigInteger, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Session, create_engine

from callcenter.config import Settings

T = TypeVar("T")


POOL_SIZE, POOL_OVERFLOW = 10, 20  # connections kept, and opened beyond them when busy: 30 at most per process


def make_engine(url: str, timeout: int = 15) -> Engine:
    """Create the engine; SQLite gets WAL, enforced foreign keys and an index-friendly LIKE.
    PostgreSQL connections give up after `timeout` s when the server cannot be reached or the
    network to it goes silent mid-query (libpq's own defaults wait for TCP's retransmissions,
    a quarter of an hour, with the bridge's recording stalled meanwhile)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=POOL_SIZE,
                               max_overflow=POOL_OVERFLOW)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW,
                         connect_args=postgres_timeouts(timeout))


def postgres_timeouts(seconds: int) -> dict[str, int]:
    """libpq settings bounding how long a dead link goes unnoticed: the connection attempt, data
    the server never acknowledges (tcp_user_timeout), and an idle wait for a reply that never
    comes (keepalive probes, about `seconds` in all)."""
    seconds = max(3, int(seconds))
    return {"connect_timeout": seconds, "tcp_user_timeout": seconds * 1000, "keepalives": 1,
            "keepalives_idle": max(1, seconds // 3), "keepalives_interval": max(1, seconds // 9), "keepalives_count": 3}


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Prefix searches (`LIKE 'zdy%'`) can use an ordinary index only when LIKE is case-sensitive.
    cursor.execute("PRAGMA case_sensitive_like=ON")
    cursor.close()


def upsert_statement(dialect_name: str, table, keys: list[str], updates):
    """INSERT … ON CONFLICT (keys) DO UPDATE SET updates(excluded), on SQLite or PostgreSQL."""
    statement = (postgresql if dialect_name == "postgresql" else sqlite).insert(table)
    return statement.on_conflict_do_update(index_elements=keys, set_=updates(statement.excluded))


def write_lock(session: Session) -> None:
    """Take SQLite's write lock now (BEGIN IMMEDIATE), waiting for it like any write: a
    transaction that reads and then writes would otherwise fail at once with "database is locked"
    when another process wrote meanwhile. PostgreSQL needs nothing here (rows are locked with
    SELECT … FOR UPDATE where it matters)."""
    connection = session.connection()
    if connection.dialect.name == "sqlite" and not connection.connection.dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class epoch(FunctionElement):
    """Whole seconds since 1970 of a stored (UTC) time, in SQL: lets reports bucket and subtract
    times inside the database on SQLite and PostgreSQL alike."""

    type = BigInteger()
    inherit_cache = True
    name = "epoch"


@compiles(epoch)
def _epoch_sqlite(element, compiler, **kw):
    return "CAST(strftime('%%s', %s) AS INTEGER)" % compiler.process(element.clauses, **kw)


@compiles(epoch, "postgresql")
def _epoch_postgresql(element, compiler, **kw):
    return "CAST(FLOOR(EXTRACT(EPOCH FROM %s)) AS BIGINT)" % compiler.process(element.clauses, **kw)


def get_or_raise(session: Session, model: type[T], ident, what: str) -> T:
    """The row of `model` with primary key `ident`, or NotFound("<what> <ident> 不存在")."""
    from callcenter.errors import NotFound

    row = session.get(model, ident)
    if row is None:
        raise NotFound(f"{what} {ident} 不存在")
    return row


class Database:
    """One engine per process, built from the settings."""

    def __init__(self, settings: Settings):
        self.url = settings.effective_database_url
        self.engine = make_engine(self.url, settings.database_timeout_seconds)

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any exception."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def ping(self) -> bool:
        from sqlalchemy import text

        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True


def create_postgres_database(admin_url: str, name: str):
    """Create database `name` on the server of `admin_url`; returns (its url, a function that
    drops it). For the tests and benchmarks, which each want a fresh database."""
    from sqlalchemy import create_engine as create_core_engine, text

    admin = create_core_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return admin_url.rsplit("/", 1)[0] + f"/{name}", drop


def for_this_process(state: dict, settings: Callable[[], Settings]) -> Database:
    """The RQ jobs' database: one engine per process, made once (in the worker, before it forks)
    and kept in `state`; a forked work-horse drops the inherited pool (a database connection is
    never shared across a fork) and opens its own connections."""
    if "db" not in state:
        state["db"], state["pid"] = Database(settings()), os.getpid()
    elif state.get("pid") != os.getpid():
        state["db"].engine.dispose(close=False)
        state["pid"] = os.getpid()
    return state["db"]


class JobContext:
    """What an RQ job module uses in this process: its settings (the worker sets them with
    `configure` before it forks; otherwise read from the environment) and its database
    (`for_this_process`). One per job module."""

    def __init__(self, settings_factory: Callable[[], Settings]):
        self._factory = settings_factory
        self.state: dict = {}

    def configure(self, settings: Settings) -> None:
        self.state.clear()
        self.state["settings"] = settings

    def settings(self) -> Settings:
        return self.state.setdefault("settings", self._factory())

    def database(self) -> Database:
        return for_this_process(self.state, self.settings)
