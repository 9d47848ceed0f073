"""Two districts with the same things in each, and one account of every kind: what the scope tests
and the authorization matrix walk. Side "A" is 中山区 (every scoped account sits in it or under
it), side "B" is 西岗区 (outside every scoped account)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from callcenter.areas import service as areas_service
from callcenter.auth.models import User
from callcenter.calls.models import CallRecord
from callcenter.auth import service as auth_service
from callcenter.care.models import CareOverride, CareRule, CareTask
from callcenter.elders import service as elders_service
from callcenter.elders.schemas import ContactIn, ElderIn, PhoneIn
from callcenter.timeutil import utcnow
from ivr.models import CallbackRequest
from tests.conftest import PASSWORD, make_user
from workorders import photos
from workorders import service as orders_service
from workorders import staff as staff_service
from workorders.models import SubsidyLedger, WorkOrder

# Names that only the rows of one side carry: an answer in scope must never contain the other's.
MARKERS = {"A": ["甲区老人", "甲区服务社", "GD20990101-0001", "甲区员工", "agent-a-zs", "甲区巡访员"],
           "B": ["乙区老人", "乙区服务社", "GD20990101-0002", "乙区员工", "agent-b-xg", "乙区巡访员"]}
_numbers = itertools.count(1)


def fresh_mobile() -> str:
    """A mobile number no other row has."""
    return f"1370411{next(_numbers):04d}"


@dataclass
class Side:
    district: int
    street: int
    community: int
    elder: int
    phone_number: str
    provider: int
    staff: int
    staff_phone: str
    order: int
    call: int
    request: int
    task: int
    override: int
    rule: int
    user: int
    visitor: int  # a visitor (巡访员) of the side's community, signing in by phone and PASSWORD
    visitor_phone: str
    visit: int  # an open visit task of the side's elder


@dataclass
class City:
    sides: dict[str, Side]
    accounts: dict[str, object] = field(default_factory=dict)  # role key -> User (or ProviderStaff); "visitor": side A's


def build(services, settings) -> City:
    """Both sides, the accounts, and provider staff of side A with a password."""
    sides = {}
    with services.db.session_scope() as session:
        for side, (district_name, street_name, community_name, extension) in {
            "A": ("中山区", "青泥洼桥街道", "长春社区", "8001"), "B": ("西岗区", "白云街道", "友好社区", "8002")}.items():
            district = areas_service.get_or_create(session=session, name=district_name, parent=None)
            street = areas_service.get_or_create(session=session, name=street_name, parent=district)
            community = areas_service.get_or_create(session=session, name=community_name, parent=street)
            number = "1380411000" + ("1" if side == "A" else "2")
            elder = elders_service.create(session=session, sealer=services.sealer, area_code="0411", opening_balance=Decimal("300"),
                                          elder_in=ElderIn(name=MARKERS[side][0], community_id=community.id,
                phones=[PhoneIn(number=number)], emergency_contacts=[ContactIn(name="联系人", phone=fresh_mobile())]))
            provider = orders_service.save_provider(session=session, area_code="0411", fields=dict(
                name=MARKERS[side][1], contact_name="调度", phone=fresh_mobile(), service_types=["meal", "cleaning"],
                coverage=[street.id], daily_capacity=10))
            staff_phone = fresh_mobile()
            staff = staff_service.create_staff(session=session, provider_id=provider.id, name=MARKERS[side][3],
                                               phone=staff_phone, area_code="0411", password=PASSWORD)
            now = utcnow()
            order = WorkOrder(number=MARKERS[side][2], elder_id=elder.id, service_type="meal", status="completed",
                              provider_id=provider.id, community_id=community.id, accept_due=now, arrive_due=now,
                              complete_due=now + timedelta(hours=1), completed_at=now, photo=f"matrix-{side}.jpg")
            session.add(order)
            # A's call is on the line with the city agent; B's call was the district agent's and has
            # ended (on a live call the caller's elder is in the agent's scope: test_scope.py).
            call = CallRecord(linkedid=f"matrix-{side}", direction="inbound", state="talking" if side == "A" else "ended",
                              elder_id=elder.id, caller_e164="+86" + number, agent_extension=extension, leg_agents=[extension],
                              queue="hotline", started_at=now, queued_at=now, answered_at=now,
                              ended_at=None if side == "A" else now)
            request = CallbackRequest(caller_number=number, caller_e164="+86" + number, elder_id=elder.id, reason="busy",
                                      due_at=now)
            task = CareTask(elder_id=elder.id, kind="call", due_on=now.date(), community_id=community.id, note=MARKERS[side][0])
            override = CareOverride(elder_id=elder.id, reason="adjusted", call_every_days=30)
            rule = CareRule(name=f"矩阵规则{side}", living_situations=["lives_alone"], call_every_days=7)
            visitor_phone = fresh_mobile()
            visitor = User(username=f"visitor-86{visitor_phone}", role="visitor", display_name=MARKERS[side][5], area_id=community.id,
                           phone=f"+86{visitor_phone}", password_hash=auth_service.hash_password(PASSWORD))
            visit = CareTask(elder_id=elder.id, kind="visit", due_on=now.date(), community_id=community.id)
            session.add_all([call, request, task, override, rule, visitor, visit])
            session.flush()
            session.add(SubsidyLedger(elder_id=elder.id, order_id=order.id, service_type="meal", amount=Decimal("-10"),
                                      balance_after=Decimal("290")))
            sides[side] = dict(district=district.id, street=street.id, community=community.id, elder=elder.id,
                               phone_number=number, provider=provider.id, staff=staff.id, staff_phone=staff_phone,
                               order=order.id, call=call.id, request=request.id, task=task.id, override=override.id,
                               rule=rule.id, visitor=visitor.id, visitor_phone=visitor_phone, visit=visit.id)
    for side in sides.values():
        photo = photos.path_of(settings, f"matrix-{'A' if side is sides['A'] else 'B'}.jpg")
        photo.parent.mkdir(parents=True, exist_ok=True)
        photo.write_bytes(b"\xff\xd8\xff\xe0 not really a photo")
    for side, username in (("A", MARKERS["A"][4]), ("B", MARKERS["B"][4])):
        sides[side]["user"] = make_user(services, "agent", username=username, area_id=sides[side]["district"]).id
    a = sides["A"]
    accounts = {
        "agent": make_user(services, "agent", sip_extension="8001"),
        "supervisor": make_user(services, "supervisor"),
        "admin": make_user(services, "admin"),
        "district_supervisor": make_user(services, "supervisor", area_id=a["district"]),
        "district_agent": make_user(services, "agent", sip_extension="8002", area_id=a["district"]),
        "district_official": make_user(services, "district_official", area_id=a["district"]),
        "street_official": make_user(services, "street_official", area_id=a["street"]),
        "community_staff": make_user(services, "community_staff", area_id=a["community"]),
    }
    with services.db.session_scope() as session:
        accounts["visitor"] = session.get(User, a["visitor"])
    return City(sides={key: Side(**value) for key, value in sides.items()}, accounts=accounts)
