import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from callcenter.main import create_app
from tests.conftest import BACKEND
from tests.faults import TcpProxy
from tests.telephony import wait_for


def test_healthz_reports_database_and_redis(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": {"ok": True}, "redis": {"ok": True}, "bridge": {"running": False}}


def test_healthz_reports_redis_down_and_agents_can_still_sign_in(settings, services):
    from tests.conftest import PASSWORD, make_user

    agent = make_user(services, "agent")
    broken = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(broken)) as client:
        response = client.get("/healthz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "degraded" and body["database"] == {"ok": True} and body["redis"]["ok"] is False
        wrong = client.post("/api/auth/login", json={"username": agent.username, "password": "wrong-password"})
        assert wrong.status_code == 401  # passwords are still checked
        right = client.post("/api/auth/login", json={"username": agent.username, "password": PASSWORD})
        assert right.status_code == 200


def test_openapi_lists_the_public_routes(agent_client):
    paths = agent_client.get("/openapi.json").json()["paths"]
    for path in ("/api/auth/login", "/api/elders", "/api/elders/{elder_id}", "/api/elders/lookup", "/api/elders/import", "/healthz"):
        assert path in paths


def test_api_docs_load_nothing_from_a_cdn(agent_client):
    html = agent_client.get("/docs").text
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower() and "https://" not in html.replace("https://fastapi.tiangolo.com", "")
    assert agent_client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200


@pytest.mark.skipif(BACKEND != "postgresql", reason="the outage is PostgreSQL behind a TCP proxy (SQLite is a file)")
def test_while_the_database_is_unreachable_the_api_answers_503_in_chinese(settings, services):
    """Sign-in, the API and the pages say in Chinese that the database is out of reach (503),
    not a bare 500; once it is back everything answers again."""
    from tests.conftest import PASSWORD, make_user

    supervisor = make_user(services, "supervisor")
    url = make_url(settings.database_url)
    proxy = TcpProxy(url.port or 5432)
    proxied = settings.model_copy(update={"database_url": url.set(port=proxy.port).render_as_string(hide_password=False)})
    try:
        with TestClient(create_app(proxied)) as client:
            assert client.post("/api/auth/login", json={"username": supervisor.username, "password": PASSWORD}).status_code == 200
            assert client.get("/api/calls").status_code == 200
            proxy.reject()
            for response in (client.get("/api/calls"), client.get("/api/elders?q=张"),
                             client.post("/api/auth/login", json={"username": supervisor.username, "password": PASSWORD})):
                assert response.status_code == 503, response.text
                assert response.json()["detail"].startswith("数据库暂时无法访问")
            page = client.get("/calls", headers={"Accept": "text/html"})
            assert page.status_code == 503 and "数据库暂时无法访问" in page.text
            assert client.get("/healthz").json()["database"]["ok"] is False
            proxy.heal()
            wait_for(lambda: client.get("/api/calls").status_code == 200, 10, "the API did not come back with the database")
    finally:
        proxy.close()
