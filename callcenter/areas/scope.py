"""An account's scope (市 / 区 / 街道 / 社区) and the one place it is applied to queries.

A `Scope` is worked out once per request from the signed-in account (deps.current_user) and put in
`session.info["scope"]`. Every ORM SELECT of that session then gets, through a `do_orm_execute`
listener, the WHERE criteria of each scoped model (`with_loader_criteria`: SQLAlchemy's "global
WHERE criteria"), in lists, counts, reports, exports, sub-queries and `session.get()` alike. So a
route never filters by area itself, and a new query is scoped without anyone remembering to:
fetching an object by id out of scope finds nothing, which the routes already answer with 404
(not 403: an out-of-scope id is not revealed to exist).

Limits, by design:
- `session.get()` answers from the identity map without a query: an object loaded earlier in the
  same request (only possible inside `city_wide`) is not re-checked.
- Core statements on tables (no ORM entity) are not scoped; the call rollup has no area at all,
  so call KPIs of a scoped account are narrowed to its area explicitly (`Scope.narrow`).
- `city_wide(session)` lifts the scope for what hotline agents must see of any caller (a call can
  come from anywhere): the screen pop, phone lookup and elder search during a call.
- Jobs, the bridge and the IVR open their own sessions, which carry no scope.

Accounts themselves are not filtered here: who may see and manage which account is
auth.service's rule (`accounts_within`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import ColumnElement, event, false, select
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from callcenter.areas import service as areas_service
from callcenter.areas.models import Area
from callcenter.errors import NotFound

SCOPE_KEY = "scope"


@dataclass(frozen=True)
class Scope:
    """What one account may see. `area_id` None: the whole city (no criteria at all)."""

    area_id: int | None = None
    areas: frozenset[int] = frozenset()  # the area and everything under it
    communities: frozenset[int] = frozenset()  # the communities among them (elders live in one)
    providers: frozenset[int] = frozenset()  # providers whose coverage includes or contains the area
    providers_work: bool = False  # also the orders of those providers wherever they serve (street offices)
    callers: frozenset[int] = frozenset()  # elders on the line with this agent now, wherever they live

    @property
    def city(self) -> bool:
        return self.area_id is None

    def narrow(self, area_id: int | None) -> int | None:
        """The area a report asks for (None: all it may see), within this scope: a scoped account
        gets its own area by default and 404 for an area outside it."""
        if self.city:
            return area_id
        if area_id is None:
            return self.area_id
        if area_id not in self.areas:
            raise NotFound(f"地区 {area_id} 不存在")
        return area_id


CITY = Scope()


def scope_of(*, session: Session, area_id: int | None, providers_work: bool = False, extension: str | None = None) -> Scope:
    """The scope of an account attached to `area_id` (None: the whole city); with the
    `extension` of a hotline agent, also the elders of the calls open on it (a call can come from
    anywhere: the caller's profile, orders and drafts are the agent's business while it lasts)."""
    if area_id is None:
        return CITY
    areas = frozenset(areas_service.subtree(session=session, area_id=area_id))
    ancestors = {area.id for area in areas_service.path_of(session=session, area_id=area_id)}
    communities = frozenset(session.execute(select(Area.id).where(Area.id.in_(sorted(areas)), Area.level == "community")).scalars())
    return Scope(area_id=area_id, areas=areas, communities=communities,
                 providers=frozenset(_providers_serving(session=session, areas=areas | ancestors)),
                 providers_work=providers_work,
                 callers=frozenset(_callers_reader(session, extension)) if extension else frozenset())


def _providers_serving(*, session: Session, areas: set[int]) -> list[int]:
    """Ids of the providers whose coverage names one of `areas` (through the registered reader:
    providers are work orders' model, and this module imports no domain above it)."""
    return [provider_id for provider_id, coverage in _coverage_reader(session) if areas.intersection(coverage or [])]


def _no_providers(session: Session) -> list[tuple[int, list[int]]]:
    return []


def _no_callers(session: Session, extension: str) -> list[int]:
    return []


_coverage_reader: Callable[[Session], list[tuple[int, list[int]]]] = _no_providers
_callers_reader: Callable[[Session, str], list[int]] = _no_callers
_CRITERIA: list[tuple[type, Callable[[Scope], ColumnElement[bool]]]] = []


def register(model: type, criterion: Callable[[Scope], ColumnElement[bool]]) -> None:
    """`model`'s rows visible in a scope: each domain registers its own models (next to them, in
    models.py), so this module imports none of them."""
    _CRITERIA.append((model, criterion))


def register_coverage(reader: Callable[[Session], list[tuple[int, list[int]]]]) -> None:
    """How to read (provider id, area ids it covers): work orders register it."""
    global _coverage_reader
    _coverage_reader = reader


def register_callers(reader: Callable[[Session, str], list[int]]) -> None:
    """How to read the elders of the calls open on an extension: calls register it."""
    global _callers_reader
    _callers_reader = reader


def any_of(column, ids) -> ColumnElement[bool]:
    """`column IN ids`, or FALSE for no ids (an empty IN is not portable)."""
    return column.in_(sorted(ids)) if ids else false()


def apply(session: Session, scope: Scope | None) -> None:
    """Scope every later query of `session` (None or CITY: no criteria)."""
    session.info[SCOPE_KEY] = None if scope is None or scope.city else scope


def current(session: Session) -> Scope:
    return session.info.get(SCOPE_KEY) or CITY


@contextmanager
def city_wide(session: Session) -> Iterator[None]:
    """Queries inside see the whole city (an agent's caller lookup); the scope is back after."""
    saved = session.info.get(SCOPE_KEY)
    session.info[SCOPE_KEY] = None
    try:
        yield
    finally:
        session.info[SCOPE_KEY] = saved


def visible(session: Session, model: type, ident: int) -> bool:
    """Whether the row of `model` with primary key `ident` is within the session's scope (read
    again through the criteria, whatever the identity map holds)."""
    return session.execute(select(model.id).where(model.id == ident)).first() is not None


@event.listens_for(Session, "do_orm_execute")
def _scope_statement(state: ORMExecuteState) -> None:
    scope = state.session.info.get(SCOPE_KEY)
    if scope is None or not state.is_select or state.is_column_load or state.is_relationship_load:
        return
    state.statement = state.statement.options(*(with_loader_criteria(model, criterion(scope)) for model, criterion in _CRITERIA))
