"""Sign-in, roles, throttling, CSRF, session cookies: through HTTP, with real Redis."""

import re

from tests.conftest import PASSWORD, csrf_headers, login, make_user


def test_login_sets_an_httponly_samesite_session_cookie(client, services):
    user = make_user(services, "agent")
    response = login(client, user)
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("cc_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert response.json()["role_label"] == "坐席"
    assert client.get("/api/auth/me").json()["username"] == user.username


def test_wrong_password_is_refused_in_chinese(client, services):
    user = make_user(services, "agent")
    response = client.post("/api/auth/login", json={"username": user.username, "password": "wrong-password"})
    assert response.status_code == 401
    assert response.json()["detail"] == "用户名或密码错误"
    assert client.get("/api/auth/me").status_code == 401


def test_repeated_wrong_passwords_from_one_address_make_it_wait_even_for_the_right_one(client, services):
    """The pair (account, address) gets a few free failures, then waits (auth/throttle.py; the
    known-device and NAT cases are in test_throttle.py)."""
    user = make_user(services, "agent")
    for _ in range(services.settings.login_free_failures):
        assert client.post("/api/auth/login", json={"username": user.username, "password": "nope-nope"}).status_code == 401
    blocked = client.post("/api/auth/login", json={"username": user.username, "password": PASSWORD})
    assert blocked.status_code == 429
    assert "登录失败次数过多" in blocked.json()["detail"]
    assert 0 < int(blocked.headers["Retry-After"]) <= services.settings.login_backoff_max_seconds


def test_inactive_user_cannot_log_in(client, services):
    user = make_user(services, "agent")
    with services.db.session_scope() as session:
        from callcenter.auth import service as auth_service

        auth_service.update_user(session=session, user_id=user.id, changes={"active": False})
    assert client.post("/api/auth/login", json={"username": user.username, "password": PASSWORD}).status_code == 401


def test_tampered_session_cookie_is_rejected(client, services):
    login(client, make_user(services, "admin"))
    token = client.cookies.get("cc_session")
    client.cookies.set("cc_session", token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    assert client.get("/api/auth/me").status_code == 401


def test_anonymous_api_calls_get_401_and_pages_redirect_to_login(client):
    assert client.get("/api/elders").status_code == 401
    page = client.get("/elders", headers={"accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


def test_agents_cannot_manage_users(agent_client):
    assert agent_client.get("/api/users").status_code == 403
    response = agent_client.post("/api/users", json={"username": "x1", "role": "agent", "password": "long-password"})
    assert response.status_code == 403 and response.json()["detail"] == "没有权限执行此操作"


def test_supervisors_manage_agents_but_not_admins(supervisor_client):
    created = supervisor_client.post("/api/users", json={"username": "agent-new", "role": "agent", "password": "long-password",
                                                         "sip_extension": "8009"})
    assert created.status_code == 201 and created.json()["sip_extension"] == "8009"
    assert supervisor_client.post("/api/users", json={"username": "boss", "role": "admin", "password": "long-password"}).status_code == 403
    promoted = supervisor_client.patch(f"/api/users/{created.json()['id']}", json={"role": "admin"})
    assert promoted.status_code == 403
    deactivated = supervisor_client.patch(f"/api/users/{created.json()['id']}", json={"active": False})
    assert deactivated.json()["active"] is False
    assert "agent-new" in [u["username"] for u in supervisor_client.get("/api/users").json()]


def test_admins_create_supervisors_and_weak_passwords_are_refused(admin_client):
    assert admin_client.post("/api/users", json={"username": "bz2", "role": "supervisor", "password": "long-password"}).status_code == 201
    weak = admin_client.post("/api/users", json={"username": "bz3", "role": "supervisor", "password": "short"})
    assert weak.status_code == 422 and weak.json()["detail"][0]["loc"] == ["body", "password"]
    dup = admin_client.post("/api/users", json={"username": "bz2", "role": "agent", "password": "long-password"})
    assert dup.status_code == 409


def form_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_login_form_without_csrf_token_is_refused(client, services):
    user = make_user(services, "agent")
    client.get("/login")
    response = client.post("/login", data={"username": user.username, "password": PASSWORD}, headers={"accept": "text/html"},
                           follow_redirects=False)
    assert response.status_code == 403
    assert "CSRF" in response.text and "请刷新页面" in response.text
    assert "cc_session" not in client.cookies


def test_login_form_with_a_foreign_csrf_token_is_refused(client, services):
    user = make_user(services, "agent")
    client.get("/login")
    data = {"username": user.username, "password": PASSWORD, "csrf_token": "forged-token"}
    assert client.post("/login", data=data, follow_redirects=False).status_code == 403


def test_login_form_with_its_csrf_token_signs_in(client, services):
    user = make_user(services, "agent")
    token = form_token(client.get("/login").text)
    response = client.post("/login", data={"username": user.username, "password": PASSWORD, "csrf_token": token,
                                           "next": "https://evil.example/"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/console"
    assert client.get("/api/auth/me").status_code == 200


def test_logout_needs_the_token_too(client, services):
    login(client, make_user(services, "agent"))
    assert client.post("/logout", follow_redirects=False).status_code == 403
    assert client.post("/logout", headers=csrf_headers(client), follow_redirects=False).status_code == 303


def test_upload_without_csrf_header_is_refused(supervisor_client):
    response = supervisor_client.post("/api/elders/import", files={"file": ("a.csv", b"x")})
    assert response.status_code == 403


def test_production_password_hashes_keep_argon2s_recommended_cost(services):
    """The suite hashes cheaply (tests/conftest.py); a deployment's settings keep argon2id at t=3,
    64 MiB, and a hash keeps its own parameters whatever the process's cost is now."""
    from argon2 import extract_parameters

    from callcenter.auth import service as auth_service
    from callcenter.config import Settings

    defaults = Settings(_env_file=None)
    assert (defaults.password_hash_time_cost, defaults.password_hash_memory_kib) == (3, 65536)
    cheap = auth_service.hash_password("correct-horse-1")
    try:
        auth_service.configure_hashing(time_cost=defaults.password_hash_time_cost, memory_kib=defaults.password_hash_memory_kib)
        strong = auth_service.hash_password("correct-horse-1")
        auth_service.verify_password(cheap, "correct-horse-1")  # made at another cost: still checks
    finally:
        auth_service.configure_hashing(time_cost=services.settings.password_hash_time_cost,
                                       memory_kib=services.settings.password_hash_memory_kib)
    parameters = extract_parameters(strong)
    assert (parameters.type.name, parameters.time_cost, parameters.memory_cost) == ("ID", 3, 65536)
