"""Photos a provider attaches when completing an order: type checked by content (not by the
name or the browser's claim), size capped, stored under DATA_DIR/uploads/orders."""

from __future__ import annotations

import secrets
from pathlib import Path

from callcenter.errors import FieldErrors

# Leading bytes of each accepted format → the extension it is stored under.
SIGNATURES = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"))
WEBP = (b"RIFF", b"WEBP")


def kind_of(head: bytes) -> str | None:
    for signature, ext in SIGNATURES:
        if head.startswith(signature):
            return ext
    if head[:4] == WEBP[0] and head[8:12] == WEBP[1]:
        return "webp"
    return None


def folder(settings) -> Path:
    return Path(settings.data_dir) / "uploads" / "orders"


def check(settings, data: bytes) -> str:
    """The photo's extension; FieldErrors (in Chinese) for a wrong type or size."""
    limit_mb = settings.upload_max_bytes / 1024 / 1024
    if len(data) > settings.upload_max_bytes:
        raise FieldErrors.single("photo", f"照片不能超过 {limit_mb:g} MB")
    ext = kind_of(data[:16])
    if ext is None:
        raise FieldErrors.single("photo", "只能上传 JPEG、PNG 或 WebP 格式的照片")
    return ext


def save(settings, *, order_id: int, data: bytes) -> str:
    """Store the photo (checked again); its file name."""
    ext = check(settings, data)
    name = f"{order_id}-{secrets.token_hex(8)}.{ext}"
    target = folder(settings)
    target.mkdir(parents=True, exist_ok=True)
    (target / name).write_bytes(data)
    return name


def path_of(settings, name: str) -> Path:
    return folder(settings) / Path(name).name
