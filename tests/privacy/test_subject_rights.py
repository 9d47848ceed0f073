"""An elder's rights through HTTP (issue 17, PIPL art. 45 and 47): their own data exported, and
erased by anonymisation on request with a record of who, when and why."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta

import pytest
from sqlmodel import select

from callcenter.areas import service as areas_service
from callcenter.audit.models import AuditLog
from callcenter.calls.models import CallRecord
from callcenter.care.models import CareCheck, CareTask
from callcenter.elders.models import Elder
from callcenter.privacy.models import ElderErasure
from callcenter.timeutil import utcnow
from ivr.models import CallbackRequest
from tests.conftest import csrf_headers
from tests.elders.test_access import ID, add_zhang
from callcenter.notify.models import Recipient
from workorders.models import WorkOrder, WorkOrderEvent

pytestmark = pytest.mark.usefixtures("services")


@pytest.fixture
def zhang(services):
    """张大爷 in a district, with an answered call, a work order from it and a callback request."""
    elder_id = add_zhang(services)
    now = utcnow()
    with services.db.session_scope() as session:
        district = areas_service.get_or_create(session=session, name="中山区", parent=None)
        community = areas_service.get_or_create(session=session, name="桃源社区",
                                                parent=areas_service.get_or_create(session=session, name="桃源街道", parent=district))
        session.get(Elder, elder_id).community_id = community.id
        call = CallRecord(linkedid="1795000000.1", direction="inbound", state="ended", outcome="answered", started_at=now - timedelta(minutes=10),
                          queued_at=now - timedelta(minutes=10), answered_at=now - timedelta(minutes=9, seconds=50),
                          ended_at=now - timedelta(minutes=5), wait_seconds=10, talk_seconds=290, queue="hotline",
                          caller_number="13800138000", caller_e164="+8613800138000", caller_name="张大爷", elder_id=elder_id,
                          agent_extension="8001", disposition="service_request", notes="老人说腿疼，需要助餐")
        session.add(call)
        session.flush()
        session.add(CallbackRequest(caller_number="13800138000", caller_e164="+8613800138000", elder_id=elder_id, reason="busy",
                                    due_at=now, status="done", note="已回电，张大爷已吃药"))
        ids = {"elder": elder_id, "call": call.id, "district": district.id}
    return ids


def new_order(client, elder_id: int, call_id: int | None = None) -> dict:
    body = {"elder_id": elder_id, "service_type": "meal", "self_paid": True, "description": "中山路12号 张大爷 每天午餐"}
    if call_id is not None:
        body = {"call_id": call_id, "service_type": "meal", "self_paid": True, "description": "中山路12号 张大爷 每天午餐"}
    response = client.post("/api/workorders", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_the_export_holds_everything_about_the_elder_and_is_audited(supervisor_client, services, zhang):
    order = new_order(supervisor_client, zhang["elder"], zhang["call"])
    assert supervisor_client.get(f"/api/elders/{zhang['elder']}", params={"reason": "subject_request"}).status_code == 200
    response = supervisor_client.get(f"/api/privacy/elders/{zhang['elder']}/export")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"] == f'attachment; filename="elder-{zhang["elder"]}.json"'
    data = response.json()
    assert data["elder"]["name"] == "张大爷" and data["elder"]["id_number"] == ID  # their own: in full
    assert [p["number"] for p in data["elder"]["phones"]] == ["+8613800138000"]
    assert data["elder"]["emergency_contacts"][0]["name"] == "张伟"
    assert [(c["id"], c["notes"]) for c in data["calls"]] == [(zhang["call"], "老人说腿疼，需要助餐")]
    assert [(o["number"], o["call_id"]) for o in data["work_orders"]] == [(order["number"], zhang["call"])]
    assert data["work_orders"][0]["events"][0]["to"] == "new"
    assert [c["note"] for c in data["callback_requests"]] == ["已回电，张大爷已吃药"]
    assert ("view", {"via": "api", "reason": "subject_request"}) in [(a["action"], a["detail"]) for a in data["audit"]]

    archive = supervisor_client.get(f"/api/privacy/elders/{zhang['elder']}/export", params={"format": "zip"})
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
        name = f"elder-{zhang['elder']}"
        assert {f"{name}/{part}.json" for part in ("elder", "calls", "work_orders", "callback_requests", "audit")} <= set(zipped.namelist())
        assert json.loads(zipped.read(f"{name}/calls.json"))[0]["id"] == zhang["call"]
    with services.db.session_scope() as session:
        exports = session.exec(select(AuditLog).where(AuditLog.action == "subject_export")).all()
    assert [(row.elder_id, row.detail["format"]) for row in exports] == [(zhang["elder"], "json"), (zhang["elder"], "zip")]


def test_agents_may_not_export_or_anonymise(agent_client, zhang):
    assert agent_client.get(f"/api/privacy/elders/{zhang['elder']}/export").status_code == 403
    assert agent_client.post(f"/api/privacy/elders/{zhang['elder']}/anonymise", json={"reason": "本人申请"}).status_code == 403


def test_anonymising_with_an_open_order_is_refused(supervisor_client, services, zhang):
    order = new_order(supervisor_client, zhang["elder"])
    response = supervisor_client.post(f"/api/privacy/elders/{zhang['elder']}/anonymise", json={"reason": "本人书面申请删除"})
    assert response.status_code == 409 and order["number"] in response.json()["detail"]
    with services.db.session_scope() as session:
        assert session.get(Elder, zhang["elder"]).name == "张大爷"
        assert session.exec(select(ElderErasure)).all() == []


def figures(client, district: int) -> list[dict]:
    today = {"from": (utcnow() - timedelta(days=1)).date().isoformat(), "to": (utcnow() + timedelta(days=1)).date().isoformat()}
    return [client.get("/api/stats/kpis", params=today).json()["total"],
            client.get("/api/stats/kpis", params=today | {"threshold": 20}).json()["total"],  # from the raw calls
            client.get("/api/stats/kpis", params=today | {"district": district}).json()["total"],
            client.get("/api/stats/workorders", params=today).json()]


def test_anonymising_erases_the_person_and_keeps_the_figures(supervisor_client, services, zhang):
    order = new_order(supervisor_client, zhang["elder"], zhang["call"])
    with services.db.session_scope() as session:
        row = session.get(WorkOrder, order["id"])
        row.status, row.completed_at, row.closed_at, row.satisfaction = "closed", utcnow(), utcnow(), 5
        session.add(WorkOrderEvent(order_id=row.id, actor="班长", from_status="completed", to_status="closed", note="回访：张大爷说饭菜偏咸"))
        session.add(Recipient(phone="+8613800138000", channel="wechat", wechat_openid="o-zhang-openid"))
        care_task = CareTask(elder_id=zhang["elder"], kind="call", due_on=utcnow().date(), status="done")
        session.add(care_task)
        session.flush()
        session.add(CareCheck(task_id=care_task.id, elder_id=zhang["elder"], answers={"health": "ill"}, findings=["illness"],
                              needs_action=True, note="张大爷腿疼，燃气灶老化"))
    held = supervisor_client.get(f"/api/privacy/elders/{zhang['elder']}/export").json()["care"]
    assert held["checks"][0]["note"] == "张大爷腿疼，燃气灶老化" and held["tasks"][0]["status"] == "done"
    before = figures(supervisor_client, zhang["district"])
    assert before[2]["offered"] == 1 and before[2]["answered"] == 1  # the call counts in its district

    response = supervisor_client.post(f"/api/privacy/elders/{zhang['elder']}/anonymise",
                                      json={"reason": "本人书面申请删除", "request_ref": "SQ-2026-001"})
    assert response.status_code == 200, response.text
    erasure = response.json()
    assert (erasure["reason"], erasure["request_ref"], erasure["counts"]["calls"], erasure["counts"]["phones"],
            erasure["counts"]["care_records"]) == ("本人书面申请删除", "SQ-2026-001", 1, 1, 1)

    # nothing finds the person any more
    assert supervisor_client.get("/api/elders", params={"q": "张大爷", "include_inactive": True}).json()["items"] == []
    assert supervisor_client.get("/api/elders", params={"q": ID[-4:], "include_inactive": True}).json()["items"] == []
    assert supervisor_client.get("/api/elders/lookup", params={"phone": "13800138000"}).json()["matches"] == []
    assert supervisor_client.get("/api/elders/lookup", params={"phone": "15840112233"}).json()["matches"] == []
    assert supervisor_client.get("/api/calls", params={"q": "13800138000"}).json()["total"] == 0
    assert supervisor_client.get("/api/calls", params={"q": "张大爷"}).json()["total"] == 0
    profile = supervisor_client.get(f"/api/elders/{zhang['elder']}", params={"reason": "search"}).json()
    assert (profile["name"], profile["id_number"], profile["address"], profile["chronic_conditions"], profile["phones"],
            profile["emergency_contacts"], profile["active"]) == ("已匿名", None, "", "", [], [], False)
    exported = json.dumps(supervisor_client.get(f"/api/privacy/elders/{zhang['elder']}/export").json(), ensure_ascii=False)
    for trace in ("张大爷", "13800138000", "中山路12号", "高血压", "腿疼", "燃气灶", "张伟", ID):
        assert trace not in exported, trace

    # the figures are unchanged, and calls and orders still refer to the (anonymised) elder
    assert figures(supervisor_client, zhang["district"]) == before
    with services.db.session_scope() as session:
        # nor the order's history notes, nor how the elder's number wanted notifications (a WeChat openid)
        notes = [e.note for e in session.exec(select(WorkOrderEvent).where(WorkOrderEvent.order_id == order["id"]))]
        assert len(notes) >= 2 and set(notes) == {""}
        assert session.get(Recipient, "+8613800138000") is None
        assert session.get(CallRecord, zhang["call"]).elder_id == zhang["elder"]
        assert session.get(WorkOrder, order["id"]).elder_id == zhang["elder"]
        record = session.exec(select(ElderErasure)).one()
    assert (record.elder_id, record.username, record.reason) == (zhang["elder"], erasure["user"], "本人书面申请删除")
    assert [row["id"] for row in supervisor_client.get("/api/privacy/erasures").json()["items"]] == [record.id]

    again = supervisor_client.post(f"/api/privacy/elders/{zhang['elder']}/anonymise", json={"reason": "重复申请"})
    assert again.status_code == 409 and "已匿名化" in again.json()["detail"]


def test_a_bad_request_is_a_chinese_422(supervisor_client, zhang):
    response = supervisor_client.post(f"/api/privacy/elders/{zhang['elder']}/anonymise", json={"reason": ""},
                                      headers=csrf_headers(supervisor_client))
    assert response.status_code == 422
    assert supervisor_client.post("/api/privacy/elders/999999/anonymise", json={"reason": "本人申请"}).status_code == 404
    assert supervisor_client.get("/api/privacy/elders/999999/export").status_code == 404


def test_anonymising_also_redacts_the_old_and_new_values_in_the_audit_log(supervisor_client, services, zhang):
    """Profile changes are audited with their old and new values (issue 17, finding 1): erasure
    must not leave the old address or name behind in them."""
    changed = supervisor_client.patch(f"/api/elders/{zhang['elder']}", json={"address": "人民路99号", "name": "张老汉"})
    assert changed.status_code == 200, changed.text
    assert supervisor_client.post(f"/api/privacy/elders/{zhang['elder']}/anonymise", json={"reason": "本人申请"}).status_code == 200
    with services.db.session_scope() as session:
        details = [row.detail for row in session.exec(select(AuditLog).where(AuditLog.elder_id == zhang["elder"]))]
    assert any(detail.get("changes") == "***" for detail in details)
    for trace in ("人民路99号", "张老汉", "中山路12号"):
        assert trace not in json.dumps(details, ensure_ascii=False), trace
