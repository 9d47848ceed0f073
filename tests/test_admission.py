"""Many requests at once (200 consoles reconnecting after a network blip): every one is answered.

A sync route's database session is opened in one thread-pool hop (the dependency) and used in
another (the route); with more requests inside the app than pooled connections, every thread can
end up waiting for a connection held by requests that are waiting for a thread, and all of them
stall until the pool gives up (30 s, then 503s: scripts/bench/care.py saw it with 200 agents)."""

from __future__ import annotations

import asyncio

import httpx

from tests.browser import serving
from tests.conftest import PASSWORD, make_user

AT_ONCE = 200


async def _burst(url: str, cookies: dict) -> list[int]:
    limits = httpx.Limits(max_connections=AT_ONCE, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, cookies=cookies, limits=limits, timeout=60) as client:
        responses = await asyncio.gather(*[client.get("/api/care/tasks/mine") for _ in range(AT_ONCE)])
    return [response.status_code for response in responses]


def test_two_hundred_requests_at_once_are_all_answered(app, services):
    agent = make_user(services, "agent", sip_extension="8001")
    with serving(app) as url:
        login = httpx.post(f"{url}/api/auth/login", json={"username": agent.username, "password": PASSWORD})
        assert login.status_code == 200
        statuses = asyncio.run(_burst(url, dict(login.cookies)))
    assert statuses.count(200) == AT_ONCE, sorted(set(statuses))
