"""The provider's mobile pages over HTTP, with routing run by a real RQ worker on real Redis: the
whole life of an order from a call to a closed callback; rejection; sign-in by SMS link
(tampered, expired, used and revoked links refused) and by password; one provider cannot touch another's
orders; the confirmation code, photo checks and the subsidy."""

from __future__ import annotations

import logging
import re
import struct
import zlib
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from callcenter.audit.models import AuditLog
from callcenter.elders.models import Elder
from tests.conftest import PASSWORD, login, make_user
from tests.workorders.conftest import history, new_order, order_row, work
from tests.workorders.test_orders_api import answered_call
from workorders import staff as staff_service
from workorders.models import ProviderStaff, SmsMessage, SubsidyLedger, WorkOrder

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# A real 1×1 PNG and a real 1×1 baseline JPEG's structure (photos are decoded, not just sniffed).
PNG = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
       + _png_chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + _png_chunk(b"IEND", b""))
JPEG = (b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        + b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 1, 1, 1) + b"\x01\x11\x00"
        + b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00" + b"\xd2\xcf\x20" + b"\xff\xd9")


def sms_to(services, number: str, order_id: int) -> str:
    with services.db.session_scope() as session:
        rows = session.exec(select(SmsMessage).where(SmsMessage.to == number, SmsMessage.order_id == order_id)
                            .order_by(SmsMessage.id.desc())).all()
    assert rows, f"no SMS to {number} for order {order_id}"
    return rows[0].text


def link_path(sms_text: str) -> str:
    return re.search(r"https?://[^/]+(/m/link/\S+)", sms_text).group(1)


def provider_client(app) -> TestClient:
    client = TestClient(app)
    client.get("/m/login")  # the CSRF cookie our forms repeat
    return client


def m_post(client, path: str, data: dict | None = None, files: dict | None = None):
    return client.post(path, data={"csrf_token": client.cookies.get("cc_csrf"), **(data or {})}, files=files,
                       follow_redirects=False)


def open_link(client, path: str):
    """Open an SMS link and tap its button (the link's page spends it only then): the answer."""
    page = client.get(path, follow_redirects=False)
    assert page.status_code == 200, page.text
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    return m_post(client, "/m/link", {"token": token})


def sign_in_by_sms(app, services, provider_phone: str, order_id: int) -> TestClient:
    client = provider_client(app)
    response = open_link(client, link_path(sms_to(services, provider_phone, order_id)))
    assert response.status_code == 303 and response.headers["location"] == "/m/"
    return client


def confirm_code(services, order_id: int) -> str:
    """What the elder was told by SMS at dispatch."""
    return re.search(r"确认码 (\d{6})", sms_to(services, "+8613800138000", order_id)).group(1)


def balance(services, elder_id: int) -> Decimal:
    with services.db.session_scope() as session:
        return session.get(Elder, elder_id).subsidy_balance


@pytest.fixture
def supervisor(app, services):
    client = TestClient(app)
    login(client, make_user(services, "supervisor"))
    return client


