"""NUL characters refused for every route in one place, as a small ASGI middleware: in the path,
the query string, a JSON body or a form (url-encoded, or multipart: its text fields and file names;
a file's own bytes are the file's business). PostgreSQL cannot store them in text (a 500 before this),
and no user types one. The answer is a 422 naming where it was, like any validation error."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl

MESSAGE = "不能含有空字符（NUL）"
JSON_NUL = b"\\u0000"


def _nul_in(value, loc: list) -> list | None:
    """Where in a parsed JSON value the first NUL is (keys included), or None."""
    if isinstance(value, str):
        return loc if "\x00" in value else None
    if isinstance(value, list):
        items = enumerate(value)
    elif isinstance(value, dict):
        items = value.items()
    else:
        return None
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return loc + [key.replace("\x00", "\\u0000")]
        found = _nul_in(item, loc + [key])
        if found is not None:
            return found
    return None


def _nul_in_pairs(text: str, prefix: str) -> list | None:
    for name, value in parse_qsl(text, keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return [prefix, name.replace("\x00", "\\u0000")]
    return None


def nul_in_target(scope) -> list | None:
    if "\x00" in scope.get("path", ""):
        return ["path"]
    return _nul_in_pairs(scope.get("query_string", b"").decode("latin-1"), "query")


def _parameter(header: str, name: str) -> str | None:
    """A parameter of a header value (`boundary` of a Content-Type, `name` of a Content-Disposition)."""
    match = re.search(rf'(?:^|;)\s*{name}="([^"]*)"|(?:^|;)\s*{name}=([^;\s]*)', header, re.I)
    return None if match is None else match.group(1) if match.group(1) is not None else match.group(2)


def _nul_in_multipart(content_type: str, body: bytes) -> list | None:
    """The first text field or file name of a multipart body holding a NUL. The parts are split on
    the boundary, which by definition occurs nowhere else in the body."""
    boundary = _parameter(content_type, "boundary")
    if not boundary or b"\x00" not in body and b"%00" not in body:
        return None
    for part in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if part.startswith(b"--"):
            break
        head, _, content = part.partition(b"\r\n\r\n")
        headers = head.decode("utf-8", "replace")
        disposition = next((line.split(":", 1)[1] for line in headers.split("\r\n") if line.lower().startswith("content-disposition:")), "")
        name, filename = _parameter(disposition, "name") or "", _parameter(disposition, "filename")
        if filename is not None:
            if "\x00" in filename or "%00" in filename:
                return ["body", name, "filename"]
        elif b"\x00" in content.removesuffix(b"\r\n"):
            return ["body", name]
    return None


def nul_in_body(content_type: str, body: bytes, full_type: str = "") -> list | None:
    if content_type == "multipart/form-data":
        return _nul_in_multipart(full_type, body)
    if content_type == "application/json" and JSON_NUL in body:
        try:
            return _nul_in(json.loads(body), ["body"])
        except ValueError:
            return None  # not JSON: the route's own parsing says so
    if content_type == "application/x-www-form-urlencoded" and b"%00" in body:
        return _nul_in_pairs(body.decode("latin-1"), "body")
    return None


class RefuseNul:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        where = nul_in_target(scope)
        if where is not None:
            return await _refuse(send, where)
        full_type = dict(scope.get("headers") or []).get(b"content-type", b"").decode("latin-1")
        content_type = full_type.split(";")[0].strip().lower()
        if content_type not in ("application/json", "application/x-www-form-urlencoded", "multipart/form-data"):
            return await self.app(scope, receive, send)
        messages, body = [], b""
        while True:  # the body is bounded: BodyLimit, outside this, caps it (uploads at their own limit)
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        where = nul_in_body(content_type, body, full_type)
        if where is not None:
            return await _refuse(send, where)

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _refuse(send, loc: list) -> None:
    body = json.dumps({"detail": [{"loc": loc, "msg": MESSAGE, "type": "nul_character"}], "message": "请求格式有误"},
                      ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": 422,
                "headers": [(b"content-type", b"application/json; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
