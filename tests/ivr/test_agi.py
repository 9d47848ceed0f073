"""The FastAGI protocol and server over real TCP: environment, replies, hang-ups at any point,
closed sockets, silent peers, garbage, many calls at once."""

from __future__ import annotations

import asyncio

import pytest

from ivr.agi import AgiCommandError, AgiHangup, AgiServer, parse_reply, quote
from tests.ivr.fake_agi import dial, recorded_dialogue, recorded_environment


def test_replies_parse_as_asterisk_sends_them():
    reply = parse_reply("200 result=1 (Local/8001@agents)")
    assert (reply.code, reply.result, reply.data) == (200, 1, "Local/8001@agents")
    assert parse_reply("200 result=57").digit == "9"
    assert parse_reply("200 result=0 endpos=24000").digit is None
    assert parse_reply("200 result=-1").result == -1
    with pytest.raises(AgiHangup):
        parse_reply("511 Command Not Permitted on a dead channel or intercepted by application")
    with pytest.raises(AgiCommandError):
        parse_reply("510 Invalid or unknown command")
    with pytest.raises(AgiCommandError):
        parse_reply("hello")


def test_every_reply_of_the_recorded_dialogue_parses():
    for script in ("ivr", "survey"):
        for command, line in recorded_dialogue(script):
            assert parse_reply(line).code == 200, (command, line)


def test_quoting_keeps_one_command_per_line():
    assert quote('张"大爷') == '"张\\"大爷"'
    assert "\n" not in quote("line one\nSET VARIABLE X 1")


def run_server(handler, scenario, **options):
    async def main():
        server = AgiServer({"ivr": handler}, port=0, **options)
        await server.start()
        try:
            return await scenario(server)
        finally:
            await server.close()

    return asyncio.run(main())


def test_environment_is_read_and_commands_answered():
    seen = {}

    async def handler(session):
        seen.update(session.env)
        await session.answer()
        seen["digit"] = await session.wait_for_digit(5000)
        seen["agent"] = await session.get_variable("MEMBERINTERFACE")
        seen["missing"] = await session.get_variable("NOPE")
        await session.set_variable("CALLERID(name)", "张大爷")

    async def scenario(server):
        return await dial(server.port, keys=["9"], channel={"MEMBERINTERFACE": "Local/8001@agents"})

    call = run_server(handler, scenario)
    recorded = recorded_environment("ivr")
    assert seen["agi_callerid"] == recorded["agi_callerid"] == "13800138000"
    assert seen["agi_uniqueid"] == "1795363563.21"
    assert (seen["digit"], seen["agent"], seen["missing"]) == ("9", "Local/8001@agents", None)
    assert call.variables["CALLERID(name)"] == "张大爷"
    assert call.commands[:2] == ["ANSWER", "WAIT FOR DIGIT 5000"]
    assert call.closed_by_server


@pytest.mark.parametrize("at", ["ANSWER", "WAIT FOR DIGIT", "SET VARIABLE"])
def test_a_hangup_at_any_point_ends_the_session_cleanly(at):
    reached = []

    async def handler(session):
        await session.answer()
        reached.append("answered")
        await session.wait_for_digit(5000)
        reached.append("digit")
        await session.set_variable("IVR_ROUTE", "agent")
        reached.append("set")

    async def scenario(server):
        call = await dial(server.port, hangup_at=at)
        await asyncio.sleep(0.05)
        return call, server.active, server.served

    call, active, served = run_server(handler, scenario)
    steps = {"ANSWER": [], "WAIT FOR DIGIT": ["answered"], "SET VARIABLE": ["answered", "digit"]}[at]
    assert reached == steps
    assert call.closed_by_server and (active, served) == (0, 1)


def test_a_closed_socket_a_silent_peer_and_garbage_end_one_session_not_the_server():
    async def handler(session):
        await session.answer()
        await session.wait_for_digit(1000)
        await session.set_variable("IVR_ROUTE", "agent")

    async def scenario(server):
        # Asterisk closes the socket right after the environment
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"agi_network_script: ivr\n\n")
        await writer.drain()
        writer.close()
        # a peer that never sends the end of the environment
        _, silent = await asyncio.open_connection("127.0.0.1", server.port)
        silent.write(b"agi_network_script: ivr\n")
        await silent.drain()
        # a peer that stops answering after ANSWER
        stuck = await dial(server.port, silent_after=1)
        # garbage instead of a reply
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"agi_network_script: ivr\n\n")
        assert await reader.readline() == b"ANSWER\n"
        writer.write(b"\xff\xfe not agi at all\n")
        await writer.drain()
        garbage_closed = await asyncio.wait_for(reader.read(), 5) == b""
        # and a normal call still works
        ok = await dial(server.port, keys=["0"])
        silent.close()
        return stuck, garbage_closed, ok

    stuck, garbage_closed, ok = run_server(handler, scenario, env_timeout=0.5, reply_timeout=0.5)
    assert stuck.closed_by_server and stuck.commands == ["ANSWER", "WAIT FOR DIGIT 1000"]
    assert garbage_closed
    assert ok.variables == {"IVR_ROUTE": "agent"}


def test_an_unknown_script_is_told_and_closed():
    async def handler(session):
        raise AssertionError("not this one")

    async def scenario(server):
        return await dial(server.port, "nosuchscript")

    call = run_server(handler, scenario)
    assert call.closed_by_server and call.commands == ['VERBOSE "12349: no AGI script \'nosuchscript\'" 1']


def test_many_calls_at_once():
    async def handler(session):
        await session.answer()
        digit = await session.wait_for_digit(5000)
        await asyncio.sleep(0.2)  # every call is in the server at the same time
        await session.set_variable("IVR_ROUTE", f"key{digit}")

    async def scenario(server):
        calls = await asyncio.gather(*(dial(server.port, keys=[str(i % 10)]) for i in range(100)))
        return calls, server.served

    calls, served = run_server(handler, scenario)
    assert [call.variables["IVR_ROUTE"] for call in calls] == [f"key{i % 10}" for i in range(100)]
    assert served == 100