def test_from_a_call_to_a_closed_order_with_satisfaction(app, services, console, agent, city, rq_redis):
    call_id = answered_call(services, agent, city["elder"])
    created = console.post("/api/workorders", json={"call_id": call_id, "service_type": "meal", "description": "午餐一份，少盐"})
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    work(rq_redis)  # routing: 乐龄 gets it, with an SMS carrying its login link

    provider = sign_in_by_sms(app, services, "+8613900000001", order_id)
    listing = provider.get("/m/")
    assert created.json()["number"] in listing.text and "待接单 1" in listing.text
    page = provider.get(f"/m/orders/{order_id}")
    assert "张大爷" in page.text and "午餐一份，少盐" in page.text and "138 0013 8000" in page.text
    assert confirm_code(services, order_id) not in page.text  # the provider must get it from the elder
    with services.db.session_scope() as session:  # the view of the elder's data is audit-logged
        audit = session.exec(select(AuditLog).where(AuditLog.action == "provider_view")).all()
    assert [(a.elder_id, a.username) for a in audit] == [(city["elder"], "服务商:乐龄/乐龄调度")]

    assert m_post(provider, f"/m/orders/{order_id}/accept").status_code == 303
    assert m_post(provider, f"/m/orders/{order_id}/checkin").status_code == 303
    wrong = m_post(provider, f"/m/orders/{order_id}/complete", {"code": "000000" if confirm_code(services, order_id) != "000000"
                                                                 else "111111", "notes": "送餐到家", "minutes": "30"})
    assert wrong.status_code == 409 and "确认码不正确" in wrong.text and "还可尝试 4 次" in wrong.text
    assert order_row(services, order_id).status == "in_service"  # nothing half-done
    done = m_post(provider, f"/m/orders/{order_id}/complete",
                  {"code": confirm_code(services, order_id), "notes": "送餐到家，老人状态良好", "minutes": "30"},
                  files={"photo": ("meal.png", PNG, "image/png")})
    assert done.status_code == 303, done.text
    order = order_row(services, order_id)
    assert (order.status, order.service_minutes, order.service_notes, order.confirm_failures) == \
        ("completed", 30, "送餐到家，老人状态良好", 1)
    for served in (provider.get(f"/m/orders/{order_id}/photo"), console.get(f"/api/workorders/{order_id}/photo")):
        assert served.content == PNG
        assert served.headers["content-type"] == "image/png" and served.headers["x-content-type-options"] == "nosniff"
        assert served.headers["content-security-policy"] == "default-src 'none'; sandbox"  # not the pages' policy

    # The subsidy: a meal (15.00) drawn from 500.00, with its ledger row.
    assert balance(services, city["elder"]) == Decimal("485.00")
    ledger = console.get("/api/subsidy-ledger", params={"elder_id": city["elder"]}).json()
    assert [(row["order_id"], row["amount"], row["balance_after"]) for row in ledger] == [(order_id, "-15.00", "485.00")]

    # The callback list, then the elder's score closes the order.
    [due] = console.get("/api/callbacks").json()["items"]
    assert (due["id"], due["elder_name"], due["phones"], due["provider_name"]) == (order_id, "张大爷", ["+8613800138000"], "乐龄")
    closed = console.post(f"/api/workorders/{order_id}/callback", json={"satisfaction": 5, "comment": "饭菜可口"})
    assert closed.status_code == 200, closed.text
    assert (closed.json()["status"], closed.json()["satisfaction"]) == ("closed", 5)
    assert console.get("/api/callbacks").json()["items"] == []
    assert [to for to, _, _ in history(services, order_id)] == ["new", "dispatched", "accepted", "in_service", "completed", "closed"]
    assert console.post(f"/api/workorders/{order_id}/callback", json={"satisfaction": 4}).status_code == 409


def test_a_rejected_order_goes_to_the_next_provider_and_leaves_the_first(app, services, console, city, rq_redis):
    order_id = new_order(console, city["elder"])
    work(rq_redis)
    first = sign_in_by_sms(app, services, "+8613900000001", order_id)
    no_reason = m_post(first, f"/m/orders/{order_id}/reject", {"reason": " "})
    assert no_reason.status_code == 422 and "请填写拒单原因" in no_reason.text
    assert m_post(first, f"/m/orders/{order_id}/reject", {"reason": "今日人手已满"}).status_code == 303
    work(rq_redis)  # the page enqueued routing again
    order = order_row(services, order_id)
    assert (order.status, order.provider_id) == ("dispatched", city["providers"]["安康"])
    assert any(note == "拒单：今日人手已满" for _, _, note in history(services, order_id))
    assert first.get(f"/m/orders/{order_id}").status_code == 404  # no longer 乐龄's
    second = sign_in_by_sms(app, services, "+8613900000002", order_id)
    assert second.get(f"/m/orders/{order_id}").status_code == 200


