"""Visitors (巡访员) over HTTP: their accounts (made and managed by community staff, street
officials and supervisors of the area), sign-in by SMS link or phone and password on /v/, the
community's visit tasks (another community's are 404, another visitor's 403), check-in, the
record, findings that open a work order (routed by a real RQ worker) or an emergency for the
hotline, and the time bank: a volunteer's visit confirmed once, the hours on their page.

Visit tasks come from the care plan the way the morning job makes them (a rule, POST /api/care/day)
and from an escalation of missed care calls (care.service.escalate)."""

from __future__ import annotations

import re
from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from callcenter.areas import service as areas_service
from callcenter.audit.models import AuditLog
from callcenter.care import service as care_service
from callcenter.care.models import CareCheck, CareContact, CareTask, TimeBankEntry
from callcenter.elders import service as elders_service
from callcenter.elders.schemas import ContactIn, ElderIn, PhoneIn
from callcenter.notify.models import OutboxMessage
from callcenter.timeutil import utcnow
from tests.conftest import PASSWORD, id_number, login, make_user
from tests.workorders.conftest import rq_redis, work  # noqa: F401  (fixture)
from tests.workorders.test_provider_pages import PNG
from workorders import service as orders_service
from workorders.models import WorkOrder

ID_NUMBER = id_number()
PHONE_A, PHONE_A2, PHONE_B = "13700000001", "13700000002", "13700000003"


@pytest.fixture
def visit_city(services):
    """中山区 › 桃源街道 › 桃源社区 (A) and 春柳社区 (B); in A 张大爷 (plan visit) and 王奶奶 (a visit
    escalated from missed care calls, with a deadline), in B 李奶奶; a provider covering the street."""
    with services.db.session_scope() as session:
        district = areas_service.get_or_create(session=session, name="中山区", parent=None)
        street = areas_service.get_or_create(session=session, name="桃源街道", parent=district)
        a = areas_service.get_or_create(session=session, name="桃源社区", parent=street)
        b = areas_service.get_or_create(session=session, name="春柳社区", parent=street)
        elders = {}
        for name, community, number, extra in (
                ("张大爷", a, "13800138000", dict(id_number=ID_NUMBER, ability_level="moderate", risk_flags=["fall_history"],
                                                  address="桃源街 8 号 3 单元 201", birth_date=date(1948, 5, 17), gender="male",
                                                  emergency_contacts=[ContactIn(name="张小明", phone="13900001111")])),
                ("王奶奶", a, "13800138001", dict(address="桃源街 10 号")),
                ("李奶奶", b, "13800138002", dict(address="春柳街 1 号"))):
            elder = elders_service.create(session=session, sealer=services.sealer, area_code="0411", elder_in=ElderIn(
                name=name, community_id=community.id, living_situation="lives_alone", phones=[PhoneIn(number=number)], **extra))
            elders[name] = elder.id
        orders_service.save_provider(session=session, area_code="0411", fields=dict(
            name="乐龄", contact_name="调度", phone="+8613900000001", service_types=["meal", "cleaning"], coverage=[street.id],
            daily_capacity=10))
        return {"street": street.id, "a": a.id, "b": b.id, "elders": elders}


@pytest.fixture
def supervisor(services):
    return make_user(services, "supervisor", display_name="班长")


@pytest.fixture
def boss(app, services, supervisor):
    with TestClient(app) as client:
        login(client, supervisor)
        yield client


@pytest.fixture
def shequ(app, services, visit_city):
    """Community staff of 桃源社区 (A)."""
    with TestClient(app) as client:
        login(client, make_user(services, "community_staff", display_name="社区主任", area_id=visit_city["a"]))
        yield client


