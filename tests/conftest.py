"""Fixtures: a real database (SQLite file, or a fresh PostgreSQL database per run, chosen by
TEST_DB=sqlite|postgresql), real Redis (TEST_REDIS_URL), the app built with explicit settings."""

from __future__ import annotations

import os
import uuid
from datetime import date

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from callcenter import migrate
from callcenter.auth import service as auth_service
from callcenter.config import Settings
from callcenter.db import create_postgres_database
from callcenter.elders.idcard import make_id_number
from callcenter.main import create_app
from callcenter.models import metadata
from tests import redis_claims
from tests.browser import browser, live_server, page  # noqa: F401  (fixtures for every test folder)
from tests.redis_proxy import redis_proxy  # noqa: F401  (fixture: a Redis outage for one component)

BACKEND = os.environ.get("TEST_DB", "sqlite")
# Playwright waits 5 s by default: too short for a page on this 2-core machine while other suites run
expect.set_options(timeout=15_000)
PG_ADMIN_URL = os.environ.get("TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_SERVER = os.environ.get("TEST_REDIS_SERVER", "redis://127.0.0.1:6379")
PASSWORD = "correct-horse-1"
REFERENCE_TABLES = {"service_types"}  # seeded by the migrations, kept between tests


def claim_redis_db() -> str:
    """A Redis database of this run's own, emptied, released when the run ends (tests/redis_claims.py).
    Each call claims one more."""
    import atexit

    url, release = redis_claims.claim(REDIS_SERVER)
    atexit.register(release)
    return url


TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL") or claim_redis_db()


def pytest_collection_modifyitems(config, items):
    """The real-PBX tier runs once, in the PostgreSQL pass of scripts/test (REALPBX=1 runs it on
    SQLite too): it checks Asterisk, our processes and the browser, not the SQL backend."""
    if BACKEND == "postgresql" or os.environ.get("REALPBX") == "1":
        return
    skipped = [item for item in items if item.get_closest_marker("realpbx")]
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = [item for item in items if not item.get_closest_marker("realpbx")]


def fresh_database_url(tmp_path_factory, label: str):
    """A new empty database of the backend under test; returns (url, drop)."""
    if BACKEND == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp(label) / 'test.sqlite3'}", lambda: None
    if BACKEND != "postgresql":
        raise RuntimeError(f"TEST_DB must be sqlite or postgresql, not {BACKEND!r}")
    return create_postgres_database(PG_ADMIN_URL, f"cc_{label}_{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    url, drop = fresh_database_url(tmp_path_factory, "main")
    migrate.upgrade(url)
    yield url
    drop()


@pytest.fixture(scope="session")
def settings(database_url, tmp_path_factory) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path_factory.mktemp("data"),
        database_url=database_url,
        redis_url=TEST_REDIS_URL,
        secret_key="test-secret-key-not-for-production",
        city_area_code="0411",
        events_prefix=f"test{os.getpid()}",  # pub/sub channels are server-wide: runs side by side must not meet
        # Cheap password hashes: the suite signs in hundreds of times (production keeps argon2's
        # defaults; tests/auth/test_auth.py checks them).
        password_hash_time_cost=1, password_hash_memory_kib=1024,
    )


@pytest.fixture(scope="session")
def app(settings):
    return create_app(settings)


@pytest.fixture
def services(app):
    """The app's services, with every table and the test Redis database emptied first."""
    services = app.state.services
    with services.db.engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            if table.name not in REFERENCE_TABLES:
                connection.execute(table.delete())
    services.redis.flushdb()
    return services


@pytest.fixture
def client(app, services):
    with TestClient(app) as test_client:
        yield test_client


def make_user(services, role: str, username: str | None = None, password: str = PASSWORD, **fields):
    with services.db.session_scope() as session:
        return auth_service.create_user(session=session, username=username or f"{role}-{uuid.uuid4().hex[:6]}",
                                        role=role, password=password, **fields)


def login(client, user, password: str = PASSWORD):
    response = client.post("/api/auth/login", json={"username": user.username, "password": password})
    assert response.status_code == 200, response.text
    return response


@pytest.fixture
def agent(services):
    """An agent with extension 8001 (the console's tests: calls are offered to an extension)."""
    return make_user(services, "agent", username="agent8001", display_name="王芳", sip_extension="8001")


@pytest.fixture
def console(app, services, agent):
    """That agent signed in."""
    with TestClient(app) as client:
        login(client, agent)
        yield client


@pytest.fixture
def agent_client(client, services):
    login(client, make_user(services, "agent"))
    return client


@pytest.fixture
def admin_client(client, services):
    login(client, make_user(services, "admin"))
    return client


@pytest.fixture
def supervisor_client(client, services):
    login(client, make_user(services, "supervisor"))
    return client


def id_number(born: date = date(1948, 5, 17), gender: str = "male", sequence: int = 12, area: str = "210202") -> str:
    return make_id_number(area, born, sequence, gender)


def csrf_headers(client) -> dict:
    """What our pages' JavaScript sends: the cc_csrf cookie repeated in a header."""
    token = client.cookies.get("cc_csrf")
    assert token, "no CSRF cookie yet: make a request first"
    return {"X-CSRF-Token": token}
