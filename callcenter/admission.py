"""At most so many HTTP requests inside the app at once; the others wait in the event loop,
holding neither a thread nor a database connection.

Why: a sync route's database session is opened in one thread-pool hop (the `DbSession`
dependency) and used in another (the route itself). With more requests inside the app than the
pool has connections, every thread of the pool (40) can be waiting for a connection that is held
by a request waiting for a thread: nothing moves until the pool's timeout (30 s), then 503s.
Admitting no more requests than there are connections (less a few for websockets and the hub)
means a request that got a connection always finds a thread, and one in a thread always finds a
connection. Websockets are not counted: they hold a connection only for moments."""

from __future__ import annotations

import asyncio

SPARE_CONNECTIONS = 2  # for websockets' sign-in checks and background work of the web process


class InFlightLimit:
    def __init__(self, app, limit: int):
        self.app = app
        self.limit = max(1, limit)
        self._slots: asyncio.Semaphore | None = None  # made on the server's event loop, at the first request

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        async with self._slots:
            await self.app(scope, receive, send)
