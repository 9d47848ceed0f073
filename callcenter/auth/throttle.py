"""Login throttling that slows an attacker without locking real users out (no CAPTCHA).

Failures are counted in Redis (shared by every web process) in three scopes, each with an
exponential back-off once its free allowance is used up (the wait doubles with each further
failure, up to a cap; an attempt during a wait is refused with 429 and Retry-After, the password
unchecked):

- the pair (account, source): a few free failures, then waits of 2 s, 4 s, 8 s …; the source is the
  browser's known-device cookie when it has signed in to this account before, else the address;
- the account, counting only failures from sources that never signed in to it: a distributed
  guess slows down for new devices, while the real user's known device is never held back;
- the address, counting only failures from unknown devices, with a limit high enough that a shift
  of agents behind one NAT still signs in.

A known device is OWASP's "device cookie": a signed cookie naming (by a keyed hash) the accounts
that signed in successfully from this browser.

With Redis down every login is let through (and the log says so): agents must still be able to
sign in to answer calls, and the passwords are still checked.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer
from redis.exceptions import RedisError

from callcenter.auth.service import TooManyAttempts

log = logging.getLogger(__name__)
CLAIM_SECONDS = 10  # an attempt in a scope past its allowance holds it this long at most (a password check takes well under 1 s)
DEVICE_ACCOUNTS_KEPT = 20  # a shared desk sees a few shifts of agents; the oldest are forgotten


@dataclass(frozen=True)
class Attempt:
    """One login attempt: the account tried (a user name, or `m:` and a phone), the client's
    address, and the browser's known-device id when it has signed in to this account before."""

    account: str
    address: str
    known_device: str | None = None

    @property
    def source(self) -> str:
        return f"dev:{self.known_device}" if self.known_device else f"ip:{self.address}"


@dataclass(frozen=True)
class Limits:
    free_failures: int = 3  # per (account, source): the 3rd failure starts the first wait
    backoff_seconds: int = 2  # the first wait; each further failure doubles it
    max_backoff_seconds: int = 15 * 60
    account_limit: int = 10  # failures from unknown devices per account before they must wait
    address_limit: int = 100  # failures from unknown devices per address before they must wait
    window_seconds: int = 3600  # a count is forgotten this long after its last failure


def normal_account(account: str) -> str:
    return account.strip().lower()[:100]


class LoginThrottle:
    def __init__(self, redis, limits: Limits, clock=time.time):
        self.redis = redis
        self.limits = limits
        self.clock = clock

    def _scopes(self, attempt: Attempt) -> list[tuple[str, int]]:
        """(Redis key part, free failures) of each scope this attempt counts in."""
        account = normal_account(attempt.account)
        scopes = [(f"pair:{account}:{attempt.source}", self.limits.free_failures)]
        if not attempt.known_device:
            scopes += [(f"account:{account}", self.limits.account_limit), (f"addr:{attempt.address}", self.limits.address_limit)]
        return scopes

    def check(self, attempt: Attempt) -> None:
        """TooManyAttempts (with the seconds to wait) while any scope of this attempt is waiting.

        A scope past its allowance takes one attempt at a time: the attempt claims it until its
        outcome is counted (`failed`/`succeeded`, or CLAIM_SECONDS), so a burst of parallel guesses
        sent the moment a wait ends gets one password checked, not all of them."""
        scopes = self._scopes(attempt)
        try:
            values = self.redis.mget([f"login:wait:{scope}" for scope, _ in scopes] + [f"login:fails:{scope}" for scope, _ in scopes])
        except RedisError as exc:
            log.warning("login throttle unavailable (Redis: %s); login allowed", type(exc).__name__)
            return
        untils, fails = values[:len(scopes)], values[len(scopes):]
        now = self.clock()
        wait = max((float(until) - now for until in untils if until is not None), default=0)
        if wait > 0:
            raise TooManyAttempts(retry_after=max(1, math.ceil(wait)))
        for (scope, free), count in zip(scopes, fails):
            if int(count or 0) >= free and not self._claim(scope):
                raise TooManyAttempts(retry_after=1)

    def _claim(self, scope: str) -> bool:
        try:
            return bool(self.redis.set(f"login:claim:{scope}", 1, nx=True, ex=CLAIM_SECONDS))
        except RedisError:
            return True

    def _release(self, scopes: list[tuple[str, int]]) -> None:
        try:
            self.redis.delete(*(f"login:claim:{scope}" for scope, _ in scopes))
        except RedisError:
            pass

    def failed(self, attempt: Attempt) -> None:
        """Count a wrong password; past a scope's allowance, start its next (doubled) wait."""
        scopes = self._scopes(attempt)
        now, window = self.clock(), self.limits.window_seconds
        try:
            pipe = self.redis.pipeline()
            for scope, _ in scopes:
                pipe.incr(f"login:fails:{scope}")
                pipe.expire(f"login:fails:{scope}", window)
            counts = pipe.execute()[::2]
            pipe = self.redis.pipeline()
            for (scope, free), count in zip(scopes, counts):
                if count >= free:
                    delay = self.delay(count - free + 1)
                    pipe.set(f"login:wait:{scope}", now + delay, ex=delay + window)
            pipe.execute()
        except RedisError as exc:
            log.warning("login throttle unavailable (Redis: %s); failure not counted", type(exc).__name__)
        self._release(scopes)  # the wait just set (if any) now holds the next attempt back

    def delay(self, over: int) -> int:
        """The wait after the `over`-th failure past the allowance: 2 s, 4 s, 8 s … up to the cap."""
        return min(self.limits.max_backoff_seconds, self.limits.backoff_seconds * 2 ** min(over - 1, 30))

    def succeeded(self, attempt: Attempt) -> None:
        """The right password: this source's own count starts again (the others stand)."""
        scopes = self._scopes(attempt)
        scope = scopes[0][0]
        try:
            self.redis.delete(f"login:fails:{scope}", f"login:wait:{scope}")
        except RedisError:
            pass
        self._release(scopes)


class DeviceCookie:
    """OWASP's device cookie: a random device id and keyed hashes of the accounts that signed in
    from this browser, signed so it cannot be forged."""

    def __init__(self, secret: bytes):
        self.serializer = URLSafeSerializer(secret, salt="hotline-known-device")
        self.secret = secret

    def _tag(self, account: str) -> str:
        return hmac.new(self.secret, normal_account(account).encode(), hashlib.sha256).hexdigest()[:12]

    def _read(self, value: str | None) -> dict | None:
        if not value:
            return None
        try:
            data = self.serializer.loads(value)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("d"), str) or not isinstance(data.get("a"), list):
            return None
        return data

    def known_device(self, value: str | None, account: str) -> str | None:
        """The device id, when this cookie has signed in to `account` before."""
        data = self._read(value)
        return data["d"] if data and self._tag(account) in data["a"] else None

    def remember(self, value: str | None, account: str) -> str:
        """The cookie again, with `account` added (most recent last)."""
        data = self._read(value) or {"d": secrets.token_urlsafe(12), "a": []}
        tag = self._tag(account)
        accounts = [a for a in data["a"] if a != tag] + [tag]
        return self.serializer.dumps({"d": data["d"], "a": accounts[-DEVICE_ACCOUNTS_KEPT:]})
