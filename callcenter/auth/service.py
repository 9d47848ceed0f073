"""Accounts, passwords (argon2), login throttling (callcenter/auth/throttle.py) and server-side
sessions (random tokens whose hashes live in `access_tokens`)."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, true, update
from sqlmodel import Session, select

from callcenter import db
from callcenter.areas import scope as areas_scope
from callcenter.areas import service as areas_service
from callcenter.areas.models import AREA_LEVELS
from callcenter.auth.models import OFFICIAL_ROLES, ROLE_LEVEL, ROLE_RANK, ROLES, VISITOR, AccessToken, User
from callcenter.errors import Conflict, DomainError, FieldErrors, NotFound, PermissionDenied
from callcenter.phones import try_parse_phone
from callcenter.timeutil import as_utc, utcnow

log = logging.getLogger(__name__)
_hasher = PasswordHasher()  # argon2id with argon2-cffi's defaults (RFC 9106's second choice: t=3, 64 MiB)
_DUMMY_HASH = _hasher.hash("timing-equaliser")


def configure_hashing(*, time_cost: int, memory_kib: int) -> None:
    """The cost of new password hashes in this process (settings PASSWORD_HASH_*). Hashes keep the
    parameters they were made with, so changing them never locks anyone out; a sign-in re-hashes
    an old one at the new cost. The test suite lowers it: a default hash and check take ~0.1 s
    each, and the suite signs in hundreds of times."""
    global _hasher, _DUMMY_HASH
    if (_hasher.time_cost, _hasher.memory_cost) != (time_cost, memory_kib):
        _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        _DUMMY_HASH = _hasher.hash("timing-equaliser")
MIN_PASSWORD_LENGTH = 8


class TooManyAttempts(DomainError):
    def __init__(self, retry_after: int):
        wait = f"{retry_after} 秒" if retry_after < 60 else f"{(retry_after + 59) // 60} 分钟"
        super().__init__(f"登录失败次数过多，请 {wait}后再试")
        self.retry_after = retry_after


class BadCredentials(DomainError):
    def __init__(self):
        super().__init__("用户名或密码错误")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> None:
    """Raises VerificationError unless `password` matches; with no hash it checks a dummy one,
    so an unknown account takes as long as a wrong password."""
    _hasher.verify(password_hash or _DUMMY_HASH, password)
    if password_hash is None:
        raise VerificationError("no such account")


def has_role(user: User, role: str) -> bool:
    """True when `user` has hotline `role` or a higher one (agent < supervisor < admin). Area
    officials have no hotline role."""
    return ROLE_RANK.get(user.role, 0) >= ROLE_RANK[role]


def is_official(user: User) -> bool:
    """A district, street or community account: reads its area's data, nothing else."""
    return user.role in OFFICIAL_ROLES


def is_visitor(user: User) -> bool:
    """A community's visitor (巡访员): signs in on the visit pages only."""
    return user.role == VISITOR


def scope_of(*, session: Session, user: User) -> areas_scope.Scope:
    """What `user` may see: its area and everything under it (no area: the whole city); a street
    office also sees the work of the providers serving its street; hotline staff also the callers
    on the line with them."""
    return areas_scope.scope_of(session=session, area_id=user.area_id, providers_work=user.role == "street_official",
                                extension=user.sip_extension if has_role(user, "agent") else None)


def _area_error(*, session: Session, role: str, area_id: int | None) -> str | None:
    """Why `area_id` cannot be the scope of an account with `role` (None: it can)."""
    if area_id is None:
        return f"{ROLES[role]}账号须指定所属地区" if role in ROLE_LEVEL else None
    area = areas_service.get_or_none(session=session, area_id=area_id)
    if area is None:
        return f"地区 {area_id} 不存在"
    level = ROLE_LEVEL.get(role)
    if level is not None and area.level != level:
        return f"{ROLES[role]}账号须属于一个{AREA_LEVELS[level]}，{area.name}是{AREA_LEVELS.get(area.level, area.level)}"
    return None


