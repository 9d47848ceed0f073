"""A realistic demo city (Dalian-like: districts, streets, communities) with elders whose
distributions of age, living situation, ability level and economic status resemble a real city's.

Bulk-inserted with explicit ids so a million elders load in minutes (the benchmark uses it too);
the derived columns (pinyin keys, ID number hash and ciphertext, reversed phone digits) are the
same ones the profile service writes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import func, insert, text
from sqlmodel import select

from callcenter.areas.models import Area
from callcenter.auth import service as auth_service
from callcenter.auth.models import User
from callcenter.config import Settings
from callcenter.crypto import Sealer
from callcenter.db import Database
from callcenter.elders.idcard import make_id_number, parse_id_number
from callcenter.elders.models import Elder, ElderPhone, EmergencyContact
from callcenter.elders.pinyin import name_keys
from callcenter.timeutil import utcnow

DEMO_PASSWORD = "12349demo"
DEMO_ACCOUNTS = [("admin", "admin", "系统管理员", None), ("banzhang", "supervisor", "王班长", None)] + [
    (f"agent{n:02d}", "agent", name, f"80{n:02d}") for n, name in enumerate(["李晓梅", "张丽", "刘洋", "陈静", "赵敏"], start=1)
]
# Area officials (区民政, 街道, 社区): (username, role, display name, path of their area: district,
# street, and for the community account the street's first community).
DEMO_OFFICIALS = [("quminzheng", "district_official", "中山区民政局", ("中山区",)),
                  ("jiedao", "street_official", "青泥洼桥街道办", ("中山区", "青泥洼桥街道")),
                  ("shequ", "community_staff", "社区工作站", ("中山区", "青泥洼桥街道", None))]

CITY = {  # district: (division code, streets)
    "中山区": ("210202", ["青泥洼桥街道", "人民路街道", "桃源街道", "老虎滩街道"]),
    "西岗区": ("210203", ["白云街道", "八一路街道", "人民广场街道", "日新街道"]),
    "沙河口区": ("210204", ["春柳街道", "马栏街道", "黑石礁街道", "李家街道"]),
    "甘井子区": ("210211", ["周水子街道", "泉水街道", "红旗街道", "凌水街道"]),
}
COMMUNITY_WORDS = ["长春", "友好", "新华", "和平", "胜利", "光明", "建设", "东方", "幸福", "春光", "海港", "青云", "金山", "柳树", "丰收", "团结", "民主", "向阳"]
ROADS = ["中山路", "人民路", "解放路", "五四路", "黄河路", "长江路", "西安路", "联合路", "华北路", "五一路", "高尔基路", "友好路"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤单"
SURNAME_WEIGHTS = [max(1.0, 8.0 - i * 0.08) for i in range(len(SURNAMES))]
MALE_NAMES = ["建国", "国庆", "德明", "志强", "永福", "玉林", "长海", "树林", "文华", "振华", "宝山", "福贵", "国栋", "明亮", "德胜", "洪涛", "世杰", "春生", "立新", "卫东", "大勇", "广仁", "忠", "山", "海"]
FEMALE_NAMES = ["秀英", "桂兰", "玉兰", "淑珍", "凤英", "秀兰", "桂英", "玉梅", "淑兰", "丽华", "素芬", "翠花", "春梅", "月娥", "秀珍", "凤兰", "桂芝", "玉珍", "淑芬", "金凤", "兰", "芳"]
CHILD_NAMES = ["伟", "磊", "静", "敏", "丽", "军", "勇", "艳", "杰", "娜", "强", "霞", "涛", "鹏", "燕"]
CONDITIONS = ["高血压", "糖尿病", "冠心病", "慢阻肺", "脑卒中后遗症", "骨关节炎", "阿尔茨海默病", "白内障"]
ALLERGIES = ["青霉素", "磺胺类药物", "海鲜", "花粉", "头孢类药物"]
MOBILE_PREFIXES = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155", "158", "159", "177", "180", "182", "186", "187", "189"]
BATCH = 5000


@dataclass
class DemoResult:
    elders: int = 0
    phones: int = 0
    areas: int = 0
    accounts: list[tuple[str, str, str]] = field(default_factory=list)


def generate(database: Database, settings: Settings, *, elders: int, seed: int, if_empty: bool = False) -> DemoResult | None:
    """Write the demo city; with `if_empty`, do nothing (return None) when elders exist."""
    with database.session_scope() as session:
        if if_empty and session.exec(select(func.count()).select_from(Elder)).one() > 0:
            return None
    rng = random.Random(seed)
    result = DemoResult()
    with database.session_scope() as session:
        communities = _areas(session, rng)
        result.accounts = _accounts(session)
        result.areas = session.exec(select(func.count()).select_from(Area)).one()
    maker = _ElderMaker(rng, Sealer(settings.secret), communities, area_code=settings.city_area_code)
    with database.session_scope() as session:
        next_id = (session.exec(select(func.max(Elder.id))).one() or 0) + 1
        next_phone = (session.exec(select(func.max(ElderPhone.id))).one() or 0) + 1
        next_contact = (session.exec(select(func.max(EmergencyContact.id))).one() or 0) + 1
        maker.taken_ids = {digest for digest in session.exec(select(Elder.id_number_hash)) if digest}
    written = 0
    while written < elders:
        count = min(BATCH, elders - written)
        batch_elders, batch_phones, batch_contacts = maker.batch(count, next_id, next_phone, next_contact)
        with database.session_scope() as session:
            session.execute(insert(Elder), batch_elders)
            session.execute(insert(ElderPhone), batch_phones)
            if batch_contacts:
                session.execute(insert(EmergencyContact), batch_contacts)
        next_id += len(batch_elders)
        next_phone += len(batch_phones)
        next_contact += len(batch_contacts)
        written += len(batch_elders)
        result.phones += len(batch_phones)
    result.elders = written
    with database.session_scope() as session:
        _reset_sequences(session)
    return result


def _accounts(session) -> list[tuple[str, str, str]]:
    accounts = []
    for username, role, display_name, extension in DEMO_ACCOUNTS:
        if session.exec(select(User).where(User.username == username)).first() is None:
            auth_service.create_user(session=session, username=username, role=role, password=DEMO_PASSWORD,
                                     display_name=display_name, sip_extension=extension)
        accounts.append((username, role, DEMO_PASSWORD))
    for username, role, display_name, path in DEMO_OFFICIALS:
        if session.exec(select(User).where(User.username == username)).first() is None:
            auth_service.create_user(session=session, username=username, role=role, password=DEMO_PASSWORD,
                                     display_name=display_name, area_id=_area_at(session, path).id)
        accounts.append((username, role, DEMO_PASSWORD))
    _demo_visitor(session, accounts)
    return accounts


DEMO_VISITOR = ("13904119001", "孙丽（志愿者）")  # a volunteer visitor of 社区工作站's community: /v/


def _demo_visitor(session, accounts: list) -> None:
    from callcenter.areas import scope as areas_scope
    from callcenter.care import visits

    phone, name = DEMO_VISITOR
    if session.exec(select(User).where(User.username == f"visitor-86{phone}")).first() is None:
        visits.create_visitor(session=session, name=name, phone=phone, volunteer=True, area_code="0411", password=DEMO_PASSWORD,
                              community_id=_area_at(session, DEMO_OFFICIALS[-1][3]).id, scope=areas_scope.CITY)
    accounts.append((phone, "visitor", DEMO_PASSWORD))


def _area_at(session, path: tuple[str | None, ...]) -> Area:
    """The area at a path of names from the district down; None: the first child (by id)."""
    area = None
    for name in path:
        query = select(Area).where(Area.parent_id == (area.id if area else None))
        query = query.where(Area.name == name) if name is not None else query.order_by(Area.id)
        area = session.exec(query).first()
    return area


def _areas(session, rng: random.Random) -> list[tuple[int, str, str]]:
    """Create (or find) the city's areas; returns [(community id, district code, street name)]."""
    from callcenter.areas import service as areas_service

    communities = []
    for district_name, (code, streets) in CITY.items():
        district = areas_service.get_or_create(session=session, name=district_name, parent=None, code=code)
        for street_name in streets:
            street = areas_service.get_or_create(session=session, name=street_name, parent=district)
            words = rng.sample(COMMUNITY_WORDS, 5)
            for word in words:
                community = areas_service.get_or_create(session=session, name=f"{word}社区", parent=street)
                communities.append((community.id, code, street_name))
    return communities