def test_one_provider_cannot_read_or_change_anothers_order(app, services, console, city, rq_redis):
    order_id = new_order(console, city["elder"])
    work(rq_redis)  # 乐龄's order
    other = sign_in_by_sms(app, services, "+8613900000001", order_id)  # signed in as 乐龄 only to get its SMS link …
    other = provider_client(app)
    with services.db.session_scope() as session:  # … now 安康's dispatcher, by password
        staff = session.exec(select(ProviderStaff).where(ProviderStaff.phone == "+8613900000002")).one()
        staff_service.update_staff(session=session, staff_id=staff.id, password=PASSWORD)
    assert m_post(other, "/m/login", {"phone": "139 0000 0002", "password": PASSWORD}).status_code == 303
    assert other.get(f"/m/orders/{order_id}").status_code == 404
    assert other.get(f"/m/orders/{order_id + 1000}").status_code == 404  # a missing id looks the same
    for action, data in (("accept", {}), ("reject", {"reason": "x"}), ("checkin", {}),
                         ("complete", {"code": "123456", "notes": "x", "minutes": "5"})):
        assert m_post(other, f"/m/orders/{order_id}/{action}", data).status_code == 404, action
    assert other.get(f"/m/orders/{order_id}/photo").status_code == 404
    assert order_row(services, order_id).status == "dispatched"  # untouched
    assert f"/m/orders/{order_id}" not in other.get("/m/").text


def test_login_links_never_reach_the_access_log(app, services, console, city, rq_redis, caplog):
    order_id = new_order(console, city["elder"])
    work(rq_redis)
    path = link_path(sms_to(services, "+8613900000001", order_id))
    with caplog.at_level(logging.INFO, logger="callcenter.access"):
        assert open_link(provider_client(app), path).status_code == 303
    token = path.rsplit("/", 1)[1]
    logged = [r.getMessage() for r in caplog.records if r.name == "callcenter.access"]
    assert any("/m/link/…" in line for line in logged) and not any(token in line for line in logged)


