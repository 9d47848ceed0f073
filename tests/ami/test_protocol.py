"""The frame parser, fed real Asterisk bytes in every way TCP can cut them."""

import random

import pytest

from callcenter.ami.protocol import BadFrame, FrameParser, Message, encode_action
from tests.ami.fake_asterisk import TRACES


def parse_all(data: bytes, sizes=None) -> tuple[FrameParser, list]:
    parser = FrameParser()
    out, i = [], 0
    while i < len(data):
        size = sizes() if sizes else len(data)
        out += parser.feed(data[i:i + size])
        i += size
    return parser, out


def test_banner_then_messages_with_empty_values_and_repeated_keys():
    data = (b"Asterisk Call Manager/11.0.0\r\n"
            b"Response: Success\r\nActionID: 1\r\nMessage: Authentication accepted\r\n\r\n"
            b"Event: Newchannel\r\nAccountCode: \r\nChanVariable: a=1\r\nChanVariable: b=2\r\n\r\n")
    parser, out = parse_all(data)
    assert parser.banner == "Asterisk Call Manager/11.0.0"
    assert [m.response or m.event for m in out] == ["Success", "Newchannel"]
    assert out[1].get("AccountCode") == "" and out[1].getall("ChanVariable") == ["a=1", "b=2"]
    assert out[1]["ChanVariable"] == "a=1"


@pytest.mark.parametrize("name", ["answered", "abandoned", "ivr", "resync"])
def test_every_trace_parses_identically_in_any_chunking(name):
    data = (TRACES / f"ami-trace-{name}.txt").read_bytes()
    _, whole = parse_all(data)
    assert whole and not any(isinstance(m, BadFrame) for m in whole)
    rng = random.Random(name)
    for largest in (1, 3, 7, 100, 4096):
        _, pieces = parse_all(data, sizes=lambda largest=largest: rng.randint(1, largest))
        assert [m.fields for m in pieces] == [m.fields for m in whole]


def test_chinese_name_cut_inside_a_character_survives():
    message = "Event: NewCallerid\r\nCallerIDName: 张大爷\r\n\r\n".encode()
    cut = message.index("大".encode()) + 1  # in the middle of 大's three bytes
    parser = FrameParser()
    parser._expect_banner = False
    assert parser.feed(message[:cut]) == []
    (out,) = parser.feed(message[cut:])
    assert out["CallerIDName"] == "张大爷"


def test_bad_frames_are_reported_and_the_next_message_survives():
    parser = FrameParser(max_message_bytes=1000)
    parser._expect_banner = False
    data = (b"no colon here\r\n\r\n" b"\xff\xfejunk\r\n\r\n" b"Event: Big\r\nData: " + b"x" * 5000 + b"\r\n\r\n"
            b"Event: Hangup\r\nUniqueid: 1.2\r\n\r\n")
    out = []
    for i in range(0, len(data), 512):
        out += parser.feed(data[i:i + 512])
    reasons = [m.reason for m in out if isinstance(m, BadFrame)]
    assert reasons == ["line without 'Key: value'", "line without 'Key: value'", "message longer than 1000 bytes"]
    assert [m.event for m in out if isinstance(m, Message)] == ["Hangup"]


def test_an_event_that_is_not_utf8_is_decoded_not_dropped():
    """A GBK caller name from an old trunk: the hang-up it carries must not be lost."""
    parser = FrameParser()
    parser._expect_banner = False
    gbk = "Event: Hangup\r\nUniqueid: 1.2\r\nCallerIDName: 张大爷\r\n\r\n".encode("gbk")
    broken = b"Event: Hangup\r\nUniqueid: 1.3\r\nCallerIDName: \xff\xff\xff\r\n\r\n"
    first, second = parser.feed(gbk + broken)
    assert (first.event, first["Uniqueid"], first["CallerIDName"]) == ("Hangup", "1.2", "张大爷")
    assert (second.event, second["Uniqueid"]) == ("Hangup", "1.3") and "\ufffd" in second["CallerIDName"]


def test_actions_encode_repeated_keys_and_refuse_line_breaks():
    data = encode_action("Originate", [("Channel", "Local/8001@agents"), ("Variable", "A=1"), ("Variable", "B=2"), ("Data", None)])
    assert data == b"Action: Originate\r\nChannel: Local/8001@agents\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n"
    with pytest.raises(ValueError):
        encode_action("Hangup", {"Channel": "x\r\nAction: Logoff"})
