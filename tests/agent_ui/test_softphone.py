"""Web softphone mode: with SIP_WS_URL set and an agent's SIP secret stored, the console registers
with JsSIP (the vendored bundle, in headless Chromium) against a SIP-over-WebSocket registrar that
checks the digest password as Asterisk does; failures are shown in Chinese."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import socket
import threading

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect
from websockets.asyncio.server import serve

from callcenter.main import create_app
from tests.agent_ui.test_console import sign_in_to_console
from tests.browser import CHROMIUM, CHROMIUM_FLAGS, serving
from tests.conftest import login, make_user
from tests.telephony import wait_for

TIMEOUT = 15_000
REALM = "asterisk"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 (SIP digest is MD5 by definition)


FINGERPRINT = ":".join(f"{b:02X}" for b in range(32))


def offer_sdp(direction: str = "sendrecv", setup: str = "actpass") -> str:
    """An audio offer as Asterisk's WebRTC endpoint sends it (DTLS-SRTP, ICE, rtcp-mux, Opus)."""
    return "\r\n".join([
        "v=0", "o=- 1795363528 1 IN IP4 127.0.0.1", "s=Asterisk", "t=0 0", "a=group:BUNDLE 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 0", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:fakeufrag", "a=ice-pwd:fakeicepasswordfakeicepass", f"a=fingerprint:sha-256 {FINGERPRINT}",
        f"a=setup:{setup}", "a=mid:0", f"a={direction}", "a=rtcp-mux", "a=rtpmap:111 opus/48000/2", "a=rtpmap:0 PCMU/8000", "",
    ])


