"""Demo providers for `callcenter demo-data`: contracted services across the demo city's
streets, each with a dispatcher account that signs in to the mobile pages (/m/) by phone and
password. The demo city itself (areas, elders, hotline accounts) is callcenter/demo.py's."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlmodel import Session, select

from callcenter.areas.models import Area
from workorders import service as orders_service
from workorders import staff as staff_service
from workorders.models import Provider, ProviderStaff

# name, contact, phone, services, rating, streets covered (every n-th street of the city, from an offset)
PROVIDERS = (
    ("乐龄居家养老服务中心", "李敏", "13904110001", ["meal", "cleaning", "bathing", "companionship"], "4.8", (3, 0)),
    ("安康护理服务有限公司", "王强", "13904110002", ["nursing", "medical_escort", "bathing"], "4.6", (2, 0)),
    ("邻里助餐配送站", "赵丽", "13904110003", ["meal"], "4.5", (2, 1)),
    ("平安应急援助中心", "孙伟", "13904110004", ["emergency", "medical_escort"], "4.9", (1, 0)),
    ("便民家政维修队", "周军", "13904110005", ["cleaning", "repair"], "4.3", (3, 1)),
)


def seed(*, session: Session, area_code: str, password: str) -> list[tuple[str, str]]:
    """Create the demo providers that do not exist yet; returns (provider, dispatcher phone)
    for every demo provider, whose dispatcher signs in with `password`."""
    streets = [row.id for row in session.exec(select(Area).where(Area.level == "street").order_by(Area.id))]
    logins = []
    for name, contact, phone, services, rating, (every, offset) in PROVIDERS:
        if session.exec(select(Provider.id).where(Provider.name == name)).first() is None:
            provider = orders_service.save_provider(session=session, area_code=area_code, fields=dict(
                name=name, contact_name=contact, phone=phone, service_types=services, coverage=streets[offset::every] or streets,
                daily_capacity=50, rating=Decimal(rating), contract_start=date(2026, 1, 1), contract_end=date(2028, 12, 31)))
            dispatcher = session.exec(select(ProviderStaff).where(ProviderStaff.provider_id == provider.id)).one()
            staff_service.update_staff(session=session, staff_id=dispatcher.id, password=password)
        logins.append((name, phone))
    return logins
