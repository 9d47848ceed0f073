"""Keeping the rollups exact (stats/models.py), in the transaction that changes what they sum.

Calls: around every flush that writes a call's queue entry, answer, end, wrap-up, outcome, wait,
talk, queue or agent, the calls' contributions to the rollup are summed before and after by the
same SQL as the raw report (`stats.service.tally_columns`: one definition), and the difference
is added to the rollup rows (hour in UTC, queue, agent). The cost is that of the flush's own
calls, not of the hour's. The ORM hooks catch every writer (the bridge, the wrap-up end, tests'
factories); only a Core UPDATE on `calls` would bypass them, and there is none; `callcenter
stats check` compares the rollup with the calls and repairs it.

Agent activity: the bridge closes each stretch of agent_state_log exactly once, and adds its
seconds to the local days it spans (`add_activity`).
"""

from __future__ import annotations

from dataclasses import fields
from functools import lru_cache
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import bindparam, case, delete, event, func, insert, inspect, literal_column, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from callcenter.calls.models import CallRecord
from callcenter.db import epoch
from callcenter.stats.models import AgentActivityDay, CallRollup
from callcenter.timeutil import as_utc, day_start_utc

ROLLUP_THRESHOLD = 15  # T of the rolled-up service level (GB/T 33358-2016); another T reads the raw calls
BUCKET_SECONDS = 3600  # an hour: a day of 100 agents is 2,400 rows at most
TRACKED = ("queued_at", "answered_at", "agent_done_at", "wrapup_ended_at", "outcome", "wait_seconds", "talk_seconds",
           "queue", "agent_extension", "direction")
LOCK_KEY = 12349001  # PostgreSQL advisory lock: one rollup refresh at a time (SQLite's writer lock does it there)


def bucket_of(at: datetime, seconds: int = BUCKET_SECONDS) -> int:
    return int(as_utc(at).timestamp()) // seconds


def bucket_column(seconds: int = BUCKET_SECONDS):
    return epoch(CallRecord.queued_at) // seconds  # integer division on both databases


def covers(start: datetime, end: datetime) -> bool:
    """Whether [start, end) is whole rollup buckets: local midnights are whole hours of UTC in
    every zone China uses (and most others); a zone like UTC+5:30 reads the raw calls."""
    return all(int(as_utc(at).timestamp()) % BUCKET_SECONDS == 0 for at in (start, end))


def _tracked_change(obj: CallRecord) -> bool:
    state = inspect(obj)
    return any(state.attrs[name].history.has_changes() for name in TRACKED)


def _touched_ids(session: Session, *, with_new: bool) -> list[int]:
    """Ids of the calls this flush writes in a way the tally can see (new ones once inserted)."""
    candidates = (*session.dirty, *session.deleted, *(session.new if with_new else ()))
    return [obj.id for obj in candidates if isinstance(obj, CallRecord) and obj.id is not None
            and (obj in session.new or obj in session.deleted or _tracked_change(obj))]


@lru_cache(maxsize=1)
def _statements():
    """Built once: (lock the calls' rows, their contributions per rollup row), both taking `ids`."""
    from callcenter.stats.service import tally_columns

    ids = bindparam("ids", expanding=True)
    bucket = bucket_column()
    queue = func.coalesce(CallRecord.queue, literal_column("''"))
    agent = func.coalesce(CallRecord.agent_extension, literal_column("''"))
    lock = select(CallRecord.id).where(CallRecord.id.in_(ids)).with_for_update()
    sums = (select(bucket, queue, agent, *tally_columns(ROLLUP_THRESHOLD))
            .where(CallRecord.id.in_(ids), CallRecord.direction == "inbound", CallRecord.queued_at.is_not(None))
            .group_by(bucket, queue, agent))
    return lock, sums


def _contributions(connection, ids: list[int], *, lock: bool = False) -> dict[tuple, tuple]:
    """What these calls add to each rollup row, by the rollup's own SQL; with `lock`, their rows
    are locked first (PostgreSQL), so no other writer changes them between this and the flush."""
    lock_rows, sums = _statements()
    if lock and connection.dialect.name == "postgresql":
        connection.execute(lock_rows, {"ids": ids})
    return {(int(row[0]), row[1], row[2]): tuple(row[3:]) for row in connection.execute(sums, {"ids": ids})}


@event.listens_for(Session, "before_flush")
def _calls_before_flush(session: Session, _context, _instances) -> None:
    ids = _touched_ids(session, with_new=False)
    session.info["call_rollup_before"] = _contributions(session.connection(), ids, lock=True) if ids else {}


@event.listens_for(Session, "after_flush")
def _calls_after_flush(session: Session, _context) -> None:
    before = session.info.pop("call_rollup_before", {})
    ids = _touched_ids(session, with_new=True)
    after = _contributions(session.connection(), ids) if ids else {}
    if before or after:
        _apply(session.connection(), before, after)


def _apply(connection, before: dict[tuple, tuple], after: dict[tuple, tuple]) -> None:
    """Add (after − before) to each row. A maximum cannot be taken back: where a call that held
    a row's longest wait left that row (its queue or agent changed), the hour is summed again."""
    names = _columns()[3:]
    longest = names.index("longest_wait")
    rows, refresh = [], set()
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if old == new:
            continue  # e.g. a call that went from ringing an agent to talking: nothing the tally sees
        if old is not None and old[longest] is not None and (new is None or (new[longest] or 0) < old[longest]):
            refresh.add(key[0])
        values = {name: (new[n] if new else 0) - (old[n] if old else 0) for n, name in enumerate(names) if n != longest}
        rows.append({"bucket": key[0], "queue": key[1], "agent": key[2], **values,
                     "longest_wait": new[longest] if new else None})
    rows = [row for row in rows if row["bucket"] not in refresh]
    if rows:
        connection.execute(_add_to_rollup(connection.dialect.name), rows)
    if refresh:
        refresh_calls(connection, refresh)