@pytest.fixture
def tasks(services, boss, visit_city):
    """The morning's plan (a rule: elders living alone are visited monthly and called weekly),
    then 王奶奶's care call escalated after its misses: {elder name: visit task id}."""
    rule = boss.post("/api/care/rules", json={"name": "独居老人", "living_situations": ["lives_alone"], "call_every_days": 7,
                                              "visit_every_days": 30, "risk_level": "2"})
    assert rule.status_code == 201, rule.text
    made = boss.post("/api/care/day", json={}).json()
    assert made["visits"] == 3, made
    with services.db.session_scope() as session:
        call = session.exec(select(CareTask).where(CareTask.kind == "call", CareTask.elder_id == visit_city["elders"]["王奶奶"])).one()
        call.attempts = 3
        care_service.escalate(session=session, task=call, now=utcnow(), tz=services.settings.tz)
        visits = session.exec(select(CareTask).where(CareTask.kind == "visit", CareTask.status == "open")).all()
    by_elder = {name: [t for t in visits if t.elder_id == elder_id] for name, elder_id in visit_city["elders"].items()}
    [escalated] = [t.id for t in by_elder["王奶奶"]]  # the plan's visit, hurried by the escalation: one task
    assert by_elder["王奶奶"][0].deadline_at is not None
    return {"张大爷": by_elder["张大爷"][0].id, "王奶奶": escalated, "李奶奶": by_elder["李奶奶"][0].id}


def visitor_client(app) -> TestClient:
    client = TestClient(app)
    client.get("/v/login")  # the CSRF cookie our forms repeat
    return client


def v_post(client, path: str, data: dict | None = None, files: dict | None = None):
    return client.post(path, data={"csrf_token": client.cookies.get("cc_csrf"), **(data or {})}, files=files,
                       follow_redirects=False)


def new_visitor(manager, community_id: int, phone: str, name: str, volunteer: bool = False, password: str | None = PASSWORD):
    response = manager.post("/api/care/visitors", json={"name": name, "phone": phone, "community_id": community_id,
                                                        "volunteer": volunteer, "password": password})
    assert response.status_code == 201, response.text
    return response.json()


def signed_in_visitor(app, phone: str, password: str = PASSWORD) -> TestClient:
    client = visitor_client(app)
    response = v_post(client, "/v/login", {"phone": phone, "password": password})
    assert response.status_code == 303 and response.headers["location"] == "/v/", response.text
    return client


def link_path(services, phone: str) -> str:
    with services.db.session_scope() as session:
        text = session.exec(select(OutboxMessage.text).where(OutboxMessage.to == "+86" + phone)
                            .order_by(OutboxMessage.id.desc())).first()
    assert text, f"no SMS to {phone}"
    return re.search(r"https?://[^/]+(/v/link/\S+)", text).group(1)


RECORD = {"answers.met": "yes", "answers.living": "tidy", "answers.care": "family", "answers.health": "stable",
          "answers.mood": "good", "answers.safety": "none", "answers.needs": "none"}


