"""#7 and #8 on the real Asterisk: what `asterisk-config` writes for the ways in (the carrier's
trunk, matched by its address; the softphones' WSS with the certificate from settings; the AMI
on AMI_PORT) is served, and a stranger's call is refused."""

from __future__ import annotations

import asyncio
import ssl

import pytest
import websockets

from tests.pbx.conftest import TRUNK_ADDRESS
from tests.pbx.harness import SipTrunk
from tests.telephony import wait_for

pytestmark = pytest.mark.realpbx


def test_the_trunk_is_matched_by_its_address_into_the_ivr_and_a_stranger_is_refused(pbx):
    sip_port = int(pbx.env["SIP_PORT"])
    trunk = SipTrunk(TRUNK_ADDRESS, sip_port)
    try:
        assert trunk.call("13800138000") == "SIP/2.0 200 OK"  # the IVR answered
        row = wait_for(lambda: next((r for r in recent_calls(pbx) if r["caller"] == "+8613800138000"), None), 15,
                       f"the trunk's call was not recorded\n{pbx.diagnostics()}")
        assert row["direction"] == "inbound" and row["state"] in ("ivr", "queued")
        assert trunk.hang_up() == "SIP/2.0 200 OK"
        wait_for(lambda: pbx.call(row["call_id"])["state"] == "ended", 15, "the trunk's BYE did not end the call")
    finally:
        trunk.close()

    stranger = SipTrunk("127.0.0.3", sip_port)
    try:
        status = stranger.call("13900139000")
        assert status.split()[1] in ("401", "403", "404"), status
        assert not [r for r in recent_calls(pbx) if r["caller"] == "+8613900139000"]
    finally:
        stranger.close()


def recent_calls(pbx) -> list[dict]:
    with pbx.api("banzhang") as client:
        return client.get("/api/calls", params={"page_size": 50}).json()["items"]


def test_softphones_reach_sip_over_wss_with_the_configured_certificate(pbx):
    """http.conf serves wss:// on ASTERISK_TLS_PORT with ASTERISK_TLS_CERT, and SIP answers there."""
    assert f"HTTPS Server Enabled and Bound to 127.0.0.1:{pbx.env['ASTERISK_TLS_PORT']}" in pbx.asterisk.cli("http show status")

    async def options() -> str:
        context = ssl.create_default_context(cafile=pbx.env["ASTERISK_TLS_CERT"])
        context.check_hostname = False
        url = f"wss://127.0.0.1:{pbx.env['ASTERISK_TLS_PORT']}/ws"
        async with websockets.connect(url, subprotocols=["sip"], ssl=context) as ws:
            await ws.send("\r\n".join([
                "OPTIONS sip:127.0.0.1 SIP/2.0", "Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKwss1", "Max-Forwards: 70",
                "From: <sip:probe@127.0.0.1>;tag=wss1", "To: <sip:127.0.0.1>", "Call-ID: wss-probe-1", "CSeq: 1 OPTIONS",
                "Content-Length: 0", "", ""]))
            return (await asyncio.wait_for(ws.recv(), 10)).split("\r\n", 1)[0]

    assert asyncio.run(options()).startswith("SIP/2.0 ")


def test_the_bridge_reaches_the_ami_on_the_configured_port(pbx):
    """#8: manager.conf listens on AMI_PORT (a free port here, not 5038), loopback only."""
    settings = dict(line.split(":", 1) for line in pbx.asterisk.cli("manager show settings").splitlines() if ":" in line)
    settings = {key.strip(): value.strip() for key, value in settings.items()}
    assert settings["TCP Bindaddress"] == f"127.0.0.1:{pbx.env['AMI_PORT']}" and settings["Timestamp events"] == "Yes"
    assert f"AMI connected to 127.0.0.1:{pbx.env['AMI_PORT']}" in pbx.bridge.output()
