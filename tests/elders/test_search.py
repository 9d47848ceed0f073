"""Search by name, pinyin, initials, phone fragment, ID last 4, community; paging."""

from datetime import date

import pytest

from tests.conftest import id_number


@pytest.fixture
def city(agent_client, services):
    from callcenter.areas import service as areas_service

    with services.db.session_scope() as session:
        chunchun = areas_service.community_for_path(session=session, district="中山区", street="桃源街道", community="春柳社区").id
        youhao = areas_service.community_for_path(session=session, district="西岗区", street="白云街道", community="友好社区").id
    people = [
        ("张大爷", id_number(date(1940, 1, 2), "male", 1), "13800138000", chunchun),
        ("张德义", id_number(date(1941, 3, 4), "male", 2), "13912345678", youhao),
        ("王秀英", id_number(date(1945, 7, 8), "female", 3), "15840110001", youhao),
        ("曾国华", id_number(date(1950, 9, 10), "male", 4), "18640119999", chunchun),
    ]
    ids = {}
    for name, idn, phone, community in people:
        response = agent_client.post("/api/elders", json={"name": name, "id_number": idn, "community_id": community,
                                                          "phones": [{"number": phone}]})
        assert response.status_code == 201, response.text
        ids[name] = response.json()["id"]
    return ids, people


def names(client, q, **params):
    response = client.get("/api/elders", params={"q": q, **params})
    assert response.status_code == 200
    return sorted(item["name"] for item in response.json()["items"])


def test_pinyin_initials_find_the_elder(agent_client, city):
    assert names(agent_client, "zdy") == ["张大爷", "张德义"]
    assert names(agent_client, "zdye") == []
    assert names(agent_client, "ZD") == ["张大爷", "张德义"]


def test_full_pinyin_prefix_finds_the_elder(agent_client, city):
    assert names(agent_client, "zhangda") == ["张大爷"]
    assert names(agent_client, "wangxiuying") == ["王秀英"]


def test_surname_reading_is_used_for_polyphonic_surnames(agent_client, city):
    assert names(agent_client, "zeng") == ["曾国华"]
    assert names(agent_client, "zgh") == ["曾国华"]


def test_chinese_name_prefix(agent_client, city):
    assert names(agent_client, "张") == ["张大爷", "张德义"]
    assert names(agent_client, "王秀英") == ["王秀英"]


def test_phone_fragment_start_or_end(agent_client, city):
    assert names(agent_client, "5678") == ["张德义"]  # last digits
    assert names(agent_client, "1584011") == ["王秀英"]  # leading digits
    assert names(agent_client, "138 0013 8000") == ["张大爷"]


def test_last_four_of_the_id_number(agent_client, city):
    ids, people = city
    last4 = people[2][1][-4:]
    assert "王秀英" in names(agent_client, last4)


def test_whole_id_number(agent_client, city):
    ids, people = city
    assert names(agent_client, people[3][1]) == ["曾国华"]


def test_community_name(agent_client, city):
    assert names(agent_client, "友好") == ["张德义", "王秀英"]
    assert names(agent_client, "春柳社区") == ["张大爷", "曾国华"]


def test_paging(agent_client, city):
    first = agent_client.get("/api/elders", params={"page_size": 3, "page": 1}).json()
    second = agent_client.get("/api/elders", params={"page_size": 3, "page": 2}).json()
    assert first["total"] == second["total"] == 4
    assert len(first["items"]) == 3 and len(second["items"]) == 1
    assert not {i["id"] for i in first["items"]} & {i["id"] for i in second["items"]}


def test_search_results_are_cards_without_id_numbers(agent_client, city):
    # Issue 17: results are the reduced card (no ID number at all, phones masked), not masked IDs.
    item = agent_client.get("/api/elders", params={"q": "zdy"}).json()["items"][0]
    assert "id_number" not in item and "address" not in item
    assert all("****" in phone["masked"] for phone in item["phones"])


def test_wildcards_in_queries_match_literally(agent_client, city):
    assert names(agent_client, "%") == []
    assert names(agent_client, "张_") == ["张大爷", "张德义"]  # '_' is dropped, not a wildcard for any one char


def test_count_stops_at_the_limit_and_says_so(agent_client, city, monkeypatch):
    from callcenter.elders import service as elders_service

    monkeypatch.setattr(elders_service, "COUNT_LIMIT", 3)
    body = agent_client.get("/api/elders", params={"page_size": 2}).json()
    assert (body["total"], body["total_is_capped"], len(body["items"])) == (3, True, 2)
    page = agent_client.get("/elders", headers={"accept": "text/html"}).text
    assert "超过 3 位老人" in page
    monkeypatch.setattr(elders_service, "COUNT_LIMIT", 4)
    assert agent_client.get("/api/elders").json()["total_is_capped"] is False


def test_short_digit_fragments_do_not_match_a_whole_area_code(agent_client, city, services):
    # "0411" would be the start of every Dalian landline; as 4 digits it means "ends with".
    agent_client.post("/api/elders", json={"name": "钱玉兰", "phones": [{"number": "0411-82220411"}]})
    agent_client.post("/api/elders", json={"name": "孙玉珍", "phones": [{"number": "0411-83334444"}]})
    assert names(agent_client, "0411") == ["钱玉兰"]