class Registrar:
    """Asterisk's SIP-over-WebSocket side (subprotocol `sip`), as much as the console needs:
    REGISTER with a digest challenge (200 for the right password, 401 again for a wrong one), an
    incoming call (INVITE with an SDP offer; ACK for the browser's 200), and the browser's
    re-INVITE for hold and BYE for hang-up, each answered 200."""

    def __init__(self, passwords: dict[str, str]):
        self.passwords = passwords
        self.registered: list[str] = []
        self.seen: list[str] = []  # what the browser sent: "REGISTER", "200 INVITE", "INVITE", "BYE" …
        self.sockets: dict[str, object] = {}
        self.answer_sdp = ""
        self.loop = asyncio.new_event_loop()
        self.port = None
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.server = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self):
        server = await serve(self._handle, "127.0.0.1", 0, subprotocols=["sip"])
        self.port = server.sockets[0].getsockname()[1]
        return server

    @staticmethod
    def _parse(text: str):
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:] if ":" in line]
        return lines[0], headers, body

    @staticmethod
    def _get(headers, name: str) -> str:
        return next((v for k, v in headers if k.lower() == name.lower()), "")

    async def _handle(self, ws):
        async for text in ws:
            first, headers, body = self._parse(text)
            method = first.split(" ", 1)[0]
            if first.startswith("SIP/2.0 "):  # a response to our INVITE
                status, cseq = first.split(" ")[1], self._get(headers, "CSeq")
                self.seen.append(f"{status} {cseq.split()[-1]}")
                if status == "200" and cseq.endswith("INVITE"):
                    self.answer_sdp = body
                    await ws.send(self._ack(headers))
            elif method == "REGISTER":
                self.seen.append(method)
                await self._register(ws, headers)
            elif method in ("INVITE", "BYE"):  # re-INVITE (hold / unhold) or hang-up from the browser
                self.seen.append(method + (" sendonly" if "a=sendonly" in body else ""))
                sdp = offer_sdp("recvonly" if "a=sendonly" in body else "sendrecv", "passive") if method == "INVITE" else ""
                await ws.send(self._response(headers, "200 OK", [("Contact", "<sip:asterisk@127.0.0.1;transport=ws>")], sdp))

    async def _register(self, ws, headers):
        user = self._authenticated(self._get(headers, "Authorization"))
        if user:
            self.registered.append(user)
            self.sockets[user] = ws
            await ws.send(self._response(headers, "200 OK", [("Contact", self._get(headers, "Contact") + ";expires=600"),
                                                             ("Expires", "600")]))
        else:
            challenge = f'Digest realm="{REALM}", nonce="{secrets.token_hex(8)}", algorithm=MD5'
            await ws.send(self._response(headers, "401 Unauthorized", [("WWW-Authenticate", challenge)]))

    def _authenticated(self, authorization: str) -> str | None:
        fields = dict(re.findall(r'(\w+)="?([^",]*)"?', authorization))
        password = self.passwords.get(fields.get("username", ""))
        if password is None or "response" not in fields:
            return None
        expected = md5(f"{md5(fields['username'] + ':' + REALM + ':' + password)}:{fields['nonce']}:{md5('REGISTER:' + fields['uri'])}")
        return fields["username"] if secrets.compare_digest(expected, fields["response"]) else None

    @staticmethod
    def _message(first: str, headers: list[tuple[str, str]], body: str = "") -> str:
        if body:
            headers = headers + [("Content-Type", "application/sdp")]
        lines = [first] + [f"{k}: {v}" for k, v in headers] + [f"Content-Length: {len(body.encode())}", "", body]
        return "\r\n".join(lines)

    def _response(self, headers, status: str, extra: list[tuple[str, str]], body: str = "") -> str:
        copied = [(k, v) for k, v in headers if k.lower() in ("via", "from", "to", "call-id", "cseq")]
        copied = [(k, v + ";tag=asterisk1" if k.lower() == "to" and "tag=" not in v else v) for k, v in copied]
        return self._message(f"SIP/2.0 {status}", copied + extra, body)

    def _ack(self, response_headers) -> str:
        contact = re.search(r"<([^>]+)>", self._get(response_headers, "Contact")).group(1)
        keep = [(k, v) for k, v in response_headers if k.lower() in ("from", "to", "call-id")]
        return self._message(f"ACK {contact} SIP/2.0", [("Via", f"SIP/2.0/WS 127.0.0.1;branch=z9hG4bK{secrets.token_hex(6)}"),
                                                        ("Max-Forwards", "70"), *keep, ("CSeq", "1 ACK")])

    def invite(self, user: str, caller: str = "13800138000", name: str = "张大爷") -> None:
        """Asterisk rings the agent's browser: an incoming call with an SDP offer."""
        headers = [("Via", f"SIP/2.0/WS 127.0.0.1;branch=z9hG4bK{secrets.token_hex(6)}"), ("Max-Forwards", "70"),
                   ("From", f'"{name}" <sip:{caller}@127.0.0.1>;tag=caller1'), ("To", f"<sip:{user}@127.0.0.1>"),
                   ("Call-ID", f"{secrets.token_hex(8)}@asterisk"), ("CSeq", "1 INVITE"),
                   ("Contact", "<sip:asterisk@127.0.0.1;transport=ws>")]
        text = self._message(f"INVITE sip:{user}@127.0.0.1;transport=ws SIP/2.0", headers, offer_sdp())
        asyncio.run_coroutine_threadsafe(self.sockets[user].send(text), self.loop).result(5)

    def close(self):
        async def shutdown():
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def registrar():
    registrar = Registrar({"8001": "sip-pass-8001", "8002": "sip-pass-8002"})
    yield registrar
    registrar.close()


@pytest.fixture
def softphone_site(settings, registrar):
    """The web app with SIP_WS_URL pointing at the registrar."""
    app = create_app(settings.model_copy(update={"sip_ws_url": f"ws://127.0.0.1:{registrar.port}/ws"}))
    with serving(app) as url:
        yield url, app


def agent_with_secret(app, services, extension: str, secret: str):
    agent = make_user(services, "agent", username=f"agent{extension}", sip_extension=extension)
    with TestClient(app) as client:
        login(client, make_user(services, "supervisor"))
        response = client.patch(f"/api/users/{agent.id}", json={"sip_secret": secret})
        assert response.status_code == 200 and response.json()["softphone"] is True
        assert secret not in response.text
    return agent


