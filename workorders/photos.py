"""Photos a provider attaches when completing an order (and a visitor to a visit's record,
callcenter/care/mobile.py): type checked by content (not by the name or the browser's claim),
size capped, stored under DATA_DIR/uploads/<kind> (orders, visits), and served with their own
image type and nosniff.

Pillow is not a dependency, so "by content" is a structural decode of the container: a JPEG's
marker segments up to a frame header and the scan, a PNG's chunks with their CRCs up to IEND, a
WebP's RIFF chunk sizes. A file that only starts like an image (an HTML page behind a JPEG
header) fails it.
"""

from __future__ import annotations

import secrets
import struct
import zlib
from pathlib import Path

from starlette.responses import FileResponse

from callcenter.errors import FieldErrors

MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # SOFn
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RSTn: no length


def kind_of(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def _jpeg_ok(data: bytes) -> bool:
    """SOI, well-formed segments, a frame header with a size, then a scan ending in EOI."""
    pos, frame = 2, False
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if length < 2 or pos + 2 + length > len(data):
            return False
        if marker in _JPEG_FRAMES:
            if length < 8:
                return False
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            frame = height > 0 and width > 0
        if marker == 0xDA:  # start of scan: the entropy-coded data follows, up to EOI
            return frame and b"\xff\xd9" in data[pos + 2 + length:]
        pos += 2 + length
    return False


def _png_ok(data: bytes) -> bool:
    """Every chunk's length and CRC, IHDR first with a size, IDAT present, IEND last."""
    pos, seen = len(PNG_SIGNATURE), []
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data) or zlib.crc32(data[pos + 4:pos + 8 + length]) != struct.unpack(">I", data[end - 4:end])[0]:
            return False
        if not seen and (kind != b"IHDR" or length != 13 or 0 in struct.unpack(">II", data[pos + 8:pos + 16])):
            return False
        seen.append(kind)
        if kind == b"IEND":
            return b"IDAT" in seen
        pos = end
    return False


def _webp_ok(data: bytes) -> bool:
    """The RIFF size matches the file and its chunks fill it, the first an image chunk."""
    if len(data) < 20 or struct.unpack("<I", data[4:8])[0] + 8 != len(data):
        return False
    if data[12:16] not in (b"VP8 ", b"VP8L", b"VP8X"):
        return False
    pos = 12
    while pos + 8 <= len(data):
        size = struct.unpack("<I", data[pos + 4:pos + 8])[0]
        pos += 8 + size + (size & 1)
    return pos == len(data)


DECODERS = {"jpg": _jpeg_ok, "png": _png_ok, "webp": _webp_ok}


KINDS = ("orders", "visits")  # the folders under DATA_DIR/uploads


def folder(settings, kind: str = "orders") -> Path:
    assert kind in KINDS, kind
    return Path(settings.data_dir) / "uploads" / kind


def check(settings, data: bytes) -> str:
    """The photo's extension; FieldErrors (in Chinese) for a wrong type or size, or a file that
    only looks like an image at its start."""
    limit_mb = settings.upload_max_bytes / 1024 / 1024
    if len(data) > settings.upload_max_bytes:
        raise FieldErrors.single("photo", f"照片不能超过 {limit_mb:g} MB")
    ext = kind_of(data[:16])
    if ext is None:
        raise FieldErrors.single("photo", "只能上传 JPEG、PNG 或 WebP 格式的照片")
    if not DECODERS[ext](data):
        raise FieldErrors.single("photo", "照片文件已损坏或不是真正的图片，请重新拍照上传")
    return ext


def save(settings, *, order_id: int, data: bytes) -> str:
    """Store an order's photo (checked again); its file name."""
    return store(settings, kind="orders", owner_id=order_id, data=data)


def store(settings, *, kind: str, owner_id: int, data: bytes) -> str:
    """Store a photo of `kind` for the order or visit `owner_id` (checked again); its file name."""
    ext = check(settings, data)
    name = f"{owner_id}-{secrets.token_hex(8)}.{ext}"
    target = folder(settings, kind)
    target.mkdir(parents=True, exist_ok=True)
    (target / name).write_bytes(data)
    return name


def path_of(settings, name: str, kind: str = "orders") -> Path:
    return folder(settings, kind) / Path(name).name


def media_type_of(name: str) -> str:
    """The image type a stored photo is served with (by the extension its content decided)."""
    return MEDIA_TYPES.get(Path(name).suffix.lstrip(".").lower(), "application/octet-stream")


# Served inline as an image, never sniffed as anything else, nothing in it runs if opened directly.
SERVE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox",
                 "Content-Disposition": "inline"}


def response(settings, name: str, kind: str = "orders") -> FileResponse:
    """A stored photo as the hotline's, the provider's and the visitor's pages fetch it."""
    return FileResponse(path_of(settings, name, kind), media_type=media_type_of(name), headers=SERVE_HEADERS)
