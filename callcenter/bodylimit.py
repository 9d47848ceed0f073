"""Request body limits, as a small ASGI middleware in front of everything (the login included):
a body larger than its route allows is refused with 413 before anything parses it, whether the
client announced its length (Content-Length) or streams it (chunked)."""

from __future__ import annotations

import json
import re

from callcenter.config import Settings

FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the other fields around an uploaded file


class BodyTooLarge(Exception):
    pass


def route_limits(settings: Settings) -> list[tuple[re.Pattern, int]]:
    """The routes that take uploads, and their limits; every other route takes body_max_bytes."""
    return [
        (re.compile(r"^/api/elders/import$"), settings.import_max_bytes + FORM_OVERHEAD),
        (re.compile(r"^/m/orders/[^/]+/complete$"), settings.upload_max_bytes + FORM_OVERHEAD),
    ]


class BodyLimit:
    def __init__(self, app, settings: Settings):
        self.app = app
        self.default = settings.body_max_bytes
        self.routes = route_limits(settings)

    def limit_for(self, path: str) -> int:
        return next((limit for pattern, limit in self.routes if pattern.match(path)), self.default)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await _refuse(send, limit)
        received = 0
        exceeded = started = False

        async def counting_receive():
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge()
            return message

        async def limited_send(message):
            # A parser that caught BodyTooLarge answers with its own error (FastAPI: 400): the 413 replaces it.
            nonlocal started
            if exceeded:
                if not started:
                    started = True
                    await _refuse(send, limit)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, limited_send)
        except BodyTooLarge:
            if not started:
                await _refuse(send, limit)


async def _refuse(send, limit: int) -> None:
    size = f"{limit / 1024 / 1024:.1f} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"
    body = json.dumps({"detail": f"请求内容过大（此处最多 {size}）"}, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
