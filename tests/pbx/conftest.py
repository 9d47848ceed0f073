"""Fixtures of the real-PBX tier (marker `realpbx`): one deployment per test module on a real
Asterisk 22 — its configuration written by `callcenter asterisk-config`, the bridge and the IVR
as their own processes, the web app on a live port, and agents as the console's JsSIP
softphone in headless Chromium with fake media."""

from __future__ import annotations

import os
import random
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from callcenter.auth import service as auth_service
from callcenter.config import Settings
from callcenter.main import create_app
from callcenter.models import metadata
from tests.browser import CHROMIUM, CHROMIUM_FLAGS, serving, sign_in
from tests.conftest import PASSWORD, REFERENCE_TABLES, TEST_REDIS_URL
from tests.faults import TcpProxy
from tests.pbx.harness import (Ami, Asterisk, Process, missing_runtime_libraries, pbx_environment, pick_ports,
                               self_signed_certificate, wait_for_port)
from tests.telephony import wait_for

pytestmark = pytest.mark.realpbx
TIMEOUT = 20_000
SECRET_KEY = "pbx-tier-secret-key-not-for-production"
AGENTS = (("8001", "wangfang", "王芳"), ("8002", "lina", "李娜"))
# The carrier, on a loopback address of its own (agents come from 127.0.0.1), one per run: the fake
# carrier listens on its port 5060, so two tiers on one machine must not share it.
TRUNK_ADDRESS = f"127.{random.randrange(1, 255)}.{random.randrange(0, 256)}.{random.randrange(2, 255)}"
# Fake microphone and camera, no permission prompt; Chromium 156 refuses ws://127.0.0.1 from a
# page without the last flag (Asterisk README).
MEDIA_FLAGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
               "--disable-features=LocalNetworkAccessChecks", "--autoplay-policy=no-user-gesture-required"]
# Every RTCPeerConnection the page makes, for the tests to read getStats() from.
TRACK_PEER_CONNECTIONS = """
(() => {
  const Native = window.RTCPeerConnection;
  window.__peerConnections = [];
  window.RTCPeerConnection = function (...args) { const pc = new Native(...args); window.__peerConnections.push(pc); return pc; };
  window.RTCPeerConnection.prototype = Native.prototype;
  Object.setPrototypeOf(window.RTCPeerConnection, Native);
})();
"""


