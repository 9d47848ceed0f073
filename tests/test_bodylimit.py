"""Request body limits (callcenter/bodylimit.py) through the app: 413 in Chinese before parsing."""

import pytest
from fastapi.testclient import TestClient

from tests.conftest import csrf_headers


@pytest.fixture
def anonymous(app, services):
    """A client without the app's lifespan: signing in needs the database and Redis, not the live hub."""
    return TestClient(app)


def test_the_unauthenticated_login_refuses_a_huge_body(anonymous):
    """Finding 5: a 47 MB body to the login was parsed."""
    body = b'{"username": "a", "password": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = anonymous.post("/api/auth/login", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "请求内容过大" in response.json()["detail"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]  # refusals carry the headers too


def test_a_streamed_body_without_length_is_cut_at_the_limit(anonymous):
    def chunks():
        for _ in range(40):
            yield b"x" * 64 * 1024

    response = anonymous.post("/api/auth/login", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "最多 1.0 MB" in response.json()["detail"]


def test_an_ordinary_body_passes(anonymous):
    response = anonymous.post("/api/auth/login", json={"username": "nobody", "password": "wrong"})
    assert response.status_code == 401


def test_uploads_have_their_own_higher_limit(supervisor_client):
    supervisor_client.get("/api/auth/me")
    content = "姓名,身份证号\n".encode() + b"," * (2 * 1024 * 1024) + b"\n"
    response = supervisor_client.post("/api/elders/import", files={"file": ("a.csv", content)}, headers=csrf_headers(supervisor_client))
    assert response.status_code != 413