def create_user(
    *, session: Session, username: str, role: str, password: str, display_name: str = "", sip_extension: str | None = None,
    area_id: int | None = None,
) -> User:
    errors = []
    username = username.strip()
    if not username or len(username) > 64:
        errors.append(("username", "用户名须为 1 到 64 个字符"))
    if role not in ROLES:
        errors.append(("role", f"角色无效：{role}（可选：{', '.join(ROLES)}）"))
    if len(password) < MIN_PASSWORD_LENGTH:
        errors.append(("password", f"密码至少 {MIN_PASSWORD_LENGTH} 位"))
    if role in ROLES and (area_error := _area_error(session=session, role=role, area_id=area_id)):
        errors.append(("area_id", area_error))
    if errors:
        raise FieldErrors(errors)
    if session.exec(select(User).where(User.username == username)).first():
        raise Conflict(f"用户名已存在：{username}")
    if sip_extension and session.exec(select(User).where(User.sip_extension == sip_extension)).first():
        raise Conflict(f"分机号已被占用：{sip_extension}")
    user = User(username=username, role=role, password_hash=hash_password(password), display_name=display_name or username,
                sip_extension=sip_extension or None, area_id=area_id)
    session.add(user)
    session.flush()
    return user


def update_user(*, session: Session, user_id: int, changes: dict) -> User:
    """Change role, area, display name, extension, active flag, password, queues or penalty (keys
    present only). A new password or a deactivation ends every session of the account at once."""
    user = get_user_or_raise(session=session, user_id=user_id)
    if "role" in changes and changes["role"] not in ROLES:
        raise FieldErrors.single("role", f"角色无效：{changes['role']}")
    if "role" in changes or "area_id" in changes:
        area_error = _area_error(session=session, role=changes.get("role", user.role), area_id=changes.get("area_id", user.area_id))
        if area_error:
            raise FieldErrors.single("area_id", area_error)
    if "password" in changes and len(changes["password"]) < MIN_PASSWORD_LENGTH:
        raise FieldErrors.single("password", f"密码至少 {MIN_PASSWORD_LENGTH} 位")
    if "password" in changes or changes.get("active") is False:  # whoever held a session or a link of the account is out
        for kind in (USER_SESSION, USER_LINK):
            revoke_all(session=session, kind=kind, subject_id=user.id)
    if "password" in changes:
        user.password_hash = hash_password(changes.pop("password"))
    if "queue_penalty" in changes:
        changes["queue_penalty"] = changes["queue_penalty"] or 0
        if not 0 <= changes["queue_penalty"] <= 100:
            raise FieldErrors.single("queue_penalty", "优先级惩罚值须在 0 到 100 之间")
    for name in ("role", "area_id", "display_name", "sip_extension", "active", "queues", "queue_penalty"):
        if name in changes:
            setattr(user, name, changes[name])
    session.add(user)
    session.flush()
    return user


def set_sip_secret(*, user: User, secret: str | None, sealer) -> None:
    """The agent's SIP password for the web softphone, encrypted at rest; empty or None clears it."""
    user.sip_secret_sealed = sealer.encrypt(secret) if secret else None


def get_user_or_raise(*, session: Session, user_id: int) -> User:
    return db.get_or_raise(session, User, user_id, "用户")


def check_may_manage(actor: User, role: str, *, area_id: int | None = None, scope: areas_scope.Scope = areas_scope.CITY) -> None:
    """Supervisors manage agents; only admins manage supervisors, admins and area officials. A
    scoped actor (`scope`: its own) gives accounts an area within its scope only."""
    if role != "agent" and not has_role(actor, "admin"):
        raise PermissionDenied("只有管理员可以管理班长、管理员和区、街道、社区账号")
    if not scope.city and area_id not in scope.areas:
        raise PermissionDenied("只能管理本辖区内的账号")


def accounts_within(scope: areas_scope.Scope):
    """The accounts a scoped manager sees: those attached to its area or under it."""
    return true() if scope.city else areas_scope.any_of(User.area_id, scope.areas)


def list_users(*, session: Session, scope: areas_scope.Scope = areas_scope.CITY) -> list[User]:
    """The hotline's and the areas' accounts (visitors, many per community, are listed by care)."""
    return list(session.exec(select(User).where(accounts_within(scope), User.role != VISITOR).order_by(User.role, User.username)))


def get_user_within_or_raise(*, session: Session, user_id: int, scope: areas_scope.Scope) -> User:
    """The account, or NotFound when it is outside `scope` (its existence is not revealed)."""
    user = session.exec(select(User).where(User.id == user_id, accounts_within(scope))).first()
    if user is None:
        raise NotFound(f"用户 {user_id} 不存在")
    return user


