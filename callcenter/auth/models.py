"""User accounts of the hotline centre."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, DateTime, Index
from sqlmodel import Field, SQLModel

from callcenter.timeutil import utcnow

# Two axes. Hotline staff rank agent < supervisor < admin (require_role("agent") admits the three).
# Area officials are not on that scale: they read their area's data and use no console, telephony
# or account management, so no official ever passes a hotline role check.
# Visitors (巡访员: community workers and volunteers) are neither: they sign in on their phone pages
# (/v/, callcenter/care/mobile.py) by phone, never to the hotline's pages or API.
HOTLINE_ROLES = {"agent": "坐席", "supervisor": "班长", "admin": "管理员"}
OFFICIAL_ROLES = {"district_official": "区民政", "street_official": "街道", "community_staff": "社区"}
VISITOR = "visitor"
ROLES = HOTLINE_ROLES | OFFICIAL_ROLES | {VISITOR: "巡访员"}
ROLE_RANK = {"agent": 1, "supervisor": 2, "admin": 3}
# The area level an official's account must be attached to (areas.models.AREA_LEVELS).
OFFICIAL_LEVEL = {"district_official": "district", "street_official": "street", "community_staff": "community"}
# … and every account that must have an area: a visitor belongs to one community.
ROLE_LEVEL = OFFICIAL_LEVEL | {VISITOR: "community"}


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True)
    display_name: str = Field(default="", max_length=64)
    role: str = Field(max_length=32)
    password_hash: str = Field(max_length=255)
    sip_extension: str | None = Field(default=None, max_length=32, unique=True)
    active: bool = Field(default=True)
    sip_secret_sealed: str | None = Field(default=None, max_length=512, description="web softphone SIP password, encrypted")
    queues: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False),
                              description="the queues an agent joins when ready; empty: the configured QUEUE_NAME")
    queue_penalty: int = Field(default=0, description="Asterisk member penalty: higher is offered calls later")
    area_id: int | None = Field(default=None, foreign_key="areas.id", index=True,
                                description="the account's scope (district, street or community); None: the whole city")
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    last_login_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    phone: str | None = Field(default=None, max_length=20, unique=True,
                              description="E.164 mobile: a visitor's sign-in name and where login links are sent")
    volunteer: bool = Field(default=False, description="a visitor who is a volunteer (志愿者: time-bank hours), not community staff")


class AccessToken(SQLModel, table=True):
    """A sign-in held on the server: a session or a one-time login link sent by SMS, of a `users`
    account (a hotline user, a visitor) or of provider staff. Only a hash of the random token is stored, so
    the table read by someone else signs no one in. A token works until `expires_at`, unless
    revoked (logout, a used link, a password change, a deactivation)."""

    __tablename__ = "access_tokens"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16, description="user_session | user_link | staff_session | staff_link")
    subject_id: int = Field(description="users.id for user_session and user_link, provider_staff.id otherwise")
    token_hash: str = Field(max_length=64, unique=True, description="SHA-256 of the token, hex")
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))

    __table_args__ = (Index("ix_access_tokens_subject", "kind", "subject_id"),)