@dataclass
class Stack:
    """One hotline deployment on a real Asterisk."""

    settings: Settings
    app: object
    url: str
    asterisk: Asterisk
    ami: Ami
    bridge: Process
    ivr: Process
    ws_proxy: TcpProxy  # between the softphones and Asterisk's WebSocket
    workdir: Path
    env: dict
    users: dict = field(default_factory=dict)  # extension → User

    @property
    def services(self):
        return self.app.state.services

    def call_id(self) -> str:
        """A fresh Linkedid for an originated test call."""
        return f"pbx-{uuid.uuid4().hex[:12]}"

    @contextmanager
    def api(self, username: str):
        """An HTTP client signed in as `username`, sending the CSRF header as our pages do."""
        with httpx.Client(base_url=self.url, timeout=15) as client:
            response = client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
            assert response.status_code == 200, response.text
            client.headers["X-CSRF-Token"] = client.cookies.get("cc_csrf") or ""
            yield client

    def call(self, call_id: str) -> dict | None:
        """The call as supervisors read it from the API, by its Linkedid."""
        with self.api("banzhang") as client:
            rows = client.get("/api/calls", params={"page_size": 500}).json()["items"]
            match = [row for row in rows if row.get("call_id") == call_id]
            return client.get(f"/api/calls/{match[0]['id']}").json() if match else None

    def talking(self, call_id: str, **expected) -> dict:
        """Wait until the call is recorded as talking (with `expected` fields); returns it."""
        def check():
            row = self.call(call_id)
            return row if row and row["state"] == "talking" and all(row.get(k) == v for k, v in expected.items()) else None
        return wait_for(check, 15, f"call {call_id} not talking with {expected}: {self.call(call_id)}")

    def member_line(self, name: str) -> str:
        """The agent's line of `queue show hotline` ("" when not a member)."""
        return next((line for line in self.queue_show().splitlines() if name in line), "")

    def queue_events(self, call_id: str) -> list[list[str]]:
        """queue_log rows of one call (callid: the caller's channel in the queue)."""
        return [row for row in self.asterisk.queue_log() if len(row) > 4 and row[1] == call_id]

    def in_script(self, call_id: str, script: str) -> bool:
        """The caller's channel is running our AGI script `script` now."""
        return any(c.get("Uniqueid") == call_id and c.get("Application") == "AGI"
                   and f"/{script}" in (c.get("ApplicationData") or "") for c in self.ami.channels())

    def in_queue(self, call_id: str) -> bool:
        return any(c.get("Uniqueid") == call_id and c.get("Application") == "Queue" for c in self.ami.channels())

    def agent_channels(self, extension: str) -> list[str]:
        return [c["Channel"] for c in self.ami.channels() if c["Channel"].startswith(f"PJSIP/{extension}-")]

    def queue_show(self, queue: str = "hotline") -> str:
        return self.asterisk.cli(f"queue show {queue}")

    def wait_for_bridge(self, connections: int = 1) -> None:
        """Until the bridge has connected to Asterisk `connections` times (its log says so)."""
        wait_for(lambda: self.bridge.output().count("AMI connected to") >= connections, 20,
                 f"the bridge did not connect to Asterisk\n{self.diagnostics()}")

    def kill_bridge_and_restart(self) -> None:
        """kill -9 the bridge (no goodbye, timers lost), then start a new one, as systemd would."""
        before = self.kill_bridge()
        self.start_bridge(before)

    def kill_bridge(self) -> int:
        """kill -9 the bridge; returns how often it had connected (for start_bridge)."""
        before = self.bridge.output().count("AMI connected to")
        self.bridge.process.kill()
        self.bridge.process.wait(10)
        return before

    def start_bridge(self, connected_before: int) -> None:
        self.bridge = Process("bridge", ["ami"], self.env, self.workdir)
        self.wait_for_bridge(connected_before + 1)

    def restart_asterisk(self) -> None:
        """`core restart now`, then wait until Asterisk is up and the bridge has reconnected."""
        before = self.bridge.output().count("AMI connected to")
        self.asterisk.cli("core restart now")
        wait_for(lambda: "fully booted" in self.asterisk.cli("core waitfullybooted", timeout=5), 40,
                 f"Asterisk did not come back\n{self.diagnostics()}")
        self.wait_for_bridge(before + 1)
        self.ami.sock.close()  # the tests' own AMI session went with the old Asterisk
        self.ami = Ami(int(self.env["AMI_PORT"]), self.env["AMI_USER"], self.env["AMI_SECRET"])

    def diagnostics(self) -> str:
        return "\n".join([f"--- bridge\n{self.bridge.output()[-3000:]}", f"--- ivr\n{self.ivr.output()[-2000:]}",
                          f"--- asterisk\n{(self.workdir / 'asterisk.out').read_text(errors='replace')[-3000:]}"])


def _wipe(services) -> None:
    with services.db.engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            if table.name not in REFERENCE_TABLES:
                connection.execute(table.delete())
    services.redis.flushdb()


def _menu_file(workdir: Path) -> Path:
    """The shipped menu, open around the clock: the tier must not depend on the time of day."""
    from ivr import menu

    text = Path(menu.DEFAULT_FILE).read_text(encoding="utf-8").replace("always_open = false", "always_open = true")
    assert "always_open = true" in text
    path = workdir / "menu.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pbx(database_url, tmp_path_factory):
    missing = missing_runtime_libraries()
    assert not missing, f"Asterisk's runtime libraries are missing: {missing} (scripts/test installs them with apt)"
    workdir = tmp_path_factory.mktemp("pbx")
    ports = pick_ports()
    prefix = f"pbx{uuid.uuid4().hex[:8]}"
    env = pbx_environment(database_url=database_url, redis_url=TEST_REDIS_URL, secret_key=SECRET_KEY,
                          data_dir=workdir / "data", events_prefix=prefix, ports=ports,
                          extra={"IVR_MENU_FILE": str(_menu_file(workdir)), "WRAPUP_SECONDS": "4", "OUTBOUND_RING_SECONDS": "6",
                                 "PASSWORD_HASH_TIME_COST": "1", "PASSWORD_HASH_MEMORY_KIB": "1024"})  # cheap test hashes
    cert, key = self_signed_certificate(workdir)
    env.update({"ASTERISK_TLS_CERT": str(cert), "ASTERISK_TLS_KEY": str(key), "ASTERISK_TLS_PORT": str(ports["tls"]),
                "TRUNK_HOST": TRUNK_ADDRESS, "ASTERISK_LOG_DIR": str(workdir / "state" / "log")})
    ws_proxy = TcpProxy(ports["http"])
    env["SIP_WS_URL"] = f"ws://127.0.0.1:{ws_proxy.port}/ws"
    settings = Settings(_env_file=None, **{key.lower(): value for key, value in env.items()
                                           if key.lower() in Settings.model_fields})
    app = create_app(settings)
    services = app.state.services
    _wipe(services)
    users = {}
    with services.db.session_scope() as session:
        for extension, username, name in AGENTS:
            user = auth_service.create_user(session=session, username=username, role="agent", password=PASSWORD,
                                             display_name=name, sip_extension=extension)
            auth_service.set_sip_secret(user=user, secret=f"sip-{extension}-secret", sealer=services.sealer)
            session.flush()
            session.expunge(user)
            users[extension] = user
        supervisor = auth_service.create_user(session=session, username="banzhang", role="supervisor", password=PASSWORD,
                                              display_name="班长")
        session.flush()
        session.expunge(supervisor)
        users["supervisor"] = supervisor
    with ExitStack() as stack:
        stack.callback(ws_proxy.close)
        asterisk = Asterisk(workdir, env)
        asterisk.configure()
        asterisk.synthesize_prompts()
        asterisk.start()
        stack.callback(asterisk.stop)
        ivr = Process("ivr", ["ivr"], env, workdir)
        stack.callback(ivr.stop)
        wait_for_port(ports["agi"])
        bridge = Process("bridge", ["ami"], env, workdir)
        url = stack.enter_context(serving(app))
        ami = Ami(ports["ami"], env["AMI_USER"], env["AMI_SECRET"])
        pbx = Stack(settings=settings, app=app, url=url, asterisk=asterisk, ami=ami, bridge=bridge, ivr=ivr, ws_proxy=ws_proxy, workdir=workdir,
                    env=env, users=users)
        stack.callback(lambda: pbx.bridge.stop())  # the one running then (a test may restart it)
        stack.callback(lambda: pbx.ami.close())
        pbx.wait_for_bridge()
        yield pbx
        if os.environ.get("PBX_KEEP"):
            print(pbx.diagnostics())


