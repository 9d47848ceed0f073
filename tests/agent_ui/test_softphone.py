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
from tests.browser import serving
from tests.conftest import login, make_user

TIMEOUT = 15_000
REALM = "asterisk"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 (SIP digest is MD5 by definition)


class Registrar:
    """REGISTER over WebSocket (subprotocol `sip`): 401 with a digest challenge, then 200 for the
    right password, 401 again for a wrong one."""

    def __init__(self, passwords: dict[str, str]):
        self.passwords = passwords
        self.registered: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.port = None
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.server = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self):
        server = await serve(self._handle, "127.0.0.1", 0, subprotocols=["sip"])
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _handle(self, ws):
        async for text in ws:
            head, _, _ = text.partition("\r\n\r\n")
            lines = head.split("\r\n")
            if not lines[0].startswith("REGISTER "):
                continue
            headers = [line.split(":", 1) for line in lines[1:] if ":" in line]
            get = lambda name: next((v.strip() for k, v in headers if k.strip().lower() == name.lower()), "")  # noqa: E731
            user = self._authenticated(get("Authorization"))
            if user:
                self.registered.append(user)
                await ws.send(self._response(headers, "200 OK", [("Contact", get("Contact") + ";expires=600"), ("Expires", "600")]))
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
    def _response(headers, status: str, extra: list[tuple[str, str]]) -> str:
        copied = [(k.strip(), v.strip()) for k, v in headers if k.strip().lower() in ("via", "from", "to", "call-id", "cseq")]
        copied = [(k, v + ";tag=reg1" if k.lower() == "to" and "tag=" not in v else v) for k, v in copied]
        lines = [f"SIP/2.0 {status}"] + [f"{k}: {v}" for k, v in copied + extra] + ["Content-Length: 0", "", ""]
        return "\r\n".join(lines)

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
        expect(page.locator("#phone-mode")).to_have_text(f"软电话注册失败：无法连接 SIP 服务器（{dead}）", timeout=TIMEOUT)


def test_without_sip_settings_the_console_says_desk_phone(app, services):
    agent = make_user(services, "agent", sip_extension="8004")
    with TestClient(app) as client:
        login(client, agent)
        assert client.get("/api/agent/softphone").json() == {
            "mode": "desk", "extension": "8004", "message": "话机模式：请使用分机 8004 的座席话机接听"}