def test_the_console_registers_the_web_softphone(page, services, softphone_site, registrar):
    url, app = softphone_site
    agent = agent_with_secret(app, services, "8001", "sip-pass-8001")
    sign_in_to_console(page, url, agent)
    expect(page.locator("#phone-mode")).to_have_text("软电话已注册（分机 8001）", timeout=TIMEOUT)
    assert registrar.registered == ["8001"]


@pytest.fixture(scope="module")
def media_browser(browser):
    """Chromium as the required flags launch it, plus a fake microphone (a hotline PC has a
    headset), from the same Playwright instance as `browser` (one sync Playwright per thread)."""
    media = browser.browser_type.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS + [
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"])
    yield media
    media.close()


def test_the_softphone_answers_mutes_holds_and_hangs_up_in_the_browser(media_browser, services, softphone_site, registrar):
    url, app = softphone_site
    agent = agent_with_secret(app, services, "8001", "sip-pass-8001")
    context = media_browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN", permissions=["microphone"])
    page = context.new_page()
    try:
        sign_in_to_console(page, url, agent)
        expect(page.locator("#phone-mode")).to_have_text("软电话已注册（分机 8001）", timeout=TIMEOUT)
        registrar.invite("8001")
        expect(page.locator("#phone-mode")).to_have_text("软电话来电：张大爷", timeout=TIMEOUT)
        expect(page.locator("#softphone-controls")).to_be_visible()

        page.click("#sp-answer")
        expect(page.locator("#phone-mode")).to_have_text("软电话通话中", timeout=TIMEOUT)
        wait_for(lambda: "200 INVITE" in registrar.seen, message="the answer never reached the registrar")
        assert "m=audio" in registrar.answer_sdp  # answered with the agent's audio

        page.click("#sp-mute")
        expect(page.locator("#sp-mute")).to_have_text("取消静音")
        page.click("#sp-hold")
        expect(page.locator("#sp-hold")).to_have_text("取消保持", timeout=TIMEOUT)
        wait_for(lambda: "INVITE sendonly" in registrar.seen, message="no hold re-INVITE")  # what Asterisk sees of a hold
        page.click("#sp-hangup")
        expect(page.locator("#softphone-controls")).to_be_hidden(timeout=TIMEOUT)
        wait_for(lambda: registrar.seen[-1] == "BYE", message="no BYE")
        expect(page.locator("#phone-mode")).to_have_text("软电话已注册（分机 8001）")
    finally:
        context.close()


def test_a_wrong_sip_password_is_shown_in_chinese(page, services, softphone_site, registrar):
    url, app = softphone_site
    agent = agent_with_secret(app, services, "8002", "not-the-password")
    sign_in_to_console(page, url, agent)
    expect(page.locator("#phone-mode")).to_have_text("软电话注册失败：认证失败（分机号或密码错误）", timeout=TIMEOUT)
    assert registrar.registered == []


def test_an_unreachable_sip_server_is_shown_in_chinese(page, settings, services):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"ws://127.0.0.1:{sock.getsockname()[1]}/ws"
    app = create_app(settings.model_copy(update={"sip_ws_url": dead}))
    with serving(app) as url:
        agent = agent_with_secret(app, services, "8003", "whatever-secret")
        sign_in_to_console(page, url, agent)
        expect(page.locator("#phone-mode")).to_have_text(f"软电话注册失败：无法连接 SIP 服务器（{dead}），正在重连…", timeout=TIMEOUT)


def test_without_sip_settings_the_console_says_desk_phone(app, services):
    agent = make_user(services, "agent", sip_extension="8004")
    with TestClient(app) as client:
        login(client, agent)
        assert client.get("/api/agent/softphone").json() == {
            "mode": "desk", "extension": "8004", "message": "话机模式：请使用分机 8004 的座席话机接听"}
