"""Provider staff accounts and how they sign in to the mobile pages (no HTTP here).

Two ways in: phone + password, or the link in a dispatch SMS: a random token held on the server
(callcenter/auth: only its hash is stored), short-lived and single-use. Both end in a server-side
session; logout ends it, and changing the password or deactivating the account ends every session
and every unused link of that account at once.
"""

from __future__ import annotations

import re

from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, select

from callcenter import db
from callcenter.auth import service as auth_service
from callcenter.errors import Conflict, DomainError, FieldErrors
from callcenter.phones import InvalidPhoneNumber, parse_phone
from workorders.models import Provider, ProviderStaff

STAFF_SESSION, STAFF_LINK = auth_service.STAFF_SESSION, auth_service.STAFF_LINK


class BadLoginLink(DomainError):
    """A link that was never issued (tampered, cut short), is too old, was used already, or whose
    account changed its password or was deactivated since."""


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


def authenticate(*, session: Session, phone: str, password: str, area_code: str) -> ProviderStaff | None:
    """The staff member with this phone and password, or None (same time for unknown phones)."""
    try:
        e164 = parse_phone(phone or "", default_area_code=area_code).e164
    except InvalidPhoneNumber:
        e164 = None
    staff = session.exec(select(ProviderStaff).where(ProviderStaff.phone == e164)).first() if e164 else None
    try:
        auth_service.verify_password(staff.password_hash if staff and staff.password_hash else None, password)
    except (VerificationError, InvalidHashError):
        return None
    return staff if can_sign_in(session, staff) else None


def sign_out_everywhere(*, session: Session, staff_id: int) -> None:
    """End every session and unused login link of this staff member."""
    for kind in (STAFF_SESSION, STAFF_LINK):
        auth_service.revoke_all(session=session, kind=kind, subject_id=staff_id)


def login_link(*, session: Session, public_url: str, minutes: int, staff: ProviderStaff) -> str:
    """A one-time link that signs `staff` in within `minutes` (for a dispatch SMS)."""
    token = auth_service.issue_token(session=session, kind=STAFF_LINK, subject_id=staff.id, max_age=minutes * 60)
    return f"{public_url.rstrip('/')}/m/link/{token}"


LOGIN_LINK = re.compile(r"/m/link/[A-Za-z0-9_-]+")


def hide_login_links(text: str) -> str:
    """A message as others may read it: a one-time login link in it would sign them in as the
    staff member it was sent to, so its token is left out."""
    return LOGIN_LINK.sub("/m/link/（一次性登录链接，已隐藏）", text)


def staff_for_link(*, session: Session, token: str, minutes: int, use: bool) -> ProviderStaff:
    """The account a login link signs in (`use`: and the link is spent); BadLoginLink, in
    Chinese, saying why when it cannot."""
    record = auth_service.find_token(session=session, kind=STAFF_LINK, token=token)
    if record is None:
        raise BadLoginLink("登录链接无效（可能被改动或复制不完整），请用手机号和密码登录")
    if record.revoked_at is not None:
        raise BadLoginLink("登录链接已失效（每个链接只能使用一次，账号改密码或停用后也会失效），请用手机号和密码登录，或请热线重新发送")
    if not auth_service.is_valid(record):
        raise BadLoginLink(f"登录链接已过期（有效期 {minutes} 分钟），请用手机号和密码登录，或请热线重新发送")
    staff = session.get(ProviderStaff, record.subject_id)
    if not can_sign_in(session, staff):
        raise BadLoginLink("该账号已停用，请联系热线")
    if use and auth_service.use_token(session=session, kind=STAFF_LINK, token=token) is None:
        raise BadLoginLink("登录链接已失效（每个链接只能使用一次），请用手机号和密码登录，或请热线重新发送")
    return staff


def start_session(*, session: Session, staff: ProviderStaff, hours: int) -> str:
    return auth_service.issue_token(session=session, kind=STAFF_SESSION, subject_id=staff.id, max_age=hours * 3600)


def staff_for_session(*, session: Session, token: str) -> ProviderStaff | None:
    """The staff member a session token signs in, while the session lasts and the account may sign in."""
    staff_id = auth_service.token_subject(session=session, kind=STAFF_SESSION, token=token)
    staff = session.get(ProviderStaff, staff_id) if staff_id is not None else None
    return staff if can_sign_in(session, staff) else None


def end_session(*, session: Session, token: str) -> None:
    auth_service.revoke_token(session=session, kind=STAFF_SESSION, token=token)
