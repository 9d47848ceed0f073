from datetime import date

import pytest

from callcenter.elders.idcard import InvalidIdNumber, check_character, make_id_number, parse_id_number


def test_standard_example_number_is_valid_and_decoded():
    # The example printed in GB 11643-1999.
    parsed = parse_id_number("11010519491231002x")
    assert parsed.value == "11010519491231002X"
    assert parsed.birth_date == date(1949, 12, 31)
    assert parsed.gender == "female"
    assert parsed.masked == "1101**********002X"
    assert parsed.last4 == "002X"


def test_wrong_check_character_is_refused():
    good = make_id_number("210202", date(1950, 3, 4), 7, "male")
    wrong = good[:17] + ("1" if good[17] != "1" else "2")
    with pytest.raises(InvalidIdNumber, match="校验位"):
        parse_id_number(wrong)


@pytest.mark.parametrize("raw,reason", [("21020219500304", "18位"), ("21020219501304123X", "出生日期"), ("2102021950030412AX", "18位")])
def test_malformed_numbers_are_refused(raw, reason):
    with pytest.raises(InvalidIdNumber, match=reason):
        parse_id_number(raw)


def test_generated_numbers_carry_date_and_sex():
    for gender in ("male", "female"):
        value = make_id_number("210203", date(1938, 11, 2), 41, gender)
        parsed = parse_id_number(value)
        assert parsed.birth_date == date(1938, 11, 2) and parsed.gender == gender
        assert check_character(value[:17]) == value[17]
