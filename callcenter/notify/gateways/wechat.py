"""WeChat Official Account template messages (模板消息): the kind's approved template id, its
values as the template's data keys (the kind's variable names). The access token is fetched
with the app id and secret and kept until shortly before it expires. WeChat reports the outcome
as a TEMPLATESENDJOBFINISH event to the account's server URL; receiving it is not built yet, so
a WeChat message stays `sent`."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

from callcenter.notify import templates
from callcenter.notify.gateways.base import Outgoing, PermanentError, Receipt, Sent, TransientError

TRANSIENT_CODES = {-1, 40001, 42001, 45009}  # busy, token invalid or expired (fetched anew), rate limit


class WechatGateway:
    name = "wechat"

    def __init__(self, *, app_id: str, app_secret: str, template_ids: dict[str, str], api_url: str, timeout: float = 10.0):
        self.app_id, self.app_secret, self.template_ids = app_id, app_secret, template_ids
        self.api_url, self.timeout = api_url.rstrip("/"), timeout
        self._token: tuple[str, float] | None = None

    def send(self, message: Outgoing) -> Sent:
        kind = templates.kind_or_raise(message.kind)
        body = {"touser": message.address, "template_id": self.template_ids[kind.name],
                "data": {name: {"value": message.params[name]} for name in kind.variables}}
        answer = self._call("/cgi-bin/message/template/send", {"access_token": self._access_token()}, body)
        if answer.get("errcode") in (40001, 42001):
            self._token = None
        self._raise_for(answer)
        return Sent(provider_message_id=str(answer.get("msgid", "")))

    def receipts(self) -> list[Receipt]:
        return []

    def _access_token(self) -> str:
        if self._token is None or self._token[1] < time.monotonic():
            answer = self._call("/cgi-bin/token", {"grant_type": "client_credential", "appid": self.app_id, "secret": self.app_secret})
            self._raise_for(answer)
            self._token = (answer["access_token"], time.monotonic() + int(answer.get("expires_in", 7200)) - 300)
        return self._token[0]

    def _call(self, path: str, query: dict, body: dict | None = None) -> dict:
        url = f"{self.api_url}{path}?{urllib.parse.urlencode(query)}"
        data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:  # the URL (with its secret) is never in the message
            raise TransientError(f"微信：请求 {path} 失败（{type(exc).__name__}）") from exc

    @staticmethod
    def _raise_for(answer: dict) -> None:
        code = answer.get("errcode", 0)
        if code:
            error = TransientError if code in TRANSIENT_CODES else PermanentError
            raise error(f"微信：{code} {str(answer.get('errmsg', ''))[:200]}")
