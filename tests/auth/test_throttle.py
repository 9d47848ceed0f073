"""Login throttling slows an attacker without locking real users out (security probe, finding 4):
back-off per (account, address), a known-device cookie that keeps the real user's browser out of
an attack on the account, an address limit a shift behind one NAT never reaches. Through HTTP,
with real Redis; the throttle's clock is moved instead of waiting (no timing in tests)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from tests.conftest import PASSWORD, login, make_user


@pytest.fixture
def clock(services, monkeypatch):
    """The throttle's clock, moved by hand: `clock.advance(seconds)` is that wait having passed."""

    class Clock:
        now = time.time()

        def __call__(self):
            return self.now

        def advance(self, seconds: float) -> None:
            self.now += seconds

    fake = Clock()
    monkeypatch.setattr(services.throttle, "clock", fake)
    return fake


def from_address(app, address: str) -> TestClient:
    return TestClient(app, client=(address, 40000))


def attempt(client, username: str, password: str = "wrong-guess-1"):
    return client.post("/api/auth/login", json={"username": username, "password": password})


def fail_once(client, username: str, clock) -> None:
    """One more wrong password counted: waits out (on the clock) any back-off first."""
    response = attempt(client, username)
    if response.status_code == 429:
        clock.advance(int(response.headers["Retry-After"]))
        response = attempt(client, username)
    assert response.status_code == 401, response.text


def test_five_wrong_passwords_do_not_stop_the_real_user_on_a_known_device_or_another_address(app, services, clock):
    user = make_user(services, "agent")
    with from_address(app, "10.0.0.5") as desk:
        login(desk, user)  # yesterday: the agent's browser became a known device of the account
        with from_address(app, "10.0.0.5") as attacker:  # the same address (one NAT)
            for _ in range(5):
                assert attempt(attacker, user.username).status_code in (401, 429)
            assert attempt(attacker, user.username, PASSWORD).status_code == 429  # the attacker waits
        assert attempt(desk, user.username, PASSWORD).status_code == 200
    with from_address(app, "10.0.0.6") as elsewhere:  # a new device at another address
        assert attempt(elsewhere, user.username, PASSWORD).status_code == 200


@pytest.mark.parametrize("accounts", [1, 4])
def test_twenty_failures_from_one_address_do_not_lock_out_the_agents_behind_it(app, services, clock, accounts):
    """20 wrong passwords from one address (on one account, or spread over 4) and then 20 other
    agents behind the same NAT sign in for the first time."""
    targets = [make_user(services, "agent") for _ in range(accounts)]
    with from_address(app, "10.1.1.1") as attacker:
        for n in range(20):
            fail_once(attacker, targets[n % accounts].username, clock)
    for _ in range(20):
        with from_address(app, "10.1.1.1") as colleague:
            login(colleague, make_user(services, "agent"))


def test_an_attackers_waits_grow_with_each_failure_up_to_a_cap(app, services, clock):
    user = make_user(services, "agent")
    settings = services.settings
    with from_address(app, "10.2.2.2") as attacker:
        for _ in range(settings.login_free_failures):
            assert attempt(attacker, user.username).status_code == 401
        waits = []
        for _ in range(12):
            refused = attempt(attacker, user.username, PASSWORD)  # even the right password: not checked while waiting
            assert refused.status_code == 429 and "登录失败次数过多" in refused.json()["detail"]
            waits.append(int(refused.headers["Retry-After"]))
            clock.advance(waits[-1])
            assert attempt(attacker, user.username).status_code == 401
    assert waits[:4] == [settings.login_backoff_seconds * 2 ** n for n in range(4)]
    assert all(a <= b for a, b in zip(waits, waits[1:])) and waits[-1] == settings.login_backoff_max_seconds


def test_guessing_from_many_addresses_slows_new_devices_but_not_the_users_own(app, services, clock):
    user = make_user(services, "agent")
    with from_address(app, "10.3.0.1") as desk:
        login(desk, user)
        for n in range(services.settings.login_account_limit):
            with from_address(app, f"10.4.0.{n + 1}") as bot:
                assert attempt(bot, user.username).status_code == 401
        with from_address(app, "10.5.0.1") as new_device:
            refused = attempt(new_device, user.username, PASSWORD)
            assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
        assert attempt(desk, user.username, PASSWORD).status_code == 200  # its known device still signs in


def test_a_forged_known_device_cookie_is_ignored(app, services, clock):
    user = make_user(services, "agent")
    with from_address(app, "10.6.0.1") as attacker:
        attacker.cookies.set("cc_device", "eyJkIjoieCIsImEiOltdfQ.forged")
        for _ in range(services.settings.login_free_failures):
            assert attempt(attacker, user.username).status_code == 401
        assert attempt(attacker, user.username, PASSWORD).status_code == 429


def test_the_login_page_answers_429_with_retry_after_too(app, services, clock):
    user = make_user(services, "agent")
    with from_address(app, "10.7.0.1") as browser:
        token = browser.get("/login").cookies.get("cc_csrf") or browser.cookies.get("cc_csrf")
        for _ in range(services.settings.login_free_failures):
            assert attempt(browser, user.username).status_code == 401
        page = browser.post("/login", data={"username": user.username, "password": PASSWORD, "csrf_token": token},
                            follow_redirects=False)
        assert page.status_code == 429 and "登录失败次数过多" in page.text and int(page.headers["Retry-After"]) > 0


def test_a_burst_of_guesses_when_a_wait_ends_gets_one_password_checked(app, services, clock, monkeypatch):
    """The review's race: the waits were read before the password check and set after it, so
    guesses sent together the moment a wait ended were all checked. Now one is; the rest wait."""
    import threading

    from callcenter.auth import service as auth_service

    user = make_user(services, "agent")
    with from_address(app, "10.3.3.3") as attacker:
        for _ in range(services.settings.login_free_failures):
            fail_once(attacker, user.username, clock)
        clock.advance(services.settings.login_backoff_max_seconds)  # the wait is over
    checked, verify = [], auth_service.verify_password

    def slow_verify(password_hash, password):  # an argon2 check, long enough for the burst to overlap
        checked.append(password)
        time.sleep(0.5)
        return verify(password_hash, password)

    monkeypatch.setattr(auth_service, "verify_password", slow_verify)
    statuses, start = [], threading.Barrier(5)

    def guess(n: int) -> None:
        with from_address(app, "10.3.3.3") as client:
            start.wait()
            statuses.append(attempt(client, user.username, f"guess-{n}").status_code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [401, 429, 429, 429, 429] and len(checked) == 1
