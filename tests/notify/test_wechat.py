"""WeChat template messages through the real worker path, against a local server answering as
the Official Account API does (/cgi-bin/token, /cgi-bin/message/template/send)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from callcenter.notify import service
from tests.notify.conftest import messages, route_and_send
from tests.workorders.conftest import new_order

APP_ID, SECRET, TOKEN = "wx0000000000000001", "wechat-secret", "ACCESS_TOKEN_1"
TEMPLATES = {"order_dispatched_provider": "tplA", "order_dispatched_provider_nolink": "tplB", "order_dispatched_elder": "tplC",
             "visitor_login_link": "tplD"}


class FakeWechat(BaseHTTPRequestHandler):
    sent: list[dict] = []

    def do_GET(self):
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        ok = url.path == "/cgi-bin/token" and query == {"grant_type": "client_credential", "appid": APP_ID, "secret": SECRET}
        self.answer({"access_token": TOKEN, "expires_in": 7200} if ok else {"errcode": 40013, "errmsg": "invalid appid"})

    def do_POST(self):
        url = urlsplit(self.path)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if url.path != "/cgi-bin/message/template/send" or parse_qs(url.query).get("access_token") != [TOKEN]:
            return self.answer({"errcode": 40001, "errmsg": "invalid credential"})
        if body["touser"] == "oBlocked":
            return self.answer({"errcode": 43004, "errmsg": "require subscribe"})
        assert body["template_id"] in TEMPLATES.values() and all(set(v) == {"value"} for v in body["data"].values())
        FakeWechat.sent.append(body)
        self.answer({"errcode": 0, "errmsg": "ok", "msgid": 200228332 + len(FakeWechat.sent)})

    def answer(self, data: dict):
        raw = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@pytest.fixture
def wechat(configure_notify, rq_redis):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeWechat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeWechat.sent = []
    configure_notify(wechat_gateway="mp", wechat_app_id=APP_ID, wechat_app_secret=SecretStr(SECRET), wechat_template_ids=TEMPLATES,
                     wechat_api_url=f"http://127.0.0.1:{server.server_address[1]}")
    yield FakeWechat
    server.shutdown()
    server.server_close()


def test_wechat_template_messages_go_to_the_openid_and_a_refusal_fails_the_message(services, console, city, rq_redis, wechat):
    with services.db.session_scope() as session:
        service.set_recipient(session=session, phone="+8613900000001", channel="wechat", wechat_openid="oProvider1")
        service.set_recipient(session=session, phone="+8613800138000", channel="wechat", wechat_openid="oBlocked")
    new_order(console, city["elder"])
    route_and_send(rq_redis)
    provider_msg, elder_msg = messages(services)
    assert (provider_msg.channel, provider_msg.gateway, provider_msg.status) == ("wechat", "wechat", "sent")
    [sent] = wechat.sent
    assert sent["touser"] == "oProvider1" and sent["template_id"] == "tplA"
    assert sent["data"]["number"]["value"] in provider_msg.text and "/m/link/" in sent["data"]["link"]["value"]
    assert (elder_msg.status, elder_msg.attempts) == ("failed", 1) and "43004" in elder_msg.error
