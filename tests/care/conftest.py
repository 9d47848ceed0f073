"""Care tests' data: rules, elders with phones and past contacts, agents on duty."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from callcenter.calls.models import AgentStatus, CallRecord
from callcenter.care.models import CareRule
from callcenter.elders.models import Elder, ElderPhone, EmergencyContact
from callcenter.timeutil import utcnow
from tests.conftest import make_user

HIGH = {"name": "独居失能", "living_situations": ["lives_alone"], "ability_levels": ["moderate", "severe"],
        "call_every_days": 3, "visit_every_days": 7, "risk_level": "3"}
EMPTY_NEST = {"name": "空巢", "living_situations": ["empty_nest"], "call_every_days": 7, "visit_every_days": None,
              "risk_level": "2"}


def add_rules(services, *rules: dict) -> list[int]:
    with services.db.session_scope() as session:
        made = [CareRule(position=position, **rule) for position, rule in enumerate(rules, start=1)]
        session.add_all(made)
        session.flush()
        return [rule.id for rule in made]


def add_elder(services, name: str, *, living: str = "with_family", ability: str = "intact", phone: str | None = None,
              contacts: tuple[tuple[str, str], ...] = (), born: date = date(1945, 3, 1), community_id: int | None = None) -> int:
    with services.db.session_scope() as session:
        elder = Elder(name=name, name_pinyin=name, name_initials=name, living_situation=living, ability_level=ability,
                      birth_date=born, community_id=community_id, address="幸福街1号")
        session.add(elder)
        session.flush()
        if phone:
            session.add(ElderPhone(elder_id=elder.id, number=phone, number_rev=phone[::-1], is_primary=True))
        for priority, (contact_name, contact_phone) in enumerate(contacts, start=1):
            session.add(EmergencyContact(elder_id=elder.id, name=contact_name, phone=contact_phone, priority=priority))
        return elder.id


def answered_call_from(services, elder_id: int, at: datetime, linkedid: str | None = None) -> int:
    """An answered inbound call the bridge recorded (the care sweep reads calls as they are)."""
    with services.db.session_scope() as session:
        call = CallRecord(linkedid=linkedid or f"in-{elder_id}-{at.timestamp()}", direction="inbound", state="ended",
                          started_at=at, answered_at=at + timedelta(seconds=20), ended_at=at + timedelta(minutes=3),
                          elder_id=elder_id, outcome="answered", caller_number="13800000000")
        session.add(call)
        session.flush()
        return call.id


def on_duty(services, user, state: str = "ready") -> None:
    """The agent's queue membership as the bridge records it."""
    with services.db.session_scope() as session:
        session.add(AgentStatus(interface=f"PJSIP/{user.sip_extension}", extension=user.sip_extension, state=state,
                                status="not_in_use", queues=["12349"], updated_at=utcnow()))


@pytest.fixture
def second_agent(services):
    return make_user(services, "agent", username="agent8002", display_name="李强", sip_extension="8002")
