"""What a write to the calls changed for the figures summed from them, and the interface of whoever
keeps those figures (the reports' rollups).

The calls domain owns the calls and the agents' activity log, so it says what a write touched:
when the calls it wrote entered the queue (before and after the write), and which stretches of
agent activity it closed (`Written`, filled by calls.service's writers). How those are summed is
not its business: stats is a layer above and imports calls, never the reverse. The composition
root (callcenter/cli.py) hands the bridge a `RollupKeeper` (stats.rollup.Keeper); the bridge gives
it each transaction's `Written` before the commit, so a report never sees a call its rollup does
not know is there, and asks it to sum again a second later, off the path from event to publish.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, Protocol

from sqlmodel import Session

from callcenter.timeutil import as_utc


class Stretch(NamedTuple):
    """A closed stretch of one agent's activity (agent_state_log)."""

    extension: str
    activity: str
    started: datetime
    ended: datetime


@dataclass
class Written:
    """What one transaction wrote: the queue entries of the calls it wrote (their hours must be
    summed again, whatever column changed) and the agents' stretches it closed."""

    queued_at: set[datetime] = field(default_factory=set)
    stretches: list[Stretch] = field(default_factory=list)

    def call(self, *queued_at: datetime | None) -> None:
        """A call's row was written: when it entered the queue, before and after (None: not queued)."""
        self.queued_at.update(as_utc(at) for at in queued_at if at is not None)


class RollupKeeper(Protocol):
    """Keeps figures summed from the calls equal to them (implemented by stats.rollup.Keeper)."""

    def written(self, session: Session, written: Written) -> None:
        """In the writing transaction, before its commit: take note of what it changed."""

    def refresh(self, session: Session) -> int:
        """Later, off the write path: sum again what was noted; returns how many hours were summed."""
