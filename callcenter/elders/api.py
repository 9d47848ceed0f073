"""HTTP API for elder profiles: /api/elders …  Every profile view or change by a person is audited."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Literal

from fastapi import APIRouter, Query, Request, UploadFile

from callcenter.audit import service as audit_service
from callcenter.auth import service as auth_service
from callcenter.areas import scope as areas_scope
from callcenter.deps import AgentUser, CitySupervisorUser, DbSession, ReaderUser, ServicesDep, SupervisorUser, client_ip, download
from callcenter.elders import access, presenter, transfer
from callcenter.elders import service as elders_service
from callcenter.elders.schemas import ContactIn, DeactivateIn, ElderIn, ElderUpdate, PhoneIn
from callcenter.errors import FieldErrors
from callcenter.timeutil import today_in
from callcenter.inputs import Id, Page

router = APIRouter(prefix="/api/elders", tags=["elders"])


@router.get("")
def list_elders(
    session: DbSession,
    services: ServicesDep,
    user: ReaderUser,
    q: str = "",
    page: Page = 1,
    page_size: int = Query(20, ge=1, le=200),
    include_inactive: bool = False,
):
    """Search by name, full pinyin, pinyin initials, phone fragment, last 4 of the ID number or
    community; blank `q` lists everyone in the user's scope. Hotline staff search the whole city
    (a caller may live anywhere). ID numbers are always masked in lists."""
    with areas_scope.city_wide(session) if q and auth_service.has_role(user, "agent") else nullcontext():
        result = elders_service.search(
            session=session, q=q, sealer=services.sealer, page=page, page_size=page_size, include_inactive=include_inactive
        )
    today = today_in(services.settings.tz)
    return {
        "items": [access.card(session=session, elder=elder, today=today) for elder in result.items],
        "total": result.total,
        "total_is_capped": result.total_is_capped,
        "page": result.page,
        "page_size": result.page_size,
    }


@router.post("", status_code=201)
def create_elder(elder_in: ElderIn, request: Request, session: DbSession, services: ServicesDep, user: AgentUser):
    elder = elders_service.create(session=session, elder_in=elder_in, sealer=services.sealer, area_code=services.settings.city_area_code)
    audit_service.record(session=session, actor=user, action="create", elder_id=elder.id, ip=client_ip(request))
    return _profile(session, services, user, elder, request, purpose=access.Grant(access.Purpose.CREATE), audit=False)


@router.get("/lookup")
def lookup_by_phone(phone: str, request: Request, session: DbSession, services: ServicesDep, user: AgentUser):
    """Elders reachable at a caller's number, in any caller-ID format, with whose number it is
    (the whole city, whatever the agent's scope: a call can come from anywhere)."""
    with areas_scope.city_wide(session):
        normalized, matches = elders_service.lookup_by_phone(session=session, raw=phone, area_code=services.settings.city_area_code)
    today = today_in(services.settings.tz)
    for match in matches:
        audit_service.record(session=session, actor=user, action="lookup", elder_id=match.elder.id,
                             detail={"phone": normalized.e164}, ip=client_ip(request))
    return {
        "phone": normalized.e164,
        "display": normalized.display,
        "matches": [
            access.card(session=session, elder=match.elder, today=today)
            | {
                "relation": match.relation,
                "relation_label": presenter.RELATIONS.get(match.relation, match.relation),
                "owner_name": match.owner_name,
                "source": match.source,
            }
            for match in matches
        ],
    }


@router.get("/export")
def export_elders(
    request: Request,
    session: DbSession,
    services: ServicesDep,
    user: SupervisorUser,
    reason: str = Query("", max_length=32, description="why (elders/access.py StatedReason): every full profile is a purpose-bound view"),
    format: Literal["csv", "xlsx"] = "csv",
    q: str = "",
    include_inactive: bool = False,
):
    """The matching profiles in the import layout, for a stated `reason`; each exported elder's
    audit shows the export (full views, as a profile page's). ID numbers in full to admins only."""
    reason = access.check_reason(reason)
    if reason is None:
        raise FieldErrors.single("reason", f"请说明导出理由（可选：{'、'.join(access.StatedReason.labels().values())}）")
    elders = transfer.elders_for_export(session=session, q=q, sealer=services.sealer, include_inactive=include_inactive)
    reveal = auth_service.has_role(user, "admin")
    rows = transfer.export_rows(session=session, elders=elders, sealer=services.sealer, reveal_ids=reveal)
    ip = client_ip(request)
    audit_service.record(session=session, actor=user, action="export", ip=ip,
                         detail={"q": q, "count": len(elders), "format": format, "full_id_numbers": reveal, "reason": reason})
    for elder in elders:
        audit_service.record(session=session, actor=user, action="view", elder_id=elder.id, ip=ip,
                             detail={"via": "export", "reason": reason})
    return download(list(rows), format=format, title="老人档案", name="elders")


@router.post("/import")
def import_elders(file: UploadFile, request: Request, session: DbSession, services: ServicesDep, user: CitySupervisorUser):
    """Import a CSV or XLSX file; returns a row-level report. Valid rows are written, bad rows
    are reported (row, column, reason), re-importing updates by ID number."""
    limit = services.settings.import_max_bytes
    content = file.file.read(limit + 1)
    if len(content) > limit:
        raise FieldErrors.single("file", f"文件超过 {limit / 1024 / 1024:g} MB，请拆分后导入")
    rows = transfer.read_table(file.filename or "", content)
    report = transfer.import_rows(session=session, rows=rows, sealer=services.sealer, area_code=services.settings.city_area_code)
    for elder_id, action, changed in report.written:
        audit_service.record(session=session, actor=user, action=f"import_{action}", elder_id=elder_id,
                             detail={"file": file.filename} | presenter.audit_changes(changed), ip=client_ip(request))
    return report.as_dict()


@router.get("/{elder_id}")
def get_elder(elder_id: Id, request: Request, session: DbSession, services: ServicesDep, user: ReaderUser,
              reason: str | None = Query(None, max_length=32, description="a supervisor's stated reason (elders/access.py)")):
    """The full profile while the user has a call or task open with the elder (or, for supervisors,
    a stated `reason`), else the reduced card; `access` says which and why. Audited either way."""
    elder = elders_service.get_or_raise(session=session, elder_id=elder_id)
    return _profile(session, services, user, elder, request, reason=reason)


@router.patch("/{elder_id}")
def update_elder(elder_id: Id, changes: ElderUpdate, request: Request, session: DbSession, services: ServicesDep, user: AgentUser):
    """Change profile fields (only those sent). Money fields are refused (422): the subsidy moves
    only through the subsidy ledger. The audit entry keeps each changed field's old and new value."""
    elder, changed = elders_service.update(
        session=session, elder_id=elder_id, changes=changes.model_dump(exclude_unset=True), sealer=services.sealer,
        area_code=services.settings.city_area_code,
    )
    audit_service.record(session=session, actor=user, action="update", elder_id=elder.id, detail=presenter.audit_changes(changed),
                         ip=client_ip(request))
    return _profile(session, services, user, elder, request)


@router.post("/{elder_id}/deactivate")
def deactivate_elder(elder_id: Id, body: DeactivateIn, request: Request, session: DbSession, services: ServicesDep, user: AgentUser):
    elder = elders_service.deactivate(session=session, elder_id=elder_id, reason=body.reason)
    audit_service.record(session=session, actor=user, action="deactivate", elder_id=elder.id,
                         detail={"reason": body.reason} | presenter.audit_changes({"active": (True, False)}), ip=client_ip(request))
    return _profile(session, services, user, elder, request)


@router.post("/{elder_id}/phones", status_code=201)
def add_phone(elder_id: Id, phone_in: PhoneIn, request: Request, session: DbSession, services: ServicesDep, user: AgentUser):
    row = elders_service.add_phone(session=session, elder_id=elder_id, phone_in=phone_in, area_code=services.settings.city_area_code)
    number = presenter.mask_phone(row.number)
    audit_service.record(session=session, actor=user, action="add_phone", elder_id=elder_id,
                         detail={"relation": row.relation, "number": number, "changes": {"phones": {"old": None, "new": number}}},
                         ip=client_ip(request))
    return presenter.phone_dict(row)


@router.delete("/{elder_id}/phones/{phone_id}", status_code=204)
def remove_phone(elder_id: Id, phone_id: Id, request: Request, session: DbSession, user: AgentUser):
    row = elders_service.remove_phone(session=session, elder_id=elder_id, phone_id=phone_id)
    number = presenter.mask_phone(row.number)
    audit_service.record(session=session, actor=user, action="remove_phone", elder_id=elder_id,
                         detail={"number": number, "changes": {"phones": {"old": number, "new": None}}}, ip=client_ip(request))


@router.post("/{elder_id}/contacts", status_code=201)
def add_contact(elder_id: Id, contact_in: ContactIn, request: Request, session: DbSession, services: ServicesDep, user: AgentUser):
    row = elders_service.add_contact(session=session, elder_id=elder_id, contact_in=contact_in, area_code=services.settings.city_area_code)
    contact = f"{row.name} {presenter.mask_phone(row.phone)}"
    audit_service.record(session=session, actor=user, action="add_contact", elder_id=elder_id,
                         detail={"name": row.name, "changes": {"emergency_contacts": {"old": None, "new": contact}}}, ip=client_ip(request))
    return presenter.contact_dict(row)


@router.delete("/{elder_id}/contacts/{contact_id}", status_code=204)
def remove_contact(elder_id: Id, contact_id: Id, request: Request, session: DbSession, user: AgentUser):
    row = elders_service.remove_contact(session=session, elder_id=elder_id, contact_id=contact_id)
    contact = f"{row.name} {presenter.mask_phone(row.phone)}"
    audit_service.record(session=session, actor=user, action="remove_contact", elder_id=elder_id,
                         detail={"name": row.name, "changes": {"emergency_contacts": {"old": contact, "new": None}}}, ip=client_ip(request))


def _profile(session, services, user, elder, request: Request, **how) -> dict:
    """The elder as the user may see them now (elders/access.py), the view audited."""
    return access.show(session=session, access=services.elder_access, user=user, elder=elder, today=today_in(services.settings.tz),
                       sealer=services.sealer, via="api", ip=client_ip(request), **how)
