"""Sessions are held on the server (security probe, finding 3): a session cookie captured before
logout, a password change or a deactivation is refused at once, on the API, the pages and the
websocket. Through HTTP and the websocket of the real app."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select
from starlette.websockets import WebSocketDisconnect

from callcenter.auth.models import AccessToken
from callcenter.realtime.api import NOT_SIGNED_IN
from tests.agent_ui.test_manage import post as page_post
from tests.conftest import csrf_headers, login, make_user


def replay(app, cookie: str) -> TestClient:
    """Another client (the attacker's) holding a copy of the captured session cookie."""
    thief = TestClient(app)
    thief.cookies.set("cc_session", cookie)
    return thief


def captured(client) -> str:
    cookie = client.cookies.get("cc_session")
    assert cookie
    return cookie


def test_the_cookie_holds_a_random_token_whose_hash_alone_is_stored(client, services):
    user = make_user(services, "agent")
    login(client, user)
    cookie = captured(client)
    with services.db.session_scope() as session:
        rows = session.exec(select(AccessToken).where(AccessToken.subject_id == user.id)).all()
    assert len(rows) == 1 and rows[0].kind == "user_session" and rows[0].revoked_at is None
    assert cookie not in rows[0].token_hash and len(rows[0].token_hash) == 64


def test_a_cookie_captured_before_logout_is_refused_after_it(app, client, services):
    login(client, make_user(services, "agent"))
    cookie = captured(client)
    assert replay(app, cookie).get("/api/auth/me").status_code == 200
    assert client.post("/api/auth/logout", headers=csrf_headers(client)).status_code == 204
    assert replay(app, cookie).get("/api/auth/me").status_code == 401
    assert replay(app, cookie).get("/api/elders").status_code == 401


def test_the_logout_button_of_the_pages_ends_the_session_too(app, client, services):
    login(client, make_user(services, "agent"))
    cookie = captured(client)
    assert client.post("/logout", headers=csrf_headers(client), follow_redirects=False).status_code == 303
    assert replay(app, cookie).get("/api/auth/me").status_code == 401
    page = replay(app, cookie).get("/console", headers={"accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


def test_other_sessions_of_the_user_survive_one_logout(app, client, services):
    user = make_user(services, "agent")
    with TestClient(app) as other_desk:
        login(other_desk, user)
        login(client, user)
        assert client.post("/api/auth/logout", headers=csrf_headers(client)).status_code == 204
        assert other_desk.get("/api/auth/me").status_code == 200


@pytest.mark.parametrize("change", [{"password": "another-password-2"}, {"active": False}])
def test_a_supervisor_changing_the_password_or_deactivating_ends_every_session(app, services, supervisor_client, change):
    agent = make_user(services, "agent")
    with TestClient(app) as desk, TestClient(app) as laptop:
        login(desk, agent)
        login(laptop, agent)
        cookie = captured(desk)
        assert supervisor_client.patch(f"/api/users/{agent.id}", json=change).status_code == 200
        assert desk.get("/api/auth/me").status_code == 401
        assert laptop.get("/api/auth/me").status_code == 401
        assert replay(app, cookie).get("/api/auth/me").status_code == 401


@pytest.mark.parametrize("action", [{"action": "password", "password": "new-password-22"}, {"action": "deactivate"}])
def test_the_agents_page_ends_the_sessions_too(app, services, supervisor_client, action):
    agent = make_user(services, "agent")
    with TestClient(app) as desk:
        login(desk, agent)
        assert page_post(supervisor_client, f"/supervisor/agents/{agent.id}", action).status_code == 303
        assert desk.get("/api/auth/me").status_code == 401


def test_other_changes_keep_the_sessions(app, services, supervisor_client):
    agent = make_user(services, "agent")
    with TestClient(app) as desk:
        login(desk, agent)
        assert supervisor_client.patch(f"/api/users/{agent.id}", json={"display_name": "王芳"}).status_code == 200
        assert desk.get("/api/auth/me").json()["display_name"] == "王芳"


def close_code(client) -> int | None:
    """The websocket's close code when it refuses the connection, None when it says hello."""
    try:
        with client.websocket_connect("/ws") as socket:
            assert socket.receive_json()["type"] == "hello"
            return None
    except WebSocketDisconnect as exc:
        return exc.code


def test_the_websocket_refuses_a_session_ended_by_logout(app, client, services):
    login(client, make_user(services, "agent", sip_extension="8001"))
    cookie = captured(client)
    with TestClient(app) as thief:
        thief.cookies.set("cc_session", cookie)
        assert close_code(thief) is None
        assert client.post("/api/auth/logout", headers=csrf_headers(client)).status_code == 204
        assert close_code(thief) == NOT_SIGNED_IN


def test_the_websocket_refuses_a_session_ended_by_a_password_change(app, services, supervisor_client):
    agent = make_user(services, "agent", sip_extension="8002")
    with TestClient(app) as desk:
        login(desk, agent)
        assert close_code(desk) is None
        assert supervisor_client.patch(f"/api/users/{agent.id}", json={"password": "another-password-2"}).status_code == 200
        assert close_code(desk) == NOT_SIGNED_IN


def test_an_open_websocket_closes_when_its_session_ends(app, client, services, monkeypatch):
    from callcenter.realtime import api as realtime_api

    monkeypatch.setattr(realtime_api, "SESSION_CHECK_SECONDS", 0.1)
    login(client, make_user(services, "agent", sip_extension="8003"))
    with TestClient(app) as console:
        console.cookies.set("cc_session", captured(client))
        with console.websocket_connect("/ws") as socket:
            assert socket.receive_json()["type"] == "hello"
            assert client.post("/api/auth/logout", headers=csrf_headers(client)).status_code == 204
            with pytest.raises(WebSocketDisconnect) as closed:
                while True:  # heartbeats or events may come first; the close follows within 0.1 s
                    socket.receive_text()
    assert closed.value.code == NOT_SIGNED_IN