def test_tampered_and_expired_links_and_bad_passwords_are_refused(app, services, settings, console, city, rq_redis):
    order_id = new_order(console, city["elder"])
    work(rq_redis)
    path = link_path(sms_to(services, "+8613900000001", order_id))
    client = provider_client(app)
    tampered = client.get(path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB"))
    assert tampered.status_code == 401 and "登录链接无效" in tampered.text
    assert m_post(client, "/m/link", {"token": "made-up-token"}).status_code == 401
    expire_links(services)
    expired = client.get(path)
    assert expired.status_code == 401 and "登录链接已过期（有效期 30 分钟）" in expired.text
    assert m_post(client, "/m/link", {"token": path.rsplit("/", 1)[1]}).status_code == 401
    assert client.get("/m/", headers={"accept": "text/html"}, follow_redirects=False).headers["location"].startswith("/m/login")

    wrong = m_post(client, "/m/login", {"phone": "13900000001", "password": "guess-guess"})
    assert wrong.status_code == 401 and "手机号或密码错误" in wrong.text  # link-only account: no password works


def expire_links(services, minutes_ago: int = 1) -> None:
    """Every login link issued so far ran out `minutes_ago` minutes ago."""
    from datetime import timedelta

    from callcenter.auth.models import AccessToken
    from callcenter.timeutil import utcnow

    with services.db.session_scope() as session:
        for row in session.exec(select(AccessToken).where(AccessToken.kind == "staff_link")):
            row.expires_at = utcnow() - timedelta(minutes=minutes_ago)
            session.add(row)


def dispatcher_id(services, phone: str = "+8613900000001") -> int:
    with services.db.session_scope() as session:
        return session.exec(select(ProviderStaff.id).where(ProviderStaff.phone == phone)).one()


def test_a_login_link_works_once(app, services, console, city, rq_redis):
    """Finding 3: a link used to work for 24 h, any number of times. Previews (an SMS app fetching
    the link) do not spend it: only the button does."""
    order_id = new_order(console, city["elder"])
    work(rq_redis)
    path = link_path(sms_to(services, "+8613900000001", order_id))
    first = provider_client(app)
    assert first.get(path).status_code == 200  # a preview, then the staff member's own tap
    assert open_link(first, path).status_code == 303
    assert first.get("/m/").status_code == 200
    again = provider_client(app)
    page = again.get(path)
    assert page.status_code == 401 and "登录链接已失效" in page.text
    replayed = m_post(again, "/m/link", {"token": path.rsplit("/", 1)[1]})
    assert replayed.status_code == 401 and "cc_provider" not in again.cookies


def test_links_are_short_lived(app, services, settings, console, city, rq_redis):
    assert settings.provider_link_minutes == 30
    order_id = new_order(console, city["elder"])
    work(rq_redis)
    path = link_path(sms_to(services, "+8613900000001", order_id))
    from callcenter.auth.models import AccessToken

    with services.db.session_scope() as session:
        row = session.exec(select(AccessToken).where(AccessToken.kind == "staff_link")).one()
        lifetime = row.expires_at - row.created_at
    assert lifetime.total_seconds() == 30 * 60
    expire_links(services)
    assert provider_client(app).get(path).status_code == 401


@pytest.mark.parametrize("change", [{"password": "a-new-password-1"}, {"active": False}])
def test_a_link_and_the_sessions_end_when_the_password_changes_or_the_account_is_deactivated(
        app, services, console, city, rq_redis, supervisor, change):
    first = new_order(console, city["elder"])
    work(rq_redis)
    signed_in = sign_in_by_sms(app, services, "+8613900000001", first)
    second = new_order(console, city["elder"])
    work(rq_redis)
    unused = link_path(sms_to(services, "+8613900000001", second))
    assert supervisor.patch(f"/api/provider-staff/{dispatcher_id(services)}", json=change).status_code == 200
    assert signed_in.get("/m/", headers={"accept": "text/html"}, follow_redirects=False).status_code == 303  # to the login
    client = provider_client(app)
    assert client.get(unused).status_code == 401
    assert m_post(client, "/m/link", {"token": unused.rsplit("/", 1)[1]}).status_code == 401


def test_provider_logout_ends_the_session_on_the_server(app, services, console, city, rq_redis):
    order_id = new_order(console, city["elder"])
    work(rq_redis)
    phone = sign_in_by_sms(app, services, "+8613900000001", order_id)
    cookie = phone.cookies.get("cc_provider")
    assert m_post(phone, "/m/logout").status_code == 303
    thief = provider_client(app)
    thief.cookies.set("cc_provider", cookie, path="/m")
    assert thief.get("/m/", headers={"accept": "text/html"}, follow_redirects=False).status_code == 303


def test_the_mobile_login_uses_the_login_throttle(app, services, supervisor, city, monkeypatch):
    """Wrong passwords make that phone and address wait (429, Retry-After); the staff member's own
    phone, a known device, still signs in."""
    staff_id = dispatcher_id(services)
    assert supervisor.patch(f"/api/provider-staff/{staff_id}", json={"password": PASSWORD}).status_code == 200
    with TestClient(app, client=("10.9.0.1", 40000)) as own_phone:
        own_phone.get("/m/login")
        assert m_post(own_phone, "/m/login", {"phone": "13900000001", "password": PASSWORD}).status_code == 303
        with TestClient(app, client=("10.9.0.1", 40000)) as attacker:
            attacker.get("/m/login")
            written = ["139 0000 0001", "+8613900000001", "13900000001", "0086 139-0000-0001"]  # one number, one account
            for n in range(services.settings.login_free_failures):
                assert m_post(attacker, "/m/login", {"phone": written[n % 4], "password": "guess-guess"}).status_code == 401
            refused = m_post(attacker, "/m/login", {"phone": "13900000001", "password": PASSWORD})
            assert refused.status_code == 429 and "登录失败次数过多" in refused.text and int(refused.headers["Retry-After"]) > 0
        assert m_post(own_phone, "/m/login", {"phone": "13900000001", "password": PASSWORD}).status_code == 303


def test_a_stale_page_explains_why_and_wrong_codes_lock(app, services, console, city, rq_redis):
    order_id = new_order(console, city["elder"])
    work(rq_redis)
    provider = sign_in_by_sms(app, services, "+8613900000001", order_id)
    assert console.post(f"/api/workorders/{order_id}/cancel", json={"note": "老人已不需要"}).status_code == 200
    stale = m_post(provider, f"/m/orders/{order_id}/accept")  # the page was opened before the cancellation
    assert stale.status_code == 409 and "当前状态为“已取消”，不能变更为“已接单”" in stale.text

    order_id = new_order(console, city["elder"])
    work(rq_redis)
    m_post(provider, f"/m/orders/{order_id}/accept")
    m_post(provider, f"/m/orders/{order_id}/checkin")
    right = confirm_code(services, order_id)
    bad = "000000" if right != "000000" else "111111"
    for _ in range(5):
        m_post(provider, f"/m/orders/{order_id}/complete", {"code": bad, "notes": "x", "minutes": "10"})
    locked = m_post(provider, f"/m/orders/{order_id}/complete", {"code": right, "notes": "x", "minutes": "10"})
    assert locked.status_code == 409 and "错误次数过多" in locked.text
    assert order_row(services, order_id).status == "in_service"


def test_photos_are_checked_by_content_and_size(app, services, settings, console, city, rq_redis):
    order_id = new_order(console, city["elder"])
    work(rq_redis)
    provider = sign_in_by_sms(app, services, "+8613900000001", order_id)
    m_post(provider, f"/m/orders/{order_id}/accept")
    m_post(provider, f"/m/orders/{order_id}/checkin")
    form = {"code": confirm_code(services, order_id), "notes": "完成", "minutes": "20"}
    fake = m_post(provider, f"/m/orders/{order_id}/complete", form, files={"photo": ("x.jpg", b"MZ\x90\x00 not an image", "image/jpeg")})
    assert fake.status_code == 422 and "只能上传 JPEG、PNG 或 WebP" in fake.text
    huge = PNG + b"\x00" * settings.upload_max_bytes
    big = m_post(provider, f"/m/orders/{order_id}/complete", form, files={"photo": ("big.png", huge, "image/png")})
    assert big.status_code == 422 and "照片不能超过 5 MB" in big.text
    # Finding 5: an HTML page behind a JPEG (or PNG) header was accepted and served as a photo.
    for name, disguised in (("x.jpg", b"\xff\xd8\xff\xe0<html><script>alert(document.cookie)</script></html>"),
                            ("x.png", b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>"),
                            ("x.jpg", JPEG[:-40] + b"<html><script>alert(1)</script></html>")):
        refused = m_post(provider, f"/m/orders/{order_id}/complete", form, files={"photo": (name, disguised, "image/jpeg")})
        assert refused.status_code == 422 and "不是真正的图片" in refused.text, name
    assert order_row(services, order_id).status == "in_service" and order_row(services, order_id).photo is None
    done = m_post(provider, f"/m/orders/{order_id}/complete", form, files={"photo": ("p.jpg", JPEG, "image/jpeg")})
    assert done.status_code == 303
    served = console.get(f"/api/workorders/{order_id}/photo")
    assert served.content == JPEG and served.headers["content-type"] == "image/jpeg"
    assert served.headers["x-content-type-options"] == "nosniff"


def test_the_photo_is_optional(app, services, console, city, rq_redis):
    order_id = new_order(console, city["elder"])
    work(rq_redis)
    provider = sign_in_by_sms(app, services, "+8613900000001", order_id)
    m_post(provider, f"/m/orders/{order_id}/accept")
    m_post(provider, f"/m/orders/{order_id}/checkin")
    form = {"code": confirm_code(services, order_id), "notes": "完成", "minutes": "20"}
    assert m_post(provider, f"/m/orders/{order_id}/complete", form).status_code == 303


def test_subsidy_overdraw_is_refused_unless_a_supervisor_approves(app, services, console, supervisor, city, rq_redis):
    with services.db.session_scope() as session:
        session.get(Elder, city["elder"]).subsidy_balance = Decimal("20.00")
    first = new_order(console, city["elder"])  # a meal, 15.00 of 20.00
    refused = console.post("/api/workorders", json={"elder_id": city["elder"], "service_type": "meal"})
    assert refused.status_code == 409
    assert refused.json()["detail"] == ("补贴余额不足：余额 20.00 元，未结算工单已占用 15.00 元，本次助餐 15.00 元。"
                                        "可改为自费，或请班长批准超额使用补贴。")
    assert console.post("/api/workorders", json={"elder_id": city["elder"], "service_type": "meal",
                                                 "approve_overdraw": True}).status_code == 403  # agents cannot approve
    assert console.post("/api/workorders", json={"elder_id": city["elder"], "service_type": "meal",
                                                 "self_paid": True}).status_code == 201
    approved = supervisor.post("/api/workorders", json={"elder_id": city["elder"], "service_type": "meal", "approve_overdraw": True})
    assert approved.status_code == 201 and approved.json()["overdraw_approved"] is True
    second = approved.json()["id"]
    work(rq_redis)

    provider = sign_in_by_sms(app, services, "+8613900000001", first)
    for order_id in (first, second):
        m_post(provider, f"/m/orders/{order_id}/accept")
        m_post(provider, f"/m/orders/{order_id}/checkin")
    with services.db.session_scope() as session:  # meanwhile the balance was corrected down to 10.00
        session.get(Elder, city["elder"]).subsidy_balance = Decimal("10.00")
    form = lambda order_id: {"code": confirm_code(services, order_id), "notes": "送餐", "minutes": "15"}  # noqa: E731
    blocked = m_post(provider, f"/m/orders/{first}/complete", form(first))
    assert blocked.status_code == 409 and "老人补贴余额不足（余额 10.00 元，本次助餐 15.00 元）" in blocked.text
    assert order_row(services, first).status == "in_service" and balance(services, city["elder"]) == Decimal("10.00")
    assert console.post(f"/api/workorders/{first}/approve-overdraw", json={}).status_code == 403
    assert supervisor.post(f"/api/workorders/{first}/approve-overdraw", json={"note": "老人确需"}).status_code == 200
    assert m_post(provider, f"/m/orders/{first}/complete", form(first)).status_code == 303
    assert m_post(provider, f"/m/orders/{second}/complete", form(second)).status_code == 303
    assert balance(services, city["elder"]) == Decimal("-20.00")
    with services.db.session_scope() as session:
        rows = session.exec(select(SubsidyLedger).order_by(SubsidyLedger.id)).all()
        assert [(r.order_id, r.amount, r.balance_after, r.overdraw_approved_by is not None) for r in rows] == [
            (first, Decimal("-15.00"), Decimal("-5.00"), True), (second, Decimal("-15.00"), Decimal("-20.00"), True)]
        self_paid = session.exec(select(WorkOrder).where(WorkOrder.self_paid)).one()
        assert self_paid.subsidy_amount is None


def test_an_unhappy_callback_escalates_and_a_supervisor_closes_it(app, services, console, supervisor, city, rq_redis):
    order_id = new_order(console, city["elder"], service_type="cleaning")
    work(rq_redis)
    provider = sign_in_by_sms(app, services, "+8613900000001", order_id)
    m_post(provider, f"/m/orders/{order_id}/accept")
    m_post(provider, f"/m/orders/{order_id}/checkin")
    m_post(provider, f"/m/orders/{order_id}/complete", {"code": confirm_code(services, order_id), "notes": "打扫", "minutes": "60"})
    assert console.post(f"/api/workorders/{order_id}/callback", json={"satisfaction": 0}).status_code == 422
    assert console.post(f"/api/workorders/{order_id}/callback", json={"satisfaction": 4, "complaint": True}).status_code == 422
    unhappy = console.post(f"/api/workorders/{order_id}/callback", json={"satisfaction": 2, "comment": "厨房没打扫"})
    assert unhappy.json()["status"] == "escalated" and unhappy.json()["satisfaction"] == 2
    assert history(services, order_id)[-1][2] == "回访：满意度 2 分；厨房没打扫"
    assert [o["id"] for o in supervisor.get("/api/workorders-alerts").json()["escalated"]] == [order_id]
    assert console.post(f"/api/workorders/{order_id}/close", json={"note": "已安排返工"}).status_code == 403
    closed = supervisor.post(f"/api/workorders/{order_id}/close", json={"note": "已安排返工，老人认可"})
    assert closed.json()["status"] == "closed"


def test_a_supervisor_assigns_an_escalated_order(app, services, supervisor, console, city, rq_redis):
    order_id = new_order(console, city["elder"], service_type="bathing")  # nobody is contracted: escalated
    work(rq_redis)
    assert order_row(services, order_id).status == "escalated"
    wrong = supervisor.post(f"/api/workorders/{order_id}/assign", json={"provider_id": city["providers"]["乐龄"]})
    assert wrong.status_code == 409 and "未签约该服务类型" in wrong.json()["detail"]
    supervisor.patch(f"/api/providers/{city['providers']['乐龄']}", json={"service_types": ["meal", "cleaning", "bathing"]})
    assigned = supervisor.post(f"/api/workorders/{order_id}/assign", json={"provider_id": city["providers"]["乐龄"]})
    assert assigned.status_code == 200 and assigned.json()["status"] == "dispatched"
    assert "/m/link/" in sms_to(services, "+8613900000001", order_id)
    from rq.registry import ScheduledJobRegistry

    from workorders import jobs

    assert len(ScheduledJobRegistry(queue=jobs.queue(rq_redis)).get_job_ids()) == 1  # its acceptance deadline


def test_supervisors_manage_provider_staff_and_read_the_sms_outbox(services, supervisor, console, city, rq_redis):
    provider_id = city["providers"]["乐龄"]
    staff = supervisor.get(f"/api/providers/{provider_id}/staff").json()
    assert [(s["name"], s["phone"], s["has_password"]) for s in staff] == [("乐龄调度", "+8613900000001", False)]
    created = supervisor.post(f"/api/providers/{provider_id}/staff", json={"name": "李护工", "phone": "139-0000-0009",
                                                                           "password": "short"})
    assert created.status_code == 422
    created = supervisor.post(f"/api/providers/{provider_id}/staff", json={"name": "李护工", "phone": "13900000009",
                                                                           "password": PASSWORD})
    assert created.status_code == 201 and created.json()["phone"] == "+8613900000009"
    assert supervisor.post(f"/api/providers/{provider_id}/staff", json={"name": "重复", "phone": "13900000009"}).status_code == 409
    assert console.get(f"/api/providers/{provider_id}/staff").status_code == 403
    order_id = new_order(console, city["elder"])
    work(rq_redis)
    outbox = supervisor.get("/api/sms-outbox", params={"order_id": order_id}).json()
    assert sorted(m["to"] for m in outbox) == ["+8613800138000", "+8613900000001"]
    assert console.get("/api/sms-outbox").status_code == 403