@pytest.fixture(scope="module")
def media_browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_FLAGS, *MEDIA_FLAGS])
        yield browser
        browser.close()


class Console:
    """An agent's console page with its registered web softphone."""

    def __init__(self, page, stack: Stack, extension: str):
        self.page, self.stack, self.extension = page, stack, extension
        self.user = stack.users[extension]

    def open(self) -> Console:
        sign_in(self.page, self.stack.url, "/console", self.user, PASSWORD)
        expect(self.page.locator("#link-state")).to_have_text("实时连接正常", timeout=TIMEOUT)
        expect(self.page.locator("#phone-mode")).to_contain_text("软电话已注册", timeout=TIMEOUT)
        return self

    def ready(self) -> None:
        self.page.click("#btn-ready")
        expect(self.page.locator("#agent-state")).to_have_text("就绪", timeout=TIMEOUT)

    def answer(self) -> None:
        expect(self.page.locator("#sp-answer")).to_be_enabled(timeout=TIMEOUT)
        self.page.click("#sp-answer")
        expect(self.page.locator("#phone-mode")).to_contain_text("通话中", timeout=TIMEOUT)

    def audio_packets(self) -> dict:
        """RTP packets received and sent by the softphone's peer connections (getStats)."""
        return self.page.evaluate("""async () => {
          let received = 0, sent = 0;
          for (const pc of window.__peerConnections || []) {
            (await pc.getStats()).forEach((s) => {
              if (s.type === 'inbound-rtp' && s.kind === 'audio') received += s.packetsReceived || 0;
              if (s.type === 'outbound-rtp' && s.kind === 'audio') sent += s.packetsSent || 0;
            });
          }
          return {received, sent};
        }""")


@pytest.fixture
def consoles(pbx, media_browser):
    """Open consoles by extension: `consoles("8001")`; closed (signed out of the queue) after the test."""
    opened: list[tuple[object, Console]] = []

    def open_console(extension: str) -> Console:
        context = media_browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
        context.add_init_script(TRACK_PEER_CONNECTIONS)
        console = Console(context.new_page(), pbx, extension).open()
        opened.append((context, console))
        return console

    yield open_console
    pbx.ws_proxy.heal()
    for context, console in opened:
        try:
            console.page.click("#btn-offline", timeout=3000)
        except Exception:  # noqa: BLE001  (a page a test broke on purpose)
            pass
        context.close()
    for extension, *_ in AGENTS:  # no agent left in a queue for the next test
        pbx.ami.action("QueueRemove", Queue="hotline", Interface=f"PJSIP/{extension}")
        pbx.ami.action("QueueRemove", Queue="emergency", Interface=f"PJSIP/{extension}")
    for channel in pbx.ami.channels():  # nor a call still up
        pbx.ami.action("Hangup", Channel=channel["Channel"])