def test_managers_make_visitors_who_sign_in_by_link_or_password_and_never_into_the_hotline(app, services, visit_city, shequ,
                                                                                            boss, supervisor):
    # community staff of A manage A's visitors only; an agent or a district official manages none
    created = new_visitor(shequ, visit_city["a"], PHONE_A, "刘志愿", volunteer=True, password=None)
    assert (created["community"], created["kind_label"], created["has_password"]) == ("桃源社区", "志愿者", False)
    outside = shequ.post("/api/care/visitors", json={"name": "越界", "phone": PHONE_B, "community_id": visit_city["b"]})
    assert outside.status_code == 404 and "不在您的辖区内" in outside.json()["detail"]
    assert shequ.post("/api/care/visitors", json={"name": "重复", "phone": PHONE_A, "community_id": visit_city["a"]}) \
        .status_code == 409
    bad = shequ.post("/api/care/visitors", json={"name": "坏号", "phone": "12", "community_id": visit_city["a"]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "phone"]
    with TestClient(app) as agent:
        login(agent, make_user(services, "agent"))
        assert agent.get("/api/care/visitors").status_code == 403
        assert "只有班长、街道和社区账号可以管理巡访员" in agent.post(f"/api/care/visitors/{created['id']}/login-link", json={}).text
    assert [v["name"] for v in shequ.get("/api/care/visitors").json()["visitors"]] == ["刘志愿"]

    # the login link goes by SMS (hidden in the outbox), opens a page, signs in once
    sent = shequ.post(f"/api/care/visitors/{created['id']}/login-link", json={})
    assert sent.status_code == 200 and sent.json()["sent_to"] == "+86137****0001"
    path = link_path(services, PHONE_A)
    outbox = boss.get("/api/sms-outbox").json()
    assert path.rsplit("/", 1)[1] not in str(outbox) and "/v/link/（一次性登录链接，已隐藏）" in outbox[0]["text"]
    phone = visitor_client(app)
    page = phone.get(path)
    assert page.status_code == 200 and "刘志愿，请点击下方按钮进入巡访页面" in page.text and "桃源社区巡访员" in page.text
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    signed = v_post(phone, "/v/link", {"token": token})
    assert signed.status_code == 303 and signed.headers["location"] == "/v/" and "cc_visitor" in phone.cookies
    home = phone.get("/v/")
    assert home.status_code == 200 and "桃源社区巡访" in home.text and "时间银行" in home.text
    again = visitor_client(app).get(path)
    assert again.status_code == 401 and "登录链接已失效" in again.text

    # phone and password; a visitor's session opens the visit pages only
    staff = new_visitor(boss, visit_city["b"], PHONE_B, "陈社工")
    wrong = v_post(visitor_client(app), "/v/login", {"phone": PHONE_B, "password": "guess-guess"})
    assert wrong.status_code == 401 and "手机号或密码错误" in wrong.text
    assert v_post(visitor_client(app), "/v/login", {"phone": PHONE_A, "password": PASSWORD}).status_code == 401  # link only
    chen = signed_in_visitor(app, "137 0000 0003")
    assert "春柳社区巡访" in chen.get("/v/").text
    hotline = TestClient(app)
    username = f"visitor-86{PHONE_B}"
    assert hotline.post("/api/auth/login", json={"username": username, "password": PASSWORD}).status_code == 401
    hotline.cookies.set("cc_session", chen.cookies.get("cc_visitor"))
    assert hotline.get("/api/auth/me").status_code == 401
    assert all(u["role"] != "visitor" for u in boss.get("/api/users").json())  # listed as visitors, not hotline accounts

    # deactivating ends the session at once; a street official of the street reactivates
    assert boss.patch(f"/api/care/visitors/{staff['id']}", json={"active": False}).json()["active"] is False
    out = chen.get("/v/", headers={"accept": "text/html"}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"].startswith("/v/login")
    with TestClient(app) as jiedao:
        login(jiedao, make_user(services, "street_official", area_id=visit_city["street"]))
        assert jiedao.patch(f"/api/care/visitors/{staff['id']}", json={"active": True}).json()["active"] is True
        assert sorted(v["name"] for v in jiedao.get("/api/care/visitors").json()["visitors"]) == ["刘志愿", "陈社工"]


def test_a_visitor_sees_and_works_only_their_communitys_tasks(app, services, visit_city, shequ, boss, tasks):
    new_visitor(shequ, visit_city["a"], PHONE_A, "刘志愿")
    new_visitor(shequ, visit_city["a"], PHONE_A2, "赵社工")
    liu, zhao = signed_in_visitor(app, PHONE_A), signed_in_visitor(app, PHONE_A2)

    home = liu.get("/v/").text
    listed = re.findall(r'data-task="(\d+)"', home)
    assert listed == [str(tasks["王奶奶"]), str(tasks["张大爷"])]  # the escalation's deadline first
    assert "须于" in home and "李奶奶" not in home
    with services.db.session_scope() as session:
        listing = session.exec(select(AuditLog).where(AuditLog.action == "visitor_list")).first()
    assert listing.username == f"visitor-86{PHONE_A}" and set(listing.detail["elders"]) == {
        visit_city["elders"]["张大爷"], visit_city["elders"]["王奶奶"]}

    # another community's task: 404 for every door, and nothing changes
    other = tasks["李奶奶"]
    missing = liu.get(f"/v/tasks/{other}")
    assert missing.status_code == 404 and "巡访任务不存在，或不属于您所在社区的待巡访任务" in missing.text
    assert "李奶奶" not in missing.text
    for step, data in (("take", {}), ("release", {}), ("checkin", {}), ("record", RECORD)):
        assert v_post(liu, f"/v/tasks/{other}/{step}", data).status_code == 404, step
    assert liu.get(f"/v/tasks/{other}/photo").status_code == 404
    assert liu.get(f"/v/tasks/{tasks['李奶奶'] + 1000}").status_code == 404

    # the same community: one visitor takes a task, the other may read it but not work it
    assert v_post(zhao, f"/v/tasks/{tasks['张大爷']}/take").status_code == 303
    taken = v_post(liu, f"/v/tasks/{tasks['张大爷']}/take")
    assert taken.status_code == 409 and "该任务已由赵社工认领" in taken.text
    refused = v_post(liu, f"/v/tasks/{tasks['张大爷']}/checkin")
    assert refused.status_code == 403 and "只有认领人可以签到和填写巡访记录" in refused.text
    assert v_post(liu, f"/v/tasks/{tasks['张大爷']}/record", RECORD).status_code == 403
    assert "已由赵社工认领" in liu.get("/v/").text
    with services.db.session_scope() as session:
        assert session.get(CareTask, other).assigned_to is None
        assert session.exec(select(CareCheck)).all() == []


def test_check_in_record_and_a_finding_that_opens_a_work_order(app, services, visit_city, shequ, tasks, rq_redis):  # noqa: F811
    new_visitor(shequ, visit_city["a"], PHONE_A, "赵社工")
    phone = signed_in_visitor(app, PHONE_A)
    task = tasks["张大爷"]
    page = phone.get(f"/v/tasks/{task}")
    assert page.status_code == 200
    for shown in ("张大爷", "桃源街 8 号 3 单元 201", 'href="tel:+8613800138000"', "张小明", 'href="tel:+8613900001111"',
                  "跌倒史", "中度失能", "独居", "定期巡访（每 30 天一次，此前没有巡访记录）", "认领任务"):
        assert shown in page.text, shown
    assert ID_NUMBER not in page.text and ID_NUMBER[-4:] not in page.text  # never shown, not even masked

    assert v_post(phone, f"/v/tasks/{task}/take").status_code == 303
    early = v_post(phone, f"/v/tasks/{task}/record", RECORD)
    assert early.status_code == 409 and "请先在老人家门口签到" in early.text
    bad = v_post(phone, f"/v/tasks/{task}/checkin", {"latitude": "95", "longitude": "121.6"})
    assert bad.status_code == 422 and "纬度应在 -90 到 90 之间" in bad.text
    assert v_post(phone, f"/v/tasks/{task}/checkin", {"latitude": "38.914", "longitude": "121.614", "accuracy": "12.4"}) \
        .status_code == 303
    assert "（已记录位置）" in phone.get(f"/v/tasks/{task}").text
    assert v_post(phone, f"/v/tasks/{task}/release").status_code == 409  # checked in: the record is due

    incomplete = v_post(phone, f"/v/tasks/{task}/record", {"answers.met": "yes", "answers.living": "poor", "note": "厨房漏水"})
    assert incomplete.status_code == 422 and "请选择照料情况" in incomplete.text and "请选择服务需求" in incomplete.text
    assert 'value="poor" checked' in incomplete.text and "厨房漏水" in incomplete.text  # nothing typed is lost
    needs = RECORD | {"answers.needs": "meal", "note": "做饭困难"}
    no_action = v_post(phone, f"/v/tasks/{task}/record", needs)
    assert no_action.status_code == 422 and "发现需要服务，请选择转服务工单或紧急上报热线" in no_action.text
    not_a_photo = v_post(phone, f"/v/tasks/{task}/record", needs | {"action": "order", "service_type": "meal"},
                         files={"photo": ("x.jpg", b"<html>not a photo</html>", "image/jpeg")})
    assert not_a_photo.status_code == 422 and "只能上传 JPEG、PNG 或 WebP 格式的照片" in not_a_photo.text

    unpaid = v_post(phone, f"/v/tasks/{task}/record", needs | {"action": "order", "service_type": "meal"})
    assert unpaid.status_code == 409 and "补贴余额不足" in unpaid.text and 'value="order" checked' in unpaid.text
    done = v_post(phone, f"/v/tasks/{task}/record", needs | {"action": "order", "service_type": "meal", "self_paid": "1"},
                  files={"photo": ("kitchen.png", PNG, "image/png")})
    assert done.status_code == 303, done.text
    with services.db.session_scope() as session:
        check = session.exec(select(CareCheck).where(CareCheck.task_id == task)).one()
        order = session.get(WorkOrder, check.work_order_id)
        contact = session.exec(select(CareContact).where(CareContact.source_id == task)).one()
        row = session.get(CareTask, task)
        viewed = session.exec(select(AuditLog).where(AuditLog.action == "visitor_view", AuditLog.elder_id == row.elder_id)).all()
        assert (row.status, check.findings, check.answers["needs"], check.checked_in_at is not None) == ("done", ["needs_service"],
                                                                                                          "meal", True)
        assert (order.elder_id, order.service_type, order.status, order.self_paid) == (row.elder_id, "meal", "new", True)
        assert order.description == "巡访发现：需要服务；做饭困难"
        assert (contact.kind, contact.elder_id) == ("visit", row.elder_id)
        assert len(viewed) >= 5 and all(entry.username == f"visitor-86{PHONE_A}" for entry in viewed)
        number = order.number
    work(rq_redis)  # routing, as after any new order: the finding's order is tracked on the visit
    record = phone.get(f"/v/tasks/{task}").text
    assert f"服务工单 {number}：已派单" in record and "需要服务" in record and "待社区确认" not in record  # staff: no hours
    assert phone.get(f"/v/tasks/{task}/photo").content == PNG
    assert v_post(phone, f"/v/tasks/{task}/record", RECORD).status_code == 409
    assert f'data-task="{task}"' not in phone.get("/v/").text


def test_an_absent_elder_is_an_emergency_for_the_hotline(app, services, visit_city, shequ, boss, tasks):
    new_visitor(shequ, visit_city["a"], PHONE_A, "赵社工")
    phone = signed_in_visitor(app, PHONE_A)
    task = tasks["王奶奶"]
    page = phone.get(f"/v/tasks/{task}").text
    assert "未接通升级：关怀电话3次未接通，请尽快上门查看" in page and "上门期限" in page
    v_post(phone, f"/v/tasks/{task}/take")
    v_post(phone, f"/v/tasks/{task}/checkin")  # no position given
    absent = {"answers.met": "absent"}
    assert "未见到老人时，请说明情况" in v_post(phone, f"/v/tasks/{task}/record", absent | {"action": "emergency"}).text
    assert v_post(phone, f"/v/tasks/{task}/record", absent | {"note": "敲门无人应答，邻居两天未见", "action": "emergency"}) \
        .status_code == 303
    drafts = boss.get("/api/workorders", params={"status": "draft"}).json()["items"]
    assert len(drafts) == 1 and drafts[0]["urgency"] == "emergency" and "巡访员赵社工上门发现：未见到老人" in drafts[0]["description"]
    record = phone.get(f"/v/tasks/{task}").text
    assert f"紧急上报 {drafts[0]['number']}：待确认" in record and "（未获取位置）" in record
    with services.db.session_scope() as session:
        assert session.exec(select(CareContact).where(CareContact.source_id == task)).all() == []  # the elder was not reached
        assert session.get(CareTask, tasks["王奶奶"]).status == "done"
    assert boss.post("/api/care/day", json={}).json()["visits"] == 1  # so the plan makes her visit again


def test_a_volunteers_visit_is_confirmed_once_and_the_hours_show_on_their_page(app, services, visit_city, shequ, boss, tasks):
    new_visitor(shequ, visit_city["a"], PHONE_A, "刘志愿", volunteer=True)
    staff = new_visitor(boss, visit_city["b"], PHONE_B, "陈社工")
    liu, chen = signed_in_visitor(app, PHONE_A), signed_in_visitor(app, PHONE_B)
    for phone, task in ((liu, tasks["张大爷"]), (chen, tasks["李奶奶"])):
        for step, data in (("take", {}), ("checkin", {}), ("record", RECORD)):
            assert v_post(phone, f"/v/tasks/{task}/{step}", data).status_code == 303, step
    assert "0.0 小时" in liu.get("/v/").text and "待确认" in liu.get("/v/").text

    waiting = shequ.get("/api/care/visits", params={"unconfirmed": True}).json()["visits"]
    assert [(v["elder_name"], v["visitor"], v["hours"], v["confirmed"]) for v in waiting] == [("张大爷", "刘志愿", "0.5", False)]
    assert shequ.post(f"/api/care/visits/{tasks['李奶奶']}/confirm", json={}).status_code == 404  # another community's
    staff_visit = boss.post(f"/api/care/visits/{tasks['李奶奶']}/confirm", json={})
    assert staff_visit.status_code == 409 and "陈社工是社区工作人员，巡访不计入时间银行" in staff_visit.json()["detail"]
    wrong = shequ.post(f"/api/care/visits/{tasks['张大爷']}/confirm", json={"hours": "0.7"})
    assert wrong.status_code == 422
    with TestClient(app) as agent:
        login(agent, make_user(services, "agent"))
        assert agent.post(f"/api/care/visits/{tasks['张大爷']}/confirm", json={}).status_code == 403

    confirmed = shequ.post(f"/api/care/visits/{tasks['张大爷']}/confirm", json={"hours": "1.5"})
    assert confirmed.status_code == 200 and confirmed.json()["balance"] == "1.5"
    twice = boss.post(f"/api/care/visits/{tasks['张大爷']}/confirm", json={})
    assert twice.status_code == 409 and "该次巡访已确认，已记入时间银行 1.5 小时" in twice.json()["detail"]
    with services.db.session_scope() as session:
        assert [(e.hours, e.task_id) for e in session.exec(select(TimeBankEntry))] == [(1.5, tasks["张大爷"])]
    home = liu.get("/v/").text
    assert "1.5 小时" in home and "已记入 1.5 小时" in home
    assert "已确认，记入 1.5 小时" in liu.get(f"/v/tasks/{tasks['张大爷']}").text
    assert shequ.get("/api/care/visits", params={"unconfirmed": True}).json()["visits"] == []
    hours = {v["name"]: v["hours"] for v in boss.get("/api/care/visitors").json()["visitors"]}
    assert hours == {"刘志愿": "1.5", "陈社工": "0.0"} and staff["kind_label"] == "社区工作人员"


def test_the_managers_page_adds_visitors_sends_links_and_confirms_visits(app, services, visit_city, shequ, tasks):
    def form_post(path: str, data: dict):
        return shequ.post(path, data={"csrf_token": shequ.cookies.get("cc_csrf"), **data}, follow_redirects=False)

    page = shequ.get("/supervisor/visitors")
    assert page.status_code == 200 and 'href="/supervisor/visitors"' in page.text and "桃源社区" in page.text
    assert "春柳社区" not in page.text  # only the communities of the manager's area are offered
    refused = form_post("/supervisor/visitors", {"name": "刘志愿", "phone": PHONE_A, "community_id": str(visit_city["b"]),
                                                 "volunteer": "1"})
    assert refused.status_code == 404 and "不在您的辖区内" in refused.text
    added = form_post("/supervisor/visitors", {"name": "刘志愿", "phone": PHONE_A, "community_id": str(visit_city["a"]),
                                               "volunteer": "1", "password": PASSWORD})
    assert added.status_code == 303 and "已添加巡访员" in shequ.get(added.headers["location"]).text
    visitor_id = shequ.get("/api/care/visitors").json()["visitors"][0]["id"]
    sent = form_post(f"/supervisor/visitors/{visitor_id}", {"action": "link"})
    assert sent.status_code == 303 and "/v/link/" in link_path(services, PHONE_A)

    liu = signed_in_visitor(app, PHONE_A)
    for step, data in (("take", {}), ("checkin", {}), ("record", RECORD)):
        assert v_post(liu, f"/v/tasks/{tasks['张大爷']}/{step}", data).status_code == 303, step
    row = shequ.get("/supervisor/visitors").text
    assert f'action="/supervisor/visits/{tasks["张大爷"]}/confirm"' in row and 'value="0.5"' in row
    assert form_post(f"/supervisor/visits/{tasks['张大爷']}/confirm", {"hours": "1"}).status_code == 303
    again = form_post(f"/supervisor/visits/{tasks['张大爷']}/confirm", {"hours": "1"})
    assert again.status_code == 409 and "该次巡访已确认，已记入时间银行 1.0 小时" in again.text
    assert "已确认 1.0 小时" in shequ.get("/supervisor/visitors").text and "1.0 小时" in liu.get("/v/").text
    assert form_post(f"/supervisor/visitors/{visitor_id}", {"action": "deactivate"}).status_code == 303
    assert liu.get("/v/", follow_redirects=False).status_code in (303, 401)
