"""GET /api/areas: the district / street / community list, for forms and filters."""

from fastapi import APIRouter

from callcenter.areas import service as areas_service
from callcenter.deps import DbSession, ReaderUser

router = APIRouter(prefix="/api/areas", tags=["areas"])


@router.get("")
def list_areas(session: DbSession, user: ReaderUser):
    return [{"id": a.id, "name": a.name, "level": a.level, "parent_id": a.parent_id} for a in areas_service.list_all(session=session)]
