"""Domain errors. Plain exceptions: `main.py` maps them to HTTP responses, the CLI prints them."""

from __future__ import annotations


class DomainError(Exception):
    """Base class; `message` is shown to users, in Chinese."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    pass


class Conflict(DomainError):
    """The request contradicts the current state (duplicate, illegal transition)."""


class PermissionDenied(DomainError):
    pass


class FieldErrors(DomainError):
    """One or more fields are invalid: [(field, message), ...]."""

    def __init__(self, errors: list[tuple[str, str]]):
        super().__init__("；".join(f"{field}: {msg}" for field, msg in errors))
        self.errors = errors

    @classmethod
    def single(cls, field: str, message: str) -> "FieldErrors":
        return cls([(field, message)])


class Unavailable(DomainError):
    """A part we depend on (the telephony bridge, Redis) does not answer now; retry later."""
