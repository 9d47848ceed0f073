"""Provider staff accounts and how they sign in to the mobile pages (no HTTP here).

Two ways in: phone + password, or the signed link in a dispatch SMS (itsdangerous, expiring).
Both end in the same signed session cookie, which carries a fingerprint of the password hash, so
changing the password or deactivating the account ends every session at once.
"""

from __future__ import annotations

import hashlib
import hmac

from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlmodel import Session, select

from callcenter import db
from callcenter.auth import service as auth_service
from callcenter.errors import Conflict, DomainError, FieldErrors
from callcenter.phones import InvalidPhoneNumber, parse_phone
from workorders.models import Provider, ProviderStaff

LINK_SALT = "provider-login-link"
SESSION_SALT = "provider-session"


class BadLoginLink(DomainError):
    """A link that was tampered with, belongs to a removed account, or is too old."""


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


def tokens_for(settings) -> "Tokens":
    return Tokens(settings.secret, link_max_age=settings.provider_link_hours * 3600,
                  session_max_age=settings.provider_session_hours * 3600)


def login_link(*, tokens: "Tokens", public_url: str, staff: ProviderStaff) -> str:
    return f"{public_url.rstrip('/')}/m/link/{tokens.link_token(staff)}"


class Tokens:
    """Signed login links and session cookies for provider staff."""

    def __init__(self, secret: bytes, *, link_max_age: int, session_max_age: int):
        self.links = URLSafeTimedSerializer(secret, salt=LINK_SALT)
        self.sessions = URLSafeTimedSerializer(secret, salt=SESSION_SALT)
        self.link_max_age = link_max_age
        self.session_max_age = session_max_age
        self.secret = secret

    def link_token(self, staff: ProviderStaff) -> str:
        return self.links.dumps({"sid": staff.id})

    def staff_for_link(self, token: str, session: Session) -> ProviderStaff:
        """The account a login link signs in; BadLoginLink (in Chinese) when it cannot."""
        hours = self.link_max_age // 3600
        try:
            payload = self.links.loads(token, max_age=self.link_max_age)
        except SignatureExpired as exc:
            raise BadLoginLink(f"登录链接已过期（有效期 {hours} 小时），请用手机号和密码登录，或请热线重新发送") from exc
        except BadSignature as exc:
            raise BadLoginLink("登录链接无效（可能被改动或复制不完整），请用手机号和密码登录") from exc
        staff = session.get(ProviderStaff, payload.get("sid")) if isinstance(payload, dict) else None
        if not can_sign_in(session, staff):
            raise BadLoginLink("该账号已停用，请联系热线")
        return staff

    def _fingerprint(self, staff: ProviderStaff) -> str:
        return hmac.new(self.secret, (staff.password_hash or "link-only").encode(), hashlib.sha256).hexdigest()[:16]

    def session_token(self, staff: ProviderStaff) -> str:
        return self.sessions.dumps({"sid": staff.id, "fp": self._fingerprint(staff)})

    def staff_for_session(self, token: str, session: Session) -> ProviderStaff | None:
        try:
            payload = self.sessions.loads(token, max_age=self.session_max_age)
        except (BadSignature, SignatureExpired):
            return None
        staff = session.get(ProviderStaff, payload.get("sid"))
        if not can_sign_in(session, staff) or not hmac.compare_digest(payload.get("fp", ""), self._fingerprint(staff)):
            return None
        return staff