def authenticate(*, session: Session, username: str, password: str) -> User | None:
    """The active user with this password, or None. Takes the same time for unknown users."""
    user = session.exec(select(User).where(User.username == username.strip())).first()
    try:
        verify_password(user.password_hash if user else None, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.active or is_visitor(user):  # visitors sign in by phone on their own pages
        return None
    user.last_login_at = utcnow()
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    session.add(user)
    return user


# --- server-side sign-ins: sessions and one-time links ------------------------------------------

USER_SESSION = "user_session"  # a `users` account: a hotline user's, or a visitor's on the visit pages
USER_LINK = "user_link"  # the one-time login link sent to a visitor
STAFF_SESSION = "staff_session"  # a provider staff member on the mobile pages (workorders/staff.py)
STAFF_LINK = "staff_link"  # the one-time login link of a dispatch SMS


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(*, session: Session, kind: str, subject_id: int, max_age: int) -> str:
    """A new random token for `subject_id`, valid `max_age` seconds; only its hash is stored. The
    subject's expired tokens of that kind are dropped on the way."""
    now = utcnow()
    session.execute(delete(AccessToken).where(AccessToken.kind == kind, AccessToken.subject_id == subject_id,
                                              AccessToken.expires_at <= now))
    token = secrets.token_urlsafe(32)
    session.add(AccessToken(kind=kind, subject_id=subject_id, token_hash=_digest(token), created_at=now,
                            expires_at=now + timedelta(seconds=max_age)))
    return token


def find_token(*, session: Session, kind: str, token: str) -> AccessToken | None:
    """The stored record of `token` (valid or not), or None for a token never issued."""
    if not token or len(token) > 200:
        return None
    return session.exec(select(AccessToken).where(AccessToken.kind == kind, AccessToken.token_hash == _digest(token))).first()


def is_valid(record: AccessToken | None) -> bool:
    return record is not None and record.revoked_at is None and as_utc(record.expires_at) > utcnow()


def token_subject(*, session: Session, kind: str, token: str) -> int | None:
    """Whose token this is, while it is neither expired nor revoked."""
    record = find_token(session=session, kind=kind, token=token)
    return record.subject_id if is_valid(record) else None


def use_token(*, session: Session, kind: str, token: str) -> int | None:
    """Single use: revoke a valid token and return its subject; None when it was not valid, or
    another request used it first (compare-and-set)."""
    now = utcnow()
    record = find_token(session=session, kind=kind, token=token)
    if not is_valid(record):
        return None
    used = session.execute(update(AccessToken).where(AccessToken.id == record.id, AccessToken.revoked_at.is_(None))
                           .values(revoked_at=now).execution_options(synchronize_session=False))
    return record.subject_id if used.rowcount == 1 else None


def revoke_token(*, session: Session, kind: str, token: str) -> None:
    record = find_token(session=session, kind=kind, token=token)
    if record is not None and record.revoked_at is None:
        record.revoked_at = utcnow()
        session.add(record)


def revoke_all(*, session: Session, kind: str, subject_id: int) -> None:
    """End every token of this kind the subject holds (password changed, account deactivated)."""
    session.execute(update(AccessToken).where(AccessToken.kind == kind, AccessToken.subject_id == subject_id,
                                              AccessToken.revoked_at.is_(None))
                    .values(revoked_at=utcnow()).execution_options(synchronize_session=False))


class UserSessions:
    """Sessions of hotline users: the cookie holds a random token, the server its hash, so logout,
    a password change or a deactivation ends a session at once (no signed cookie outliving it)."""

    def __init__(self, max_age: int):
        self.max_age = max_age

    def issue(self, user: User, session: Session) -> str:
        return issue_token(session=session, kind=USER_SESSION, subject_id=user.id, max_age=self.max_age)

    def read(self, token: str, session: Session) -> User | None:
        """The active hotline or area user this token signs in, or None (a visitor's session
        token opens the visit pages only)."""
        user_id = token_subject(session=session, kind=USER_SESSION, token=token)
        user = session.get(User, user_id) if user_id is not None else None
        return user if user is not None and user.active and not is_visitor(user) else None

    def revoke(self, token: str, session: Session) -> None:
        revoke_token(session=session, kind=USER_SESSION, token=token)


# --- phone pages: sign-in by phone and password, or by a one-time SMS link -----------------------

LINK_PATHS = ("/m/link/", "/v/link/")  # the login links of the phone pages: provider staff, visitors
_LOGIN_LINK = re.compile("(" + "|".join(re.escape(path) for path in LINK_PATHS) + ")[A-Za-z0-9_-]+")


def hide_login_links(text: str) -> str:
    """A message as others may read it: a one-time login link in it would sign them in as the
    person it was sent to, so its token is left out."""
    return _LOGIN_LINK.sub(r"\1（一次性登录链接，已隐藏）", text)


class BadLoginLink(DomainError):
    """A link that was never issued (tampered, cut short), is too old, was used already, or whose
    account changed its password or was deactivated since."""


@dataclass(frozen=True)
class PhoneDoor:
    """How the people of one set of phone pages sign in: provider staff at /m/ (workorders/staff.py),
    visitors at /v/ (`VISITOR_DOOR`). Two ways in: phone + password, or a link sent by SMS (a
    random token held on the server, only its hash stored, short-lived and single-use). Both end
    in a server-side session; logout ends it, and a password change or a deactivation ends every
    session and unused link of the account at once (`sign_out_everywhere`).

    `model` is their account table (with `id`, `phone` in E.164, `password_hash`: None or empty
    for link-only accounts, `active`); `may_sign_in` says whether an account may sign in now."""

    model: type
    session_kind: str
    link_kind: str
    link_path: str
    may_sign_in: Callable[[Session, Any], bool]

    def authenticate(self, *, session: Session, phone: str, password: str, area_code: str) -> Any | None:
        """The account with this phone and password, or None (same time for unknown phones)."""
        parsed = try_parse_phone(phone, default_area_code=area_code)
        account = session.exec(select(self.model).where(self.model.phone == parsed.e164)).first() if parsed else None
        try:
            verify_password((account.password_hash or None) if account else None, password)
        except (VerificationError, InvalidHashError):
            return None
        return account if self.may_sign_in(session, account) else None

    def login_link(self, *, session: Session, public_url: str, minutes: int, account: Any) -> str:
        """A one-time link that signs `account` in within `minutes` (for an SMS)."""
        token = issue_token(session=session, kind=self.link_kind, subject_id=account.id, max_age=minutes * 60)
        return f"{public_url.rstrip('/')}{self.link_path}{token}"

    def account_for_link(self, *, session: Session, token: str, minutes: int, use: bool) -> Any:
        """The account a login link signs in (`use`: and the link is spent); BadLoginLink, in
        Chinese, saying why when it cannot."""
        record = find_token(session=session, kind=self.link_kind, token=token)
        if record is None:
            raise BadLoginLink("登录链接无效（可能被改动或复制不完整），请用手机号和密码登录")
        if record.revoked_at is not None:
            raise BadLoginLink("登录链接已失效（每个链接只能使用一次，账号改密码或停用后也会失效），请用手机号和密码登录，或请热线重新发送")
        if not is_valid(record):
            raise BadLoginLink(f"登录链接已过期（有效期 {minutes} 分钟），请用手机号和密码登录，或请热线重新发送")
        account = session.get(self.model, record.subject_id)
        if not self.may_sign_in(session, account):
            raise BadLoginLink("该账号已停用，请联系热线")
        if use and use_token(session=session, kind=self.link_kind, token=token) is None:
            raise BadLoginLink("登录链接已失效（每个链接只能使用一次），请用手机号和密码登录，或请热线重新发送")
        return account

    def start_session(self, *, session: Session, account: Any, hours: int) -> str:
        return issue_token(session=session, kind=self.session_kind, subject_id=account.id, max_age=hours * 3600)

    def account_for_session(self, *, session: Session, token: str) -> Any | None:
        """The account a session token signs in, while the session lasts and the account may sign in."""
        subject = token_subject(session=session, kind=self.session_kind, token=token)
        account = session.get(self.model, subject) if subject is not None else None
        return account if self.may_sign_in(session, account) else None

    def end_session(self, *, session: Session, token: str) -> None:
        revoke_token(session=session, kind=self.session_kind, token=token)

    def sign_out_everywhere(self, *, session: Session, account_id: int) -> None:
        """End every session and unused login link of this account."""
        for kind in (self.session_kind, self.link_kind):
            revoke_all(session=session, kind=kind, subject_id=account_id)


def _visitor_may_sign_in(session: Session, user: User | None) -> bool:
    return user is not None and user.active and is_visitor(user)


# Visitors are `users` rows: their sessions are user sessions (which the hotline's cookie refuses:
# UserSessions.read), and deactivating or re-passwording them through update_user ends both kinds.
VISITOR_DOOR = PhoneDoor(model=User, session_kind=USER_SESSION, link_kind=USER_LINK, link_path="/v/link/",
                         may_sign_in=_visitor_may_sign_in)
