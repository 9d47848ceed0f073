"""Keeping the rollups (stats/models.py) exact for every reader.

Calls: whoever writes calls marks the hours (UTC) they entered the queue in as dirty, in the same
transaction (`mark_dirty`: one upsert, no reads; the bridge's latency barely moves). The bridge
does it through its `Keeper`, which the composition root (callcenter/cli.py) hands it: the calls
domain says what each write touched (calls/written.py) and never imports stats. Readers take
marked hours from the calls themselves, so a report is exact at every moment; the bridge sums
marked hours again a second later (`refresh_dirty`, through the keeper) with the same measures as
the raw report (stats/measures.py: one definition, by name) and clears their marks. Every writer
in the code marks (the bridge's calls and wrap-up ends; tests' factories call `mark_dirty`); a
write that does not (plain SQL, an import) leaves the rollup behind its calls until
`callcenter stats check --repair` finds the differing hours and sums them again.

Agent activity: the bridge closes each stretch of agent_state_log exactly once, and the keeper
adds its seconds to the local days it spans (`add_activity`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from datetime import date, datetime, timedelta, timezone, tzinfo

from sqlalchemy import bindparam, delete, func, insert, literal_column, select, text
from sqlalchemy.orm import Session

from callcenter.calls.models import CallRecord
from callcenter.calls.written import Stretch, Written
from callcenter.db import epoch, upsert_statement, write_lock
from callcenter.stats.measures import NAMES, Tally, tally_columns
from callcenter.stats.models import AgentActivityDay, CallRollup, CallRollupDirty
from callcenter.timeutil import as_utc, day_start_utc

ROLLUP_THRESHOLD = 15  # T of the rolled-up service level (GB/T 33358-2016); another T reads the raw calls
BUCKET_SECONDS = 3600  # an hour: a day of 100 agents is 2,400 rows at most
# A call's queue and agent as rollup keys ('' for none); one expression object each, so that
# PostgreSQL finds a query's GROUP BY terms in its select list.
QUEUE_KEY = func.coalesce(CallRecord.queue, literal_column("''"))
AGENT_KEY = func.coalesce(CallRecord.agent_extension, literal_column("''"))
ROLLUP_KEYS = ("bucket", "queue", "agent")  # call_rollup's primary key; its other columns are the measures (stats/measures.py)
LOCK_KEY = 12349001  # PostgreSQL advisory lock: one rollup refresh at a time (SQLite's writer lock does it there)


def bucket_of(at: datetime, seconds: int = BUCKET_SECONDS) -> int:
    return int(as_utc(at).timestamp()) // seconds


def bucket_column(seconds: int = BUCKET_SECONDS):
    return epoch(CallRecord.queued_at) // seconds  # integer division on both databases


def covers(start: datetime, end: datetime) -> bool:
    """Whether [start, end) is whole rollup buckets: local midnights are whole hours of UTC in
    every zone China uses (and most others); a zone like UTC+5:30 reads the raw calls."""
    return all(int(as_utc(at).timestamp()) % BUCKET_SECONDS == 0 for at in (start, end))


@dataclass(frozen=True)
class Keeper:
    """The bridge's rollup keeper (calls.written.RollupKeeper): marks what each write touched, in
    its transaction, and sums the marked hours again when the bridge asks, a second later."""

    tz: tzinfo  # agents' time is added up per local day

    def written(self, session: Session, written: Written) -> None:
        mark_dirty(session, written.queued_at)
        add_activity(session, written.stretches, self.tz)

    def refresh(self, session: Session) -> int:
        return refresh_dirty(session)


def mark_dirty(session: Session, queued_at: Iterable[datetime | None]) -> None:
    """Mark the hours of these queue entries as no longer equal to their calls, in the session's
    transaction: readers take them from the calls until `refresh_dirty` sums them again. Whoever
    writes a call's queue entry, answer, end, wrap-up, outcome, wait, talk, queue or agent (or
    inserts or deletes a call) calls this with its queue entry before and after the write."""
    buckets = sorted({bucket_of(at) for at in queued_at if at is not None})
    if buckets:
        connection = session.connection()
        connection.execute(_mark_statement(connection.dialect.name), [{"bucket": bucket, "version": 1} for bucket in buckets])


@lru_cache(maxsize=2)
def _mark_statement(dialect_name: str):
    table = CallRollupDirty.__table__
    return upsert_statement(dialect_name, table, ["bucket"], lambda excluded: {"version": table.c.version + 1})


def dirty_buckets(session: Session, low: int, high: int) -> set[int]:
    """The marked hours in [low, high): readers take them from the calls."""
    return set(session.execute(select(CallRollupDirty.bucket).where(CallRollupDirty.bucket >= low,
                                                                    CallRollupDirty.bucket < high)).scalars())


def refresh_dirty(session: Session) -> int:
    """Sum every marked hour again from the calls and clear its mark, unless a write marked it
    again meanwhile (its version moved on); returns how many hours were summed. The bridge
    runs this a second after it writes."""
    write_lock(session)  # SQLite: read the marks and the calls under the writer's lock
    marks = dict(session.execute(select(CallRollupDirty.bucket, CallRollupDirty.version)).all())
    if marks:
        connection = session.connection()
        refresh_calls(connection, set(marks))
        table = CallRollupDirty.__table__
        connection.execute(delete(table).where(table.c.bucket == bindparam("b"), table.c.version == bindparam("v")),
                           [{"b": bucket, "v": version} for bucket, version in marks.items()])
    return len(marks)


def _sums_of_calls(low: int, high: int, buckets: set[int] | None = None):
    """The rollup's rows as summed from the calls of hours [low, high) (or only `buckets`), each
    column labelled with its rollup column's name."""
    bucket = bucket_column()
    queue, agent = QUEUE_KEY, AGENT_KEY
    query = select(bucket.label("bucket"), queue.label("queue"), agent.label("agent"), *tally_columns(ROLLUP_THRESHOLD)).where(
        CallRecord.direction == "inbound", CallRecord.queued_at >= datetime.fromtimestamp(low * BUCKET_SECONDS, timezone.utc),
        CallRecord.queued_at < datetime.fromtimestamp(high * BUCKET_SECONDS, timezone.utc))
    if buckets is not None:
        query = query.where(bucket.in_(buckets))
    return query.group_by(bucket, queue, agent)


