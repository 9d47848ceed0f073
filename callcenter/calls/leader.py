"""One AMI bridge at a time, another on standby (`callcenter ami` on two hosts).

The bridges share a lease in Redis (`LEADER_KEY`, SET NX with a TTL): the holder runs the bridge
and renews the lease every second; the others wait. When the leader dies (kill -9, host down),
its lease runs out within LEASE_SECONDS and a standby takes it, starts its bridge, restores the
open calls and agents from the database and records what happened in between from Asterisk's
own records (calls.records): no call is lost, and none is recorded twice (calls are keyed by
Linkedid, and a reconciled call never overwrites one recorded whole).

Redis going away does not stop a running leader (the database is the record; consoles need
Redis anyway): it keeps its bridge and renews when Redis is back. The lease has expired by then,
so a standby that saw Redis go away too leaves the old leader one lease period to take it back
before trying itself: otherwise both bridges would run until the leader's next renewal (two
writers of the same calls). A leader that finds the lease in another bridge's hands (it died,
or only it lost Redis for longer than that) steps down.

Not covered: a leader cut off from Redis alone while the standby still reaches it. The standby
takes over after LEASE_SECONDS and both record until the leader reaches Redis again. Calls are
keyed by Linkedid and legs by channel, so they still give one row each; a write that collides
is kept and retried like any failed write.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from typing import Callable

from redis.exceptions import RedisError

log = logging.getLogger(__name__)
LEADER_KEY = "hotline:ami:leader"
LEASE_SECONDS = 3.0
RENEW_SECONDS = 1.0
WAIT_SECONDS = 0.5
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


def identity() -> str:
    """Who holds the lease, as supervisors read it: host, process, and a nonce for restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leadership:
    def __init__(self, redis, name: str, *, lease: float = LEASE_SECONDS, renew: float = RENEW_SECONDS,
                 wait: float = WAIT_SECONDS):
        self.redis, self.name = redis, name
        self.lease_ms, self.renew, self.wait = int(lease * 1000), renew, wait

    async def acquire(self) -> None:
        """Wait until this bridge holds the lease."""
        waiting_logged = redis_was_down = False
        while True:
            try:
                if redis_was_down:  # Redis is back: the leader of before renews first
                    redis_was_down = False
                    await self.redis.ping()
                    log.info("standby: Redis is back; the leader has %.1f s to renew its lease", self.lease_ms / 1000)
                    await asyncio.sleep(self.lease_ms / 1000)
                if await self.redis.set(LEADER_KEY, self.name, nx=True, px=self.lease_ms):
                    log.info("AMI bridge %s is the leader", self.name)
                    return
                if not waiting_logged:
                    holder = await self.redis.get(LEADER_KEY)
                    log.info("standby: bridge %s leads; taking over if it stops", holder.decode() if holder else "?")
                    waiting_logged = True
            except (RedisError, OSError) as exc:
                redis_was_down = True
                if not waiting_logged:
                    log.warning("standby: Redis unavailable (%s); waiting for it to decide the leader", type(exc).__name__)
                    waiting_logged = True
            await asyncio.sleep(self.wait)

    async def hold(self) -> None:
        """Renew the lease until another bridge holds it (then return: step down)."""
        redis_down = False
        while True:
            await asyncio.sleep(self.renew)
            try:
                if await self.redis.eval(_RENEW, 1, LEADER_KEY, self.name, self.lease_ms):
                    redis_down = False
                    continue
                if await self.redis.set(LEADER_KEY, self.name, nx=True, px=self.lease_ms):
                    log.warning("the leader lease had expired (Redis was away): held again by %s", self.name)
                    continue
                holder = await self.redis.get(LEADER_KEY)
                log.warning("bridge %s holds the leader lease now: %s steps down", holder.decode() if holder else "?", self.name)
                return
            except (RedisError, OSError) as exc:
                if not redis_down:
                    log.warning("cannot renew the leader lease (Redis: %s): the bridge keeps running", type(exc).__name__)
                    redis_down = True

    async def release(self) -> None:
        try:
            await self.redis.eval(_RELEASE, 1, LEADER_KEY, self.name)
        except (RedisError, OSError):
            pass


async def run_as_leader(make_bridge: Callable[[], object], redis, name: str | None = None,
                        leadership: Leadership | None = None) -> None:
    """Run a bridge while this process holds the lease; on standby otherwise. Returns when the
    bridge stops of its own accord (stopped, signal)."""
    leadership = leadership or Leadership(redis, name or identity())
    while True:
        await leadership.acquire()
        bridge = make_bridge()
        running = asyncio.create_task(bridge.run(), name="bridge")
        holding = asyncio.create_task(leadership.hold(), name="leader-lease")
        try:
            done, _ = await asyncio.wait({running, holding}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            bridge.stop()
            holding.cancel()
            await asyncio.gather(running, holding, return_exceptions=True)
            await leadership.release()
            raise
        if running in done:
            holding.cancel()
            await asyncio.gather(holding, return_exceptions=True)
            await leadership.release()
            running.result()
            return
        bridge.stop()  # lost the lease: back to standby
        await running