def _reset_sequences(session) -> None:
    """Explicit ids leave PostgreSQL's sequences behind; move them past the highest id."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for table in ("elders", "elder_phones", "emergency_contacts"):
        session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 1))"))


class _ElderMaker:
    def __init__(self, rng: random.Random, sealer: Sealer, communities, area_code: str):
        self.rng = rng
        self.sealer = sealer
        self.communities = communities
        self.area_code = area_code
        self.taken_ids: set[str] = set()
        self.used_numbers: set[str] = set()
        self.today = date.today()
        self.now = utcnow()
        self.stewards = {cid: (self._name("female"), self._mobile()) for cid, _, _ in communities}

    def _name(self, gender: str) -> str:
        surname = self.rng.choices(SURNAMES, weights=SURNAME_WEIGHTS)[0]
        return surname + self.rng.choice(MALE_NAMES if gender == "male" else FEMALE_NAMES)

    def _mobile(self) -> str:
        while True:
            number = self.rng.choice(MOBILE_PREFIXES) + f"{self.rng.randrange(10**8):08d}"
            if number not in self.used_numbers:
                self.used_numbers.add(number)
                return number

    def _landline(self) -> str:
        while True:
            number = f"{self.rng.choice('2345678')}{self.rng.randrange(10**7):07d}"
            if number not in self.used_numbers:
                self.used_numbers.add(number)
                return number

    def _age(self) -> int:
        band = self.rng.choices([(60, 69), (70, 79), (80, 89), (90, 100)], weights=[55, 30, 12, 3])[0]
        return self.rng.randint(*band)

    def _id_number(self, district_code: str, born: date, gender: str) -> tuple[str, str]:
        while True:
            value = make_id_number(district_code, born, self.rng.randrange(100), gender)
            digest = self.sealer.lookup_hash(value)
            if digest not in self.taken_ids:
                self.taken_ids.add(digest)
                return value, digest

    def batch(self, count: int, first_id: int, first_phone: int, first_contact: int):
        elders, phones, contacts = [], [], []
        elder_id = first_id
        while len(elders) < count:
            couple = count - len(elders) >= 2 and self.rng.random() < 0.3
            household = self._household(couple)
            for person in household["people"]:
                person["id"] = elder_id
                elders.append(person)
                for phone in household["phones"](elder_id, person):
                    phone["id"] = first_phone + len(phones)
                    phones.append(phone)
                for contact in household["contacts"]:
                    contacts.append(contact | {"id": first_contact + len(contacts), "elder_id": elder_id})
                elder_id += 1
        return elders, phones, contacts

    def _household(self, couple: bool) -> dict:
        rng = self.rng
        community_id, district_code, _street = rng.choice(self.communities)
        address = f"{rng.choice(ROADS)}{rng.randint(1, 300)}号{rng.randint(1, 6)}单元{rng.randint(1, 7)}0{rng.randint(1, 4)}室"
        landline = self._landline() if rng.random() < 0.4 else None
        has_child = rng.random() < 0.8
        child_gender = rng.choice(["male", "female"])
        genders = ["male", "female"] if couple else [rng.choices(["male", "female"], weights=[45, 55])[0]]
        head_surname = None
        people = []
        for gender in genders:
            person = self._person(gender, community_id, district_code, address, couple)
            head_surname = head_surname or person["name"][0]
            people.append(person)
        child_name = head_surname + rng.choice(CHILD_NAMES) if has_child else ""
        child_mobile = self._mobile() if has_child else None
        relation = "son" if child_gender == "male" else "daughter"
        own_mobiles = {id(p): (self._mobile() if rng.random() < 0.85 else None) for p in people}

        def phones_for(elder_id: int, person: dict) -> list[dict]:
            rows = []
            mobile = own_mobiles[id(person)]
            if mobile:
                rows.append(self._phone_row(elder_id, "+86" + mobile, mobile, "mobile", "self", "", True))
            if landline:
                national = self.area_code.lstrip("0") + landline
                rows.append(self._phone_row(elder_id, "+86" + national, national, "landline", "self", "", not mobile))
            if child_mobile:
                rows.append(self._phone_row(elder_id, "+86" + child_mobile, child_mobile, "mobile", relation, child_name, False))
            return rows

        contacts = [{"name": child_name, "relation": relation, "phone": "+86" + child_mobile, "priority": 1, "note": ""}] if child_mobile else []
        return {"people": people, "phones": phones_for, "contacts": contacts}

    def _phone_row(self, elder_id, e164, national, kind, relation, owner, primary) -> dict:
        return {"elder_id": elder_id, "number": e164, "number_rev": national[::-1], "kind": kind, "relation": relation,
                "owner_name": owner, "is_primary": primary}

    def _person(self, gender: str, community_id: int, district_code: str, address: str, couple: bool) -> dict:
        rng = self.rng
        age = self._age()
        born = self.today - timedelta(days=age * 365 + rng.randrange(365))
        id_value, digest = self._id_number(district_code, born, gender)
        parsed = parse_id_number(id_value)
        name = self._name(gender)
        pinyin, initials = name_keys(name)
        ability = rng.choices(["intact", "mild", "moderate", "severe"], weights=self._ability_weights(age))[0]
        if couple:
            living = "empty_nest"
        else:
            living = rng.choices(["lives_alone", "with_family", "empty_nest", "institution"], weights=[40, 45, 13, 2])[0]
        economic = rng.choices(["normal", "minimum_living", "near_minimum", "extreme_poverty", "family_planning_hardship"],
                               weights=[935, 30, 20, 5, 10])[0]
        conditions = rng.sample(CONDITIONS, k=rng.choices([0, 1, 2, 3], weights=[30, 40, 20, 10])[0])
        flags = self._risk_flags(age, ability, conditions)
        steward_name, steward_phone = self.stewards[community_id]
        subsidy = Decimal(rng.choice([200, 300, 500, 800])) if economic != "normal" or ability in ("moderate", "severe") else Decimal("0")
        return {
            "name": name, "name_pinyin": pinyin, "name_initials": initials, "gender": gender, "birth_date": parsed.birth_date,
            "id_number_hash": digest, "id_number_enc": self.sealer.encrypt(id_value), "id_number_masked": parsed.masked,
            "id_last4": parsed.last4, "community_id": community_id, "address": address, "living_situation": living,
            "economic_status": economic, "ability_level": ability, "chronic_conditions": "、".join(conditions),
            "allergies": rng.choice(ALLERGIES) if rng.random() < 0.1 else "", "steward_name": steward_name,
            "steward_phone": "+86" + steward_phone, "subsidy_balance": subsidy, "risk_flags": flags, "notes": "",
            "active": True, "deactivated_reason": None, "created_at": self.now, "updated_at": self.now,
        }

    @staticmethod
    def _ability_weights(age: int) -> list[int]:
        if age >= 90:
            return [35, 25, 20, 20]
        if age >= 80:
            return [60, 20, 12, 8]
        return [85, 9, 4, 2]

    def _risk_flags(self, age: int, ability: str, conditions: list[str]) -> list[str]:
        flags = []
        if self.rng.random() < (0.2 if age >= 80 else 0.06):
            flags.append("fall_history")
        if "阿尔茨海默病" in conditions:
            flags.append("cognitive_impairment")
        if ability == "severe" and self.rng.random() < 0.5:
            flags.append("bedridden")
        if age >= 80 and self.rng.random() < 0.15:
            flags.append("hearing_impaired")
        return flags