@lru_cache(maxsize=2)
def _add_to_rollup(dialect_name: str):
    """INSERT … ON CONFLICT DO UPDATE adding each sum and keeping the larger longest wait."""
    table = CallRollup.__table__
    names = _columns()[3:]
    return _upsert_statement(dialect_name, table, ["bucket", "queue", "agent"], lambda excluded: {
        **{name: table.c[name] + excluded[name] for name in names if name != "longest_wait"},
        "longest_wait": case((excluded.longest_wait.is_(None), table.c.longest_wait),
                             (table.c.longest_wait.is_(None), excluded.longest_wait),
                             (excluded.longest_wait > table.c.longest_wait, excluded.longest_wait),
                             else_=table.c.longest_wait)})


def _upsert_statement(dialect_name: str, table, keys: list[str], updates):
    """INSERT … ON CONFLICT (keys) DO UPDATE SET updates(excluded), on SQLite or PostgreSQL; run
    with a list of rows (executemany)."""
    statement = (postgresql if dialect_name == "postgresql" else sqlite).insert(table)
    return statement.on_conflict_do_update(index_elements=keys, set_=updates(statement.excluded))


def _sums_of_calls(low: int, high: int, buckets: set[int] | None = None):
    """The rollup's rows as summed from the calls of hours [low, high) (or only `buckets`)."""
    from callcenter.stats.service import tally_columns

    bucket = bucket_column()
    # One expression object each, so that PostgreSQL sees the GROUP BY terms in the select list.
    queue = func.coalesce(CallRecord.queue, literal_column("''"))
    agent = func.coalesce(CallRecord.agent_extension, literal_column("''"))
    query = select(bucket, queue, agent, *tally_columns(ROLLUP_THRESHOLD)).where(
        CallRecord.direction == "inbound", CallRecord.queued_at >= datetime.fromtimestamp(low * BUCKET_SECONDS, timezone.utc),
        CallRecord.queued_at < datetime.fromtimestamp(high * BUCKET_SECONDS, timezone.utc))
    if buckets is not None:
        query = query.where(bucket.in_(buckets))
    return query.group_by(bucket, queue, agent)


def _columns() -> list[str]:
    from callcenter.stats.service import Tally

    return ["bucket", "queue", "agent", *(field.name for field in fields(Tally))]


def refresh_calls(connection, buckets: set[int]) -> None:
    """Sum the given hours again from the raw calls."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    connection.execute(delete(CallRollup).where(CallRollup.bucket.in_(buckets)))
    sums = _sums_of_calls(min(buckets), max(buckets) + 1, buckets)
    connection.execute(insert(CallRollup).from_select(_columns(), sums))


def differences(session: Session, start: datetime, end: datetime) -> list[tuple]:
    """(bucket, queue, agent, stored, summed) for each rollup row of [start, end) that differs
    from the calls; `callcenter stats check` prints them."""
    low, high = bucket_of(start), bucket_of(end)
    names = _columns()
    stored = {tuple(row[:3]): tuple(row[3:]) for row in session.execute(
        select(*(getattr(CallRollup, name) for name in names)).where(CallRollup.bucket >= low, CallRollup.bucket < high))}
    summed = {(int(row[0]), row[1], row[2]): tuple(int(v) if v is not None else None for v in row[3:])
              for row in session.execute(_sums_of_calls(low, high))}
    return [(*key, stored.get(key), summed.get(key)) for key in sorted(set(stored) | set(summed), key=str)
            if stored.get(key) != summed.get(key)]


def rebuild_calls(session: Session, start: datetime, end: datetime) -> int:
    """Sum every hour of [start, end) again (after a change of definition, or an import that
    wrote calls with plain SQL); returns how many hours had calls."""
    bucket = bucket_column()
    found = session.execute(select(bucket).where(CallRecord.queued_at >= start, CallRecord.queued_at < end).group_by(bucket))
    buckets = {int(value) for value in found.scalars()}
    if buckets:
        refresh_calls(session.connection(), buckets)
    return len(buckets)


def split_by_day(start: datetime, end: datetime, tz) -> list[tuple[date, int]]:
    """Whole seconds of [start, end) on each local day it touches."""
    low, high = int(as_utc(start).timestamp()), int(as_utc(end).timestamp())
    parts = []
    while low < high:
        day = datetime.fromtimestamp(low, tz).date()
        upto = min(high, int(day_start_utc(day + timedelta(days=1), tz).timestamp()))
        parts.append((day, upto - low))
        low = upto
    return parts


def add_activity(session: Session, stretches: list[tuple[str, str, datetime, datetime]], tz) -> None:
    """Add closed stretches (extension, activity, started, ended) to the agents' days."""
    totals: dict[tuple[date, str, str], int] = {}
    for extension, activity, started, ended in stretches:
        for day, seconds in split_by_day(started, ended, tz):
            key = (day, extension, activity)
            totals[key] = totals.get(key, 0) + seconds
    if not totals:
        return
    rows = [{"day": day, "extension": extension, "activity": activity, "seconds": seconds}
            for (day, extension, activity), seconds in totals.items()]
    table = AgentActivityDay.__table__
    connection = session.connection()
    connection.execute(_upsert_statement(connection.dialect.name, table, ["day", "extension", "activity"],
                                         lambda excluded: {"seconds": table.c.seconds + excluded.seconds}), rows)
