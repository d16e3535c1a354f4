"""Signed links sent to users: one-click unsubscribe, scoped to one user and one channel (or all)."""

from __future__ import annotations

from urllib.parse import quote

import jwt

from .errors import Invalid
from .keys import Keys

UNSUBSCRIBE_AUDIENCE = "notifier-unsubscribe"
ALL_CHANNELS = "all"


class Links:
    def __init__(self, keys: Keys, public_url: str):
        self._key = keys.derive("unsubscribe").hex()
        self.public_url = public_url.rstrip("/")

    def unsubscribe_url(self, user_id: str, channel: str) -> str:
        """The one-click link for `user_id` and `channel`: its last segment is the signed token."""
        token = jwt.encode(
            {"sub": user_id, "scope": channel, "aud": UNSUBSCRIBE_AUDIENCE}, self._key, algorithm="HS256"
        )
        return f"{self.public_url}/unsubscribe/{quote(token)}"

    def read_unsubscribe_token(self, token: str) -> tuple[str, str]:
        """(user_id, channel or "all") from a token this service signed."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                audience=UNSUBSCRIBE_AUDIENCE,
                options={"require": ["sub", "scope", "aud"]},
            )
        except jwt.InvalidTokenError:
            raise Invalid.field("token", "is not a valid unsubscribe link") from None
        return claims["sub"], claims["scope"]
