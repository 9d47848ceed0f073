"""Provider staff accounts and how they sign in to the mobile pages (no HTTP here).

Two ways in: phone + password, or the link in a dispatch SMS: a random token held on the server
(callcenter/auth: only its hash is stored), short-lived and single-use. Both end in a server-side
session; logout ends it, and changing the password or deactivating the account ends every session
and every unused link of that account at once. The machinery is callcenter/auth's `PhoneDoor`,
which the visitors' pages (/v/) use too; this module is the provider staff's door.
"""

from __future__ import annotations

from sqlmodel import Session, select

from callcenter import db
from callcenter.auth import service as auth_service
from callcenter.errors import Conflict, FieldErrors
from callcenter.phones import InvalidPhoneNumber, parse_phone
from workorders.models import Provider, ProviderStaff

STAFF_SESSION, STAFF_LINK = auth_service.STAFF_SESSION, auth_service.STAFF_LINK
BadLoginLink = auth_service.BadLoginLink
hide_login_links = auth_service.hide_login_links


def create_staff(*, session: Session, provider_id: int, name: str, phone: str, area_code: str,
                 password: str | None = None) -> ProviderStaff:
    provider = db.get_or_raise(session, Provider, provider_id, "服务商")
    errors = []
    try:
        e164 = parse_phone(phone or "", default_area_code=area_code).e164
    except InvalidPhoneNumber as exc:
        errors.append(("phone", str(exc)))
    if not (name or "").strip():
        errors.append(("name", "必填"))
    if password is not None and len(password) < auth_service.MIN_PASSWORD_LENGTH:
        errors.append(("password", f"密码至少 {auth_service.MIN_PASSWORD_LENGTH} 位"))
    if errors:
        raise FieldErrors(errors)
    if session.exec(select(ProviderStaff.id).where(ProviderStaff.phone == e164)).first() is not None:
        raise Conflict(f"该手机号已是服务商人员账号：{e164}")
    staff = ProviderStaff(provider_id=provider.id, name=name.strip(), phone=e164,
                          password_hash=auth_service.hash_password(password) if password else None)
    session.add(staff)
    session.flush()
    return staff


def update_staff(*, session: Session, staff_id: int, password: str | None = None, active: bool | None = None) -> ProviderStaff:
    staff = db.get_or_raise(session, ProviderStaff, staff_id, "服务商人员")
    if password is not None:
        if len(password) < auth_service.MIN_PASSWORD_LENGTH:
            raise FieldErrors.single("password", f"密码至少 {auth_service.MIN_PASSWORD_LENGTH} 位")
        staff.password_hash = auth_service.hash_password(password)
    if active is not None:
        staff.active = active
    if password is not None or active is False:  # whoever held a session or a link of the account is out
        sign_out_everywhere(session=session, staff_id=staff.id)
    session.add(staff)
    session.flush()
    return staff


def staff_of(*, session: Session, provider_id: int) -> list[ProviderStaff]:
    """The provider's accounts; NotFound for an unknown provider (or one outside the scope)."""
    db.get_or_raise(session, Provider, provider_id, "服务商")
    return list(session.exec(select(ProviderStaff).where(ProviderStaff.provider_id == provider_id).order_by(ProviderStaff.id)))


def dispatcher_of(*, session: Session, provider: Provider) -> ProviderStaff | None:
    """The account behind the provider's notification phone: the dispatch SMS signs it in."""
    return session.exec(select(ProviderStaff).where(ProviderStaff.phone == provider.phone, ProviderStaff.active,
                                                    ProviderStaff.provider_id == provider.id)).first()


def can_sign_in(session: Session, staff: ProviderStaff | None) -> bool:
    """Active account of a provider that has not exited (a suspended one still finishes its orders)."""
    if staff is None or not staff.active:
        return False
    provider = session.get(Provider, staff.provider_id)
    return provider is not None and provider.status != "exited"


DOOR = auth_service.PhoneDoor(model=ProviderStaff, session_kind=STAFF_SESSION, link_kind=STAFF_LINK, link_path="/m/link/",
                              may_sign_in=can_sign_in)


def authenticate(*, session: Session, phone: str, password: str, area_code: str) -> ProviderStaff | None:
    """The staff member with this phone and password, or None (same time for unknown phones)."""
    return DOOR.authenticate(session=session, phone=phone, password=password, area_code=area_code)


def sign_out_everywhere(*, session: Session, staff_id: int) -> None:
    """End every session and unused login link of this staff member."""
    DOOR.sign_out_everywhere(session=session, account_id=staff_id)


def login_link(*, session: Session, public_url: str, minutes: int, staff: ProviderStaff) -> str:
    """A one-time link that signs `staff` in within `minutes` (for a dispatch SMS)."""
    return DOOR.login_link(session=session, public_url=public_url, minutes=minutes, account=staff)


def staff_for_link(*, session: Session, token: str, minutes: int, use: bool) -> ProviderStaff:
    """The account a login link signs in (`use`: and the link is spent); BadLoginLink, in
    Chinese, saying why when it cannot."""
    return DOOR.account_for_link(session=session, token=token, minutes=minutes, use=use)


def start_session(*, session: Session, staff: ProviderStaff, hours: int) -> str:
    return DOOR.start_session(session=session, account=staff, hours=hours)


def staff_for_session(*, session: Session, token: str) -> ProviderStaff | None:
    """The staff member a session token signs in, while the session lasts and the account may sign in."""
    return DOOR.account_for_session(session=session, token=token)


def end_session(*, session: Session, token: str) -> None:
    DOOR.end_session(session=session, token=token)
