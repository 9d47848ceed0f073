from fastapi.testclient import TestClient

from callcenter.main import create_app


def test_healthz_reports_database_and_redis(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": {"ok": True}, "redis": {"ok": True}}


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


def test_openapi_lists_the_public_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/auth/login", "/api/elders", "/api/elders/{elder_id}", "/api/elders/lookup", "/api/elders/import", "/healthz"):
        assert path in paths


def test_api_docs_load_nothing_from_a_cdn(client):
    html = client.get("/docs").text
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower() and "https://" not in html.replace("https://fastapi.tiangolo.com", "")
    assert client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
