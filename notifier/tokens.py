"""Signed tokens: the admins' tokens, which this service issues, and the end users' tokens, which the
external auth server issues and this service only verifies.

Nothing here reads the database: whether an admin's token still stands (the admin active, not logged out
since) is the Authenticator's question.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt

from .access import Principal, Role
from .errors import Unauthenticated
from .keys import Keys
from .settings import Settings

ADMIN_TOKEN_KID = "notifier-admin"
ADMIN_TOKEN_ISSUER = "notifier"
ADMIN_TOKEN_AUDIENCE = "notifier-admin"
STREAM_TICKET_AUDIENCE = "notifier-stream"


def is_admin_token(token: str) -> bool:
    """Whether `token` names the admin key (a claim only: `AdminTokens.decode` verifies it)."""
    try:
        return jwt.get_unverified_header(token).get("kid") == ADMIN_TOKEN_KID
    except jwt.InvalidTokenError:
        return False


class AdminTokens:
    """Admin tokens, HS256 with the admin key derived from the root key."""

    def __init__(self, settings: Settings, keys: Keys):
        self.settings = settings
        self.keys = keys

    def issue(self, principal: Principal, version: int, auth_time: int | None = None) -> tuple[str, int]:
        """A token for `principal` and its lifetime in seconds; `auth_time` is when the session began with a
        password (now when omitted), carried through refreshes: no token of a session outlives
        ADMIN_SESSION_MAX. `version` is the admin's token_version, which a logout or password change bumps."""
        now = int(time.time())
        auth_time = now if auth_time is None else auth_time
        ttl = min(self.settings.admin_jwt_ttl, auth_time + self.settings.admin_session_max - now)
        claims = {
            "sub": principal.id,
            "name": principal.name,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "iss": ADMIN_TOKEN_ISSUER,
            "aud": ADMIN_TOKEN_AUDIENCE,
            "ver": version,
            "jti": secrets.token_hex(8),
            "auth_time": auth_time,
        }
        token = jwt.encode(claims, self.keys.admin_jwt, algorithm="HS256", headers={"kid": ADMIN_TOKEN_KID})
        return token, ttl

    def decode(self, token: str) -> dict[str, Any]:
        """The claims of a token this service signed and that has not expired, or Unauthenticated."""
        try:
            return jwt.decode(
                token,
                self.keys.admin_jwt,
                algorithms=["HS256"],
                audience=ADMIN_TOKEN_AUDIENCE,
                issuer=ADMIN_TOKEN_ISSUER,
                leeway=self.settings.jwt_leeway,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"Invalid token: {exc}") from None

    def session_start(self, claims: dict[str, Any]) -> int:
        """The `auth_time` of a token that may still be refreshed, or Unauthenticated."""
        auth_time = claims.get("auth_time")
        if (
            not isinstance(auth_time, int)
            or isinstance(auth_time, bool)
            or time.time() - auth_time >= self.settings.admin_session_max - 1
        ):
            raise Unauthenticated("Session too old to refresh: get a new token with your password")
        return auth_time


class UserTokens:
    """End-user tokens: verified with USER_JWT_SECRET (HS*) or USER_JWT_PUBLIC_KEY (the other algorithms)."""

    def __init__(self, settings: Settings, keys: Keys):
        self.settings = settings
        self.keys = keys

    def verify(self, token: str) -> Principal:
        settings = self.settings
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"Invalid token: {exc}") from None
        if not isinstance(algorithm, str) or algorithm not in settings.user_jwt_algorithms:
            raise Unauthenticated(f"Invalid token: algorithm {algorithm!r} is not accepted")
        key = self.keys.user_jwt if algorithm.startswith("HS") else settings.user_jwt_public_key
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=settings.user_jwt_audience or None,
                issuer=settings.user_jwt_issuer or None,
                leeway=settings.jwt_leeway,
                options={"require": ["exp"], "verify_aud": bool(settings.user_jwt_audience)},
            )
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"Invalid token: {exc}") from None
        user_id = claims.get(settings.user_id_claim)
        if isinstance(user_id, int) and not isinstance(user_id, bool):
            user_id = str(user_id)
        if not isinstance(user_id, str) or not user_id:
            raise Unauthenticated(f"Invalid token: no {settings.user_id_claim!r} claim")
        return Principal(Role.USER, user_id, user_id, expires_at=_instant(claims.get("exp")))

    def issue(self, user_id: str, ttl: int = 3600) -> str:
        """A token as the external auth server would issue it (HS256 with USER_JWT_SECRET): for local use."""
        now = int(time.time())
        claims: dict[str, Any] = {self.settings.user_id_claim: user_id, "iat": now, "exp": now + ttl}
        if self.settings.user_jwt_issuer:
            claims["iss"] = self.settings.user_jwt_issuer
        if self.settings.user_jwt_audience:
            claims["aud"] = self.settings.user_jwt_audience
        return jwt.encode(claims, self.keys.user_jwt, algorithm="HS256")


class StreamTickets:
    """Short-lived tickets that open an end user's inbox stream and do nothing else: a browser's EventSource
    cannot send an Authorization header, and the user's own token must not go in a URL (logs, history).
    A stream opened with one ends when the token it was issued for expires."""

    def __init__(self, settings: Settings, keys: Keys):
        self.settings = settings
        self.key = keys.derive("stream-ticket").hex()

    def issue(self, principal: Principal) -> tuple[str, int]:
        now = int(time.time())
        ttl = self.settings.stream_ticket_ttl
        claims: dict[str, Any] = {"sub": principal.id, "aud": STREAM_TICKET_AUDIENCE, "iat": now, "exp": now + ttl}
        if principal.expires_at is not None:
            claims["session_exp"] = principal.expires_at
        return jwt.encode(claims, self.key, algorithm="HS256"), ttl

    def verify(self, ticket: str) -> Principal:
        try:
            claims = jwt.decode(
                ticket,
                self.key,
                algorithms=["HS256"],
                audience=STREAM_TICKET_AUDIENCE,
                leeway=self.settings.jwt_leeway,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"Invalid stream ticket: {exc}") from None
        user_id = claims["sub"]
        if not isinstance(user_id, str) or not user_id:
            raise Unauthenticated("Invalid stream ticket: bad subject")
        return Principal(Role.USER, user_id, user_id, expires_at=_instant(claims.get("session_exp")))


def _instant(claim: Any) -> float | None:
    """A claim holding seconds since the epoch (exp, session_exp), as a number; None when it holds none."""
    return float(claim) if isinstance(claim, (int, float)) else None
