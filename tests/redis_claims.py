"""Redis databases of a run's own: test suites, benchmarks and CI runs side by side on one Redis
server would otherwise take each other's telephony commands and empty each other's data. A claim
is a key `cc-test-run:dbN` in db 0 naming the claiming process; a claim whose process is gone is
taken over."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import redis


def claim(server: str, *, databases: Iterable[int] = range(15, 0, -1), require_empty: bool = False,
          hours: int = 6) -> tuple[str, Callable[[], None]]:
    """(URL of a database claimed for this process, a function releasing it). With
    `require_empty`, a database holding keys is passed over (a benchmark must not empty someone
    else's); without, the claimed database is emptied (what a dead run left)."""
    claims = redis.Redis.from_url(f"{server}/0")
    for db in databases:
        key = f"cc-test-run:db{db}"
        holder = claims.get(key)
        if holder is not None and _alive(int(holder)):
            continue
        if holder is not None:
            claims.delete(key)
        if not claims.set(key, os.getpid(), nx=True, ex=hours * 3600):
            continue
        database = redis.Redis.from_url(f"{server}/{db}")
        if require_empty and database.dbsize():
            claims.delete(key)
            continue
        database.flushdb()

        def release(key: str = key) -> None:
            if claims.get(key) == str(os.getpid()).encode():
                claims.delete(key)

        return f"{server}/{db}", release
    raise RuntimeError(f"no free Redis database among {list(databases)} on {server}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
