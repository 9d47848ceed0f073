import pytest

from callcenter.phones import InvalidPhoneNumber, parse_phone

AREA = "0411"


@pytest.mark.parametrize("raw", ["13800138000", "+8613800138000", "008613800138000", "8613800138000", "138 0013 8000", "+86 138-0013-8000"])
def test_every_mobile_caller_id_form_normalizes_to_one_e164(raw):
    phone = parse_phone(raw, default_area_code=AREA)
    assert phone.e164 == "+8613800138000"
    assert phone.kind == "mobile"
    assert phone.display == "138 0013 8000"


@pytest.mark.parametrize("raw", ["041187654321", "0411-87654321", "87654321", "+8641187654321", "00864118765 4321"])
def test_landline_with_or_without_area_code_takes_the_city_code(raw):
    phone = parse_phone(raw, default_area_code=AREA)
    assert phone.e164 == "+8641187654321"
    assert phone.kind == "landline"
    assert phone.display == "0411-87654321"


def test_landline_of_another_city_keeps_its_own_area_code():
    assert parse_phone("010-87654321", default_area_code=AREA).e164 == "+861087654321"


@pytest.mark.parametrize("raw,reason", [("", "号码为空"), ("12349", "无效"), ("1380013800", "无效"), ("138abc", "非数字"), ("12345678", "无效")])
def test_invalid_numbers_are_refused_with_a_reason(raw, reason):
    with pytest.raises(InvalidPhoneNumber, match=reason):
        parse_phone(raw, default_area_code=AREA)
