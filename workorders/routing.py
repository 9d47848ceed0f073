"""Choosing the provider for an order (DESIGN.md, "Work order model"). Pure: no database.

Eligible: active, contracted for the service type, within its contract window, covering the
elder's community or street, with capacity left today, and not one that already rejected (or let
lapse) this order. Among those: best rating first, then the least loaded (share of today's
capacity used), then the longest-standing (lowest id), so a tie always goes the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal


@dataclass(frozen=True)
class Candidate:
    id: int
    status: str
    service_types: tuple[str, ...]
    coverage: frozenset[int]
    daily_capacity: int
    dispatched_today: int
    rating: Decimal
    contract_start: date | None = None
    contract_end: date | None = None


def eligible(candidate: Candidate, *, service_type: str, areas: frozenset[int], today: date, excluded: frozenset[int]) -> bool:
    return (candidate.status == "active" and service_type in candidate.service_types and bool(candidate.coverage & areas)
            and candidate.dispatched_today < candidate.daily_capacity and candidate.id not in excluded
            and (candidate.contract_start is None or candidate.contract_start <= today)
            and (candidate.contract_end is None or today <= candidate.contract_end))


def choose(candidates: list[Candidate], *, service_type: str, areas: frozenset[int], today: date,
           excluded: frozenset[int] = frozenset()) -> Candidate | None:
    """The provider to dispatch to, or None when nobody is eligible (the order is escalated)."""
    pool = [c for c in candidates if eligible(c, service_type=service_type, areas=areas, today=today, excluded=excluded)]
    if not pool:
        return None
    return min(pool, key=lambda c: (-c.rating, c.dispatched_today / max(c.daily_capacity, 1), c.id))
