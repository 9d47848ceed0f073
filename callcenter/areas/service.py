"""Area hierarchy: find or create district / street / community, and name paths."""

from __future__ import annotations

from sqlmodel import Session, select

from callcenter.areas.models import Area, CHILD_LEVEL
from callcenter.errors import FieldErrors


def get_or_create(*, session: Session, name: str, parent: Area | None, code: str | None = None) -> Area:
    """The child of `parent` called `name`, created at the level below the parent's."""
    parent_id = parent.id if parent else None
    area = session.exec(select(Area).where(Area.parent_id == parent_id, Area.name == name)).first()
    if area is None:
        area = Area(name=name, level=CHILD_LEVEL[parent.level if parent else None], parent_id=parent_id, code=code)
        session.add(area)
        session.flush()
    return area


def community_for_path(*, session: Session, district: str, street: str, community: str) -> Area:
    """The community at district / street / community, creating whatever level is missing."""
    names = [part.strip() for part in (district, street, community)]
    if not all(names):
        raise FieldErrors.single("community", "区、街道、社区须同时填写")
    area = None
    for name in names:
        area = get_or_create(session=session, name=name, parent=area)
    return area


def path_of(*, session: Session, area_id: int | None) -> list[Area]:
    """[district, street, community] for a community id (shorter for higher levels)."""
    path: list[Area] = []
    while area_id is not None:
        area = session.get(Area, area_id)
        if area is None:
            break
        path.append(area)
        area_id = area.parent_id
    return list(reversed(path))


def communities_under(*, session: Session, area_id: int) -> list[int]:
    """Ids of the communities in an area (itself, if it is one); an unknown id has none."""
    level = [area_id]
    for _ in range(len(CHILD_LEVEL)):
        children = list(session.exec(select(Area.id).where(Area.parent_id.in_(level))))
        if not children:
            break
        level = children
    return list(session.exec(select(Area.id).where(Area.id.in_(level), Area.level == "community")))


def subtree(*, session: Session, area_id: int) -> list[int]:
    """Ids of an area and of every area under it; an unknown id has none."""
    found = list(session.exec(select(Area.id).where(Area.id == area_id)))
    level = found
    for _ in range(len(CHILD_LEVEL)):
        level = list(session.exec(select(Area.id).where(Area.parent_id.in_(level)))) if level else []
        found += level
    return found


def get_or_none(*, session: Session, area_id: int) -> Area | None:
    return session.get(Area, area_id)


def get_community_or_raise(*, session: Session, community_id: int) -> Area:
    area = session.get(Area, community_id)
    if area is None or area.level != "community":
        raise FieldErrors.single("community_id", "社区不存在")
    return area


def list_all(*, session: Session) -> list[Area]:
    return list(session.exec(select(Area).order_by(Area.level, Area.name)))


def communities_matching(*, session: Session, text: str, limit: int = 50) -> list[int]:
    """Ids of communities whose name contains `text` (a small table: a scan is fine)."""
    rows = session.exec(
        select(Area.id).where(Area.level == "community", Area.name.contains(text, autoescape=True)).limit(limit)
    )
    return list(rows)
