"""Rollups the reports and the wallboard read instead of raw rows (DESIGN.md, "KPIs"). Whoever
writes calls marks their hours dirty in the same transaction (the bridge through the rollup keeper
the composition root gives it), and readers take marked hours from the calls (stats/rollup.py),
so a report never disagrees with the calls."""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Column
from sqlmodel import Field, SQLModel


class CallRollup(SQLModel, table=True):
    """The call measures (stats/measures.py, with T = ROLLUP_THRESHOLD) of one hour (UTC) of queue
    entries, per queue and agent extension ('' for none): one column per measure, named like it
    (tests/stats/test_rollup.py checks the model and the migrated table), nullable for a maximum."""

    __tablename__ = "call_rollup"

    bucket: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False),
                        description="epoch seconds of queued_at // 3600")
    queue: str = Field(default="", primary_key=True, max_length=80)
    agent: str = Field(default="", primary_key=True, max_length=32)
    offered: int = 0
    answered: int = 0
    within: int = 0
    abandoned: int = 0
    short_abandons: int = 0
    timeouts: int = 0
    abandoned_within: int = 0
    answered_wait: int = 0
    longest_wait: int | None = None
    handled: int = 0
    handle: int = 0


class AgentActivityDay(SQLModel, table=True):
    """Seconds an agent spent in an activity on a local day, from the closed stretches of
    agent_state_log (the open one is added when read)."""

    __tablename__ = "agent_activity_days"

    day: date = Field(primary_key=True)
    extension: str = Field(primary_key=True, max_length=120)
    activity: str = Field(primary_key=True, max_length=16)
    seconds: int = 0


class CallRollupDirty(SQLModel, table=True):
    """An hour of call_rollup that no longer equals its calls: marked in the transaction that
    wrote one of its calls (stats.rollup.mark_dirty), cleared by the bridge once it summed the
    hour again. Readers take a
    marked hour from the calls themselves, so a report is exact at every moment."""

    __tablename__ = "call_rollup_dirty"

    bucket: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    version: int = Field(default=1, description="bumped by each write: a refresh clears only the version it summed")
