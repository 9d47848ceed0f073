"""The call measures: the sums, counts and maxima every call KPI is derived from
(`stats.service.call_kpis`), each defined once, by name: its SQL aggregate over CallRecord for a
threshold T, and how two tallies combine it (sum, or max).

Everything else is built from `MEASURES` and goes by name, never by position: the SELECT columns
of a raw tally are labelled with the measures' names (`tally_columns`), a `Tally` is read from a
row by those labels (`Tally.of_row`) and added measure by measure, the rollup re-aggregates its
columns of the same names (`rollup_columns`) and its INSERT … SELECT takes its column list from
the labels of its SELECT (stats/rollup.py). A new measure is one entry here and its column in
`CallRollup` (stats/models.py, with a migration); tests/stats/test_rollup.py fails while the table
and the measures differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from sqlalchemy import and_, case, func
from sqlalchemy.sql.elements import ColumnElement

from callcenter.calls.models import CallRecord, Outcome
from callcenter.db import epoch
from callcenter.reporting import count_where
from callcenter.stats.models import CallRollup

ABANDONS = (Outcome.ABANDONED, Outcome.SHORT_ABANDON)


@dataclass(frozen=True)
class Measure:
    """One figure summed over a set of offered calls."""

    name: str  # the Tally attribute, the SQL label and the call_rollup column
    aggregate: Callable[[int], ColumnElement]  # T (seconds) → its SQL aggregate over CallRecord
    combine: Literal["sum", "max"] = "sum"  # how the figures of two sets of calls make the figure of both

    @property
    def empty(self) -> int | None:
        """Its value over no calls: 0 for a sum, None for a maximum (no wait is not a wait of 0 s)."""
        return None if self.combine == "max" else 0

    def add(self, mine: int | None, theirs: int | None) -> int | None:
        if self.combine == "max":
            return max((value for value in (mine, theirs) if value is not None), default=None)
        return mine + theirs

    def over_rollup(self) -> ColumnElement:
        """Its rollup column combined over several rollup rows, labelled with its name."""
        column = getattr(CallRollup, self.name)
        return (func.max(column) if self.combine == "max" else func.sum(column)).label(self.name)


# A call is answered once an agent picked it up (so the wallboard counts a call in progress); it is
# handled once the agent is done with it, and its handling time is talk + wrap-up (wrap-up = wrap-up
# ended − agent done, never below 0).
_ANSWERED = CallRecord.answered_at.is_not(None)
_HANDLED = and_(_ANSWERED, CallRecord.agent_done_at.is_not(None))
_WAIT = func.coalesce(CallRecord.wait_seconds, 0)
_WRAPUP = case((and_(CallRecord.wrapup_ended_at.is_not(None), CallRecord.agent_done_at.is_not(None),
                     CallRecord.wrapup_ended_at > CallRecord.agent_done_at),
                epoch(CallRecord.wrapup_ended_at) - epoch(CallRecord.agent_done_at)), else_=0)
_HANDLE = func.coalesce(CallRecord.talk_seconds, 0) + _WRAPUP

MEASURES: tuple[Measure, ...] = (
    Measure("offered", lambda t: func.count()),
    Measure("answered", lambda t: count_where(_ANSWERED)),
    Measure("within", lambda t: count_where(and_(_ANSWERED, _WAIT <= t))),  # answered within T
    Measure("abandoned", lambda t: count_where(CallRecord.outcome == Outcome.ABANDONED)),
    Measure("short_abandons", lambda t: count_where(CallRecord.outcome == Outcome.SHORT_ABANDON)),
    Measure("timeouts", lambda t: count_where(CallRecord.outcome == Outcome.TIMEOUT)),
    Measure("abandoned_within", lambda t: count_where(and_(CallRecord.outcome.in_(ABANDONS), _WAIT <= t))),  # Asterisk's SL2
    Measure("answered_wait", lambda t: func.coalesce(func.sum(case((_ANSWERED, _WAIT), else_=0)), 0)),  # for ASA
    Measure("longest_wait", lambda t: func.max(CallRecord.wait_seconds), combine="max"),
    Measure("handled", lambda t: count_where(_HANDLED)),
    Measure("handle", lambda t: func.coalesce(func.sum(case((_HANDLED, _HANDLE), else_=0)), 0)),  # for AHT
)
NAMES = tuple(measure.name for measure in MEASURES)


def _number(value) -> int | None:
    return int(value) if value is not None else None  # PostgreSQL's sums are numeric


class Tally:
    """The measures over a set of offered calls, one attribute each (`tally.offered`), from which
    every call KPI follows; tallies add up, so a day is the sum of its hours and a range the sum
    of its days."""

    __slots__ = NAMES

    def __init__(self, **values: int | None):
        unknown = set(values) - set(NAMES)
        if unknown:
            raise TypeError(f"not call measures: {', '.join(sorted(unknown))}")
        for measure in MEASURES:
            setattr(self, measure.name, values.get(measure.name, measure.empty))

    @classmethod
    def of_row(cls, row) -> Tally:
        """The tally in a result row whose columns are labelled with the measures' names (its
        other columns, such as the hour or the agent, are left alone)."""
        values = row._mapping
        return cls(**{name: _number(values[name]) for name in NAMES})

    def add(self, other: Tally) -> None:
        for measure in MEASURES:
            setattr(self, measure.name, measure.add(getattr(self, measure.name), getattr(other, measure.name)))

    def as_dict(self) -> dict[str, int | None]:
        return {name: getattr(self, name) for name in NAMES}

    def __eq__(self, other) -> bool:
        return isinstance(other, Tally) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return f"Tally({', '.join(f'{name}={value}' for name, value in self.as_dict().items())})"


@lru_cache(maxsize=32)
def tally_columns(threshold: int) -> tuple[ColumnElement, ...]:
    """Each measure's SQL aggregate over CallRecord with T = `threshold`, labelled with its name."""
    return tuple(measure.aggregate(threshold).label(measure.name) for measure in MEASURES)


@lru_cache(maxsize=1)
def rollup_columns() -> tuple[ColumnElement, ...]:
    """Each measure over call_rollup rows (the sum of its column, or the maximum), labelled with its name."""
    return tuple(measure.over_rollup() for measure in MEASURES)
