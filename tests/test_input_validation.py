"""Finding 6 of issue 17: inputs the fuzzer turned into 500s, each now a 422 with a precise
Chinese message (ids beyond the database's integers, huge pages, NUL bytes, extreme dates, text
longer than its column)."""

from __future__ import annotations

import pytest

from tests.conftest import csrf_headers

BIG = 2**31  # one past PostgreSQL's integer
HUGE = 10**30


@pytest.mark.parametrize("path", ["/api/elders/{id}", "/api/calls/{id}", "/api/workorders/{id}", "/api/providers/{id}/staff",
                                  "/api/workorders/{id}/photo"])
@pytest.mark.parametrize("value", [BIG, HUGE, -BIG - 1])
def test_ids_beyond_the_database_integers_are_422(admin_client, path, value):
    response = admin_client.get(path.format(id=value))
    assert response.status_code == 422, response.text
    assert "超出范围" in response.json()["detail"][0]["msg"]


def test_ids_in_bodies_and_queries_are_bounded(admin_client):
    admin_client.get("/api/auth/me")
    for response in (admin_client.post("/api/workorders", json={"service_type": "meal", "elder_id": BIG}),
                     admin_client.post("/api/subsidy-ledger", json={"elder_id": BIG, "amount": "1", "note": "x"}),
                     admin_client.get("/api/subsidy-ledger", params={"elder_id": BIG}),
                     admin_client.get("/api/sms-outbox", params={"order_id": BIG}),
                     admin_client.patch("/api/elders/1", json={"community_id": BIG})):
        assert response.status_code == 422, response.text
        assert "超出范围" in response.text


@pytest.mark.parametrize("path", ["/api/elders", "/api/calls", "/api/workorders", "/api/sms-outbox"])
def test_huge_page_numbers_are_422(admin_client, path):
    response = admin_client.get(path, params={"page": HUGE})
    assert response.status_code == 422, response.text
    assert admin_client.get(path, params={"page": 10**5}).status_code == 200


@pytest.mark.parametrize("path", ["/api/elders?q=%00", "/api/elders/lookup?phone=138%00", "/api/calls?q=a%00b"])
def test_nul_in_a_query_is_422(admin_client, path):
    response = admin_client.get(path)
    assert response.status_code == 422, response.text
    assert "空字符" in response.text


def test_nul_in_json_text_is_422(admin_client):
    admin_client.get("/api/auth/me")
    for response in (admin_client.post("/api/elders", json={"name": "张\u0000三"}),
                     admin_client.post("/api/providers", json={"name": "乐\u0000龄", "phone": "13900000001"}),
                     admin_client.post("/api/auth/login", json={"username": "a\u0000", "password": "x"})):
        assert response.status_code == 422, response.text
        assert "空字符" in response.text


REPORTS = ["/api/stats/kpis", "/api/stats/kpis/export", "/api/stats/workorders", "/api/stats/workorders/export"]


@pytest.mark.parametrize("path", REPORTS + ["/api/calls"])
@pytest.mark.parametrize("dates", [{"from": "9999-12-31"}, {"to": "9999-12-31"}, {"from": "0001-01-01", "to": "0001-01-02"}])
def test_extreme_dates_are_422(admin_client, path, dates):
    response = admin_client.get(path, params=dates)
    assert response.status_code == 422, response.text
    assert "日期应在 2000-01-01 至 2099-12-31 之间" in response.text


@pytest.mark.parametrize("path", REPORTS)
@pytest.mark.parametrize("dates", [{"from": "2020-01-01", "to": "2026-01-01"}, {"from": "2026-01-02", "to": "2026-01-01"}])
def test_report_ranges_are_bounded(admin_client, path, dates):
    response = admin_client.get(path, params=dates)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][-1] == "to"


def test_a_phone_owner_name_over_50_characters_is_422(admin_client):
    admin_client.get("/api/auth/me")
    elder = admin_client.post("/api/elders", json={"name": "张大爷"}).json()
    response = admin_client.post(f"/api/elders/{elder['id']}/phones", json={"number": "13800138000", "owner_name": "名" * 51})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][-1] == "owner_name"


@pytest.mark.parametrize("name", ["", "   "])
def test_a_provider_needs_a_name(admin_client, name):
    admin_client.get("/api/auth/me")
    created = admin_client.post("/api/providers", json={"name": name, "phone": "13900000001"})
    assert created.status_code == 422 and created.json()["detail"][0]["loc"][-1] == "name"
    provider = admin_client.post("/api/providers", json={"name": "乐龄", "phone": "13900000001"}).json()
    renamed = admin_client.patch(f"/api/providers/{provider['id']}", json={"name": name}, headers=csrf_headers(admin_client))
    assert renamed.status_code == 422 and renamed.json()["detail"][0]["loc"][-1] == "name"


def test_nul_in_a_multipart_field_or_file_name_is_422_and_a_files_own_bytes_pass(admin_client):
    """A multipart body's text fields and file names go to the database (the import's file name into
    its audit entry): a NUL there was a 500 on PostgreSQL. A file's bytes may hold NULs (a PNG, an XLSX)."""
    from tests.conftest import csrf_headers

    admin_client.get("/api/auth/me")
    headers = csrf_headers(admin_client)
    csv_file = "姓名,身份证号\n".encode("utf-8-sig")
    named = admin_client.post("/api/elders/import", files={"file": ("名单\u0000.csv", csv_file)}, headers=headers)
    field = admin_client.post("/api/elders/import", files={"file": ("名单.csv", csv_file)}, data={"note": "备\u0000注"}, headers=headers)
    for response in (named, field):
        assert response.status_code == 422, response.text
        assert "空字符" in response.text
    binary = admin_client.post("/api/elders/import", files={"file": ("名单.csv", csv_file + b"\x00")}, headers=headers)
    assert "第 2 行含有空字符" in binary.text  # the file's own content reached the import, which judges it row by row
