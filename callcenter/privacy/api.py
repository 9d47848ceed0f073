"""HTTP API of privacy (supervisors and admins; every use audited):

GET  /api/privacy/elders/{id}/export?format=json|zip   everything held about one elder, as a file
POST /api/privacy/elders/{id}/anonymise                 erase what identifies the elder (409 while an order is open)
GET  /api/privacy/erasures                              the record of erasures: who, when, why
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from callcenter.audit import service as audit_service
from callcenter.deps import DbSession, ServicesDep, SupervisorUser, client_ip
from callcenter.inputs import Id
from callcenter.privacy import service
from callcenter.timeutil import today_in
from workorders import photos

router = APIRouter(prefix="/api/privacy", tags=["privacy"])


@router.get("/elders/{elder_id}/export")
def export_elder(elder_id: Id, request: Request, session: DbSession, services: ServicesDep, user: SupervisorUser,
                 format: Literal["json", "zip"] = "json"):
    """The elder's own data (PIPL art. 45): one JSON document, or a ZIP with one JSON file per part."""
    tz = services.settings.tz
    data = service.export(session=session, elder_id=elder_id, sealer=services.sealer, tz=tz, today=today_in(tz), user=user)
    audit_service.record(session=session, actor=user, action="subject_export", elder_id=elder_id, detail={"format": format},
                         ip=client_ip(request))
    name = f"elder-{elder_id}"
    if format == "json":
        body, media = _json(data), "application/json"
    else:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for part, value in data.items():
                archive.writestr(f"{name}/{part}.json", _json(value))
        body, media = buffer.getvalue(), "application/zip"
    return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}.{format}"',
                                                     "Cache-Control": "no-store"})


def _json(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str).encode()


class AnonymiseIn(BaseModel):
    reason: str = Field(min_length=2, max_length=500, description="why: the elder's or guardian's request, as stated")
    request_ref: str = Field(default="", max_length=64, description="the request's reference (申请编号)")


@router.post("/elders/{elder_id}/anonymise")
def anonymise_elder(elder_id: Id, body: AnonymiseIn, request: Request, session: DbSession, services: ServicesDep,
                    user: SupervisorUser):
    """Erase what identifies the elder (PIPL art. 47); calls and orders keep counting, anonymously."""
    erasure = service.anonymise(session=session, elder_id=elder_id, user=user, reason=body.reason, request_ref=body.request_ref,
                                photo_folder=photos.folder(services.settings))
    audit_service.record(session=session, actor=user, action="anonymise", elder_id=elder_id,
                         detail={"erasure_id": erasure.id, "reason": erasure.reason}, ip=client_ip(request))
    return service.erasure_dict(erasure, services.settings.tz)


@router.get("/erasures")
def list_erasures(session: DbSession, services: ServicesDep, user: SupervisorUser):
    return {"items": [service.erasure_dict(row, services.settings.tz) for row in service.erasures(session=session)]}
