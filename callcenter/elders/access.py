"""Purpose-bound access to elder profiles (PIPL: ID numbers and health data are sensitive personal
information): what may this user see of this elder now, and why. The one place of the rule; the
JSON API, the screen pop and the pages all show an elder through `show`.

- Anyone with an open purpose on the elder sees the full profile: a call they hold or are
  wrapping up that is linked to the elder, an open work order on the elder that is theirs or on
  the agents' shared list, a callback request of the elder due on the agents' list. The domains
  that own those records say whether one is open (`PurposeFinder`s: calls/purposes.py,
  workorders/purposes.py, ivr/purposes.py); the composition root (main.py) hands them to
  `ElderAccess`, so this module imports no higher layer.
- Without one, supervisors and admins see the full profile only with a stated reason from a short
  list (`StatedReason`); agents see the reduced card whatever they state.
- Everyone else sees the card: name, masked phones, age, community, active flag.
Every full view is audited (`view`, with its reason and the call, order or callback request that
grants it); card views are audited as `view_card`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel import Session

from callcenter.areas.models import Area
from callcenter.audit import service as audit_service
from callcenter.auth import service as auth_service
from callcenter.auth.models import User
from callcenter.crypto import Sealer
from callcenter.elders import presenter
from callcenter.elders import service as elders_service
from callcenter.elders.models import GENDERS, Elder
from callcenter.errors import FieldErrors
from callcenter.timeutil import age_on, utcnow
from callcenter.vocabulary import Vocabulary


class Purpose(Vocabulary):
    """Why a full view was allowed: an open task with the elder (found), or a stated reason."""

    CALL = "call", "通话中"
    ORDER = "order", "处理工单"
    CALLBACK = "callback", "回电任务"
    CREATE = "create", "新建档案"


class StatedReason(Vocabulary):
    """What a supervisor or admin may state to open a profile outside any call or task."""

    SEARCH = "search", "班长查询核实"
    COMPLAINT = "complaint", "投诉处理"
    QUALITY_CHECK = "quality_check", "质检抽查"
    CORRECTION = "correction", "档案更正"
    SUBJECT_REQUEST = "subject_request", "本人或监护人申请"


# Which record of a found purpose its `ref` is, in the audit detail.
REF_KEYS = {Purpose.CALL: "call_id", Purpose.ORDER: "order_id", Purpose.CALLBACK: "callback_request_id"}


@dataclass(frozen=True)
class Grant:
    """One reason for a full view: a purpose or stated reason, and the record behind it."""

    reason: str
    ref: int | None = None

    @property
    def label(self) -> str:
        return Purpose.label_of(self.reason) if self.reason in Purpose.labels() else StatedReason.label_of(self.reason)

    def detail(self) -> dict:
        key = REF_KEYS.get(self.reason)
        return {"reason": self.reason} | ({key: self.ref} if key and self.ref is not None else {})


# A domain's answer to "has `user` an open task with this elder now?": the grant, or None.
PurposeFinder = Callable[..., Grant | None]  # (*, session, user, elder_id, now) -> Grant | None


@dataclass(frozen=True)
class Access:
    full: bool
    grant: Grant | None = None
    may_state_reason: bool = False

    def as_dict(self) -> dict:
        if self.full and self.grant is not None:
            return {"level": "full", "reason": self.grant.reason, "reason_label": self.grant.label,
                    **{k: v for k, v in self.grant.detail().items() if k != "reason"}}
        return {"level": "card", "message": "仅显示基本信息：查看完整档案须有与该老人进行中的通话或任务"
                                            + ("，或说明查看理由" if self.may_state_reason else ""),
                "reasons": StatedReason.labels() if self.may_state_reason else {}}


def check_reason(reason: str | None) -> str | None:
    """A stated reason, checked (422 in Chinese with the choices); blank is none."""
    if not reason:
        return None
    if reason not in StatedReason.labels():
        raise FieldErrors.single("reason", f"查看理由无效：{reason}（可选：{'、'.join(StatedReason.labels().values())}）")
    return reason


class ElderAccess:
    """The policy, with the purpose finders of the domains that own calls, orders and callbacks."""

    def __init__(self, finders: Sequence[PurposeFinder] = ()):
        self.finders = tuple(finders)

    def open_purpose(self, *, session: Session, user: User, elder_id: int, now: datetime | None = None) -> Grant | None:
        """The first open call, order or callback request that gives `user` a purpose, if any."""
        now = now or utcnow()
        for finder in self.finders:
            grant = finder(session=session, user=user, elder_id=elder_id, now=now)
            if grant is not None:
                return grant
        return None

    def decide(self, *, session: Session, user: User, elder_id: int, reason: str | None = None,
               purpose: Grant | None = None) -> Access:
        """What `user` may see of the elder now. `purpose`: a grant the caller established itself
        (the user just created the profile); `reason`: a supervisor's stated reason."""
        reason = check_reason(reason)
        if auth_service.is_official(user):  # area officials read their area's records, never a full profile
            return Access(full=False)
        supervisor = auth_service.has_role(user, "supervisor")
        stated = Grant(reason) if supervisor and reason is not None else None  # what they chose to state is recorded
        grant = purpose or stated or self.open_purpose(session=session, user=user, elder_id=elder_id)
        return Access(full=grant is not None, grant=grant, may_state_reason=supervisor)


def mask_phone(e164: str | None) -> str:
    """138 0013 8000 → 138****8000; a landline keeps its area code and last 4 digits."""
    shown = presenter.display_phone(e164)
    digits = [i for i, ch in enumerate(shown) if ch.isdigit()]
    if len(digits) <= 7:
        return "*" * len(digits)
    hidden = set(digits[3:-4]) if shown.startswith("1") else set(digits[len(digits) - 8:-4])
    return "".join("*" if i in hidden else ch for i, ch in enumerate(shown) if ch != " ")


def card(*, session: Session, elder: Elder, today: date) -> dict:
    """The reduced card: who this is, without address detail, health, contacts, notes or ID."""
    community = session.get(Area, elder.community_id) if elder.community_id else None
    phones = elders_service.phones_of(session=session, elder_id=elder.id)
    return {
        "id": elder.id,
        "name": elder.name,
        "gender": elder.gender,
        "gender_label": GENDERS.get(elder.gender, "未知"),
        "age": age_on(elder.birth_date, today),
        "community_id": elder.community_id,
        "community": community.name if community else None,
        "phones": [{"masked": mask_phone(row.number), "relation": row.relation,
                    "relation_label": presenter.RELATIONS.get(row.relation, row.relation)} for row in phones],
        "active": elder.active,
    }


def show(*, session: Session, access: ElderAccess, user: User, elder: Elder, today: date, sealer: Sealer, via: str,
         ip: str | None, reason: str | None = None, purpose: Grant | None = None, audit: bool = True) -> dict:
    """The elder as `user` may see them now, with `access` saying which and why; the view is
    audited (full: `view` with its reason; card: `view_card`)."""
    decision = access.decide(session=session, user=user, elder_id=elder.id, reason=reason, purpose=purpose)
    if decision.full:
        shown = presenter.profile(session=session, elder=elder, today=today, reveal_id=auth_service.has_role(user, "admin"),
                                  sealer=sealer)
    else:
        shown = card(session=session, elder=elder, today=today)
    if audit:
        detail = {"via": via} | (decision.grant.detail() if decision.full else {})
        audit_service.record(session=session, actor=user, action="view" if decision.full else "view_card", elder_id=elder.id,
                             detail=detail, ip=ip)
    return shown | {"access": decision.as_dict()}
