"""A Redis outage for one component: a TCP proxy this test owns (tests/faults.py) between that
component and the test's Redis database. Cutting it takes Redis away from that component only;
the shared Redis server and everything else using it go on."""

from __future__ import annotations

import pytest
import redis

from tests.faults import TcpProxy


@pytest.fixture
def redis_proxy(settings):
    """(the proxy, the test Redis database's URL through it)."""
    server = redis.Redis.from_url(settings.redis_url).connection_pool.connection_kwargs
    proxy = TcpProxy(server["port"])
    try:
        yield proxy, f"redis://127.0.0.1:{proxy.port}/{server.get('db', 0)}"
    finally:
        proxy.close()