def refresh_calls(connection, buckets: set[int]) -> None:
    """Sum the given hours again from the raw calls."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    connection.execute(delete(CallRollup).where(CallRollup.bucket.in_(buckets)))
    sums = _sums_of_calls(min(buckets), max(buckets) + 1, buckets)
    connection.execute(insert(CallRollup).from_select([column.name for column in sums.selected_columns], sums))


def _key(row) -> tuple[int, str, str]:
    values = row._mapping
    return int(values["bucket"]), values["queue"], values["agent"]


def differences(session: Session, start: datetime, end: datetime) -> list[tuple[int, str, str, Tally | None, Tally | None]]:
    """(bucket, queue, agent, stored, summed) for each rollup row of [start, end) that differs
    from the calls, marked hours aside; `callcenter stats check` prints them."""
    low, high = bucket_of(start), bucket_of(end)
    dirty = dirty_buckets(session, low, high)
    rows = select(*(getattr(CallRollup, name) for name in (*ROLLUP_KEYS, *NAMES))).where(CallRollup.bucket >= low,
                                                                                       CallRollup.bucket < high)
    stored = {_key(row): Tally.of_row(row) for row in session.execute(rows)}
    summed = {_key(row): Tally.of_row(row) for row in session.execute(_sums_of_calls(low, high))}
    return [(*key, stored.get(key), summed.get(key)) for key in sorted(set(stored) | set(summed), key=str)
            if key[0] not in dirty and stored.get(key) != summed.get(key)]


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


def add_activity(session: Session, stretches: list[Stretch], tz) -> None:
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
    connection.execute(upsert_statement(connection.dialect.name, table, ["day", "extension", "activity"],
                                         lambda excluded: {"seconds": table.c.seconds + excluded.seconds}), rows)
