"""Protection of ID numbers at rest: a keyed hash for exact lookup, encryption for display.

A database dump alone reveals no ID number. Both keys derive from SECRET_KEY, so losing or
changing SECRET_KEY makes stored ID numbers unreadable and unsearchable: back it up with the
database (README, "Secrets").
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet


class Sealer:
    def __init__(self, secret: bytes):
        self._hash_key = hashlib.sha256(b"id-number-lookup:" + secret).digest()
        fernet_key = base64.urlsafe_b64encode(hashlib.sha256(b"id-number-encrypt:" + secret).digest())
        self._fernet = Fernet(fernet_key)

    def lookup_hash(self, value: str) -> str:
        return hmac.new(self._hash_key, value.encode(), hashlib.sha256).hexdigest()

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        return self._fernet.decrypt(token.encode()).decode()
