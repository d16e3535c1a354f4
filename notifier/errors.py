"""Domain errors raised by services, and what an infrastructure error means to a caller; handlers/base.py is
the one place that maps them to HTTP."""

from __future__ import annotations

from pymongo.errors import ConnectionFailure


class DomainError(Exception):
    """Base of every error a caller can act on; `errors` maps a field name to its messages."""

    def __init__(self, message: str, errors: dict | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class Invalid(DomainError):
    """The input is well-formed but not acceptable."""

    @classmethod
    def field(cls, name: str, message: str) -> Invalid:
        return cls(f"Invalid {name}: {message}", {name: [message]})


class Unauthenticated(DomainError):
    """No credentials, or credentials that do not prove who the caller is."""


class Forbidden(DomainError):
    """The caller is known but may not do this."""


class NotFound(DomainError):
    """The resource does not exist, or the caller may not know it exists."""


class Conflict(DomainError):
    """The request clashes with the current state (a duplicate name, say)."""


class PayloadTooLarge(DomainError):
    """The request body is larger than the configured limit."""


class UnsupportedMediaType(DomainError):
    """The request body is not JSON."""


class TooManyAttempts(DomainError):
    """Too many failed logins from one address: wait before trying again."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A backing service (database, broker) cannot be reached right now; retry later."""

    def __init__(self, message: str, retry_after: int = 5):
        super().__init__(message)
        self.retry_after = retry_after


def as_domain_error(exc: BaseException) -> DomainError | None:
    """The domain meaning of an exception, if it has one (an unreachable database is `Unavailable`)."""
    if isinstance(exc, DomainError):
        return exc
    if isinstance(exc, ConnectionFailure):
        return Unavailable("The database is unavailable; retry shortly")
    return None
