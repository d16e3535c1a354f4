"""Who is calling: admins (password or token), client applications (login + password), end users (token).

The Authorization header is read here, in the forms the service accepts, and answered with a Principal;
what that principal may then do is notifier.access's table.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId

from .access import Principal, Role
from .errors import Unauthenticated
from .keys import Keys
from .passwords import PasswordGuard
from .settings import Settings
from .store import Store
from .tokens import AdminTokens, StreamTickets, UserTokens, is_admin_token


class Scheme(enum.StrEnum):
    BASIC = "basic"  # an admin's username and password
    APP = "app"  # a client application's login and password
    BEARER = "bearer"  # an admin token, or an end user's
    TOKEN = "token"  # an end user's token without a scheme word


@dataclass(frozen=True)
class Credentials:
    kind: Scheme
    login: str = ""
    secret: str = ""


# A client login equal to a scheme word would read as that scheme in the `<login> <password>` form.
RESERVED_LOGINS = frozenset({Scheme.BASIC.value, Scheme.BEARER.value})


def parse_authorization(header: str) -> Credentials:
    """Read the four accepted forms: `Basic b64(login:password)`, `Bearer <jwt>`,
    `<login> <password>` (a client application's form) and a bare `<jwt>` (an end user's form)."""
    parts = header.strip().split(None, 1)
    if not parts:
        raise Unauthenticated("Empty Authorization header")
    scheme = parts[0].lower()
    rest = parts[1].strip() if len(parts) > 1 else ""
    if scheme == "basic":
        try:
            login, colon, password = base64.b64decode(rest, validate=True).decode("utf-8").partition(":")
        except ValueError:  # not base64 (or not ASCII at all), or not UTF-8 inside
            raise Unauthenticated("Malformed Basic credentials") from None
        if not login or not colon:
            raise Unauthenticated("Malformed Basic credentials")
        return Credentials(Scheme.BASIC, login, password)
    if scheme == "bearer":
        if not rest:
            raise Unauthenticated("Bearer scheme without a token")
        return Credentials(Scheme.BEARER, secret=rest)
    if rest:
        return Credentials(Scheme.APP, parts[0], rest)
    return Credentials(Scheme.TOKEN, secret=parts[0])


async def _nothing() -> None:
    return None


class Authenticator:
    """Turns an Authorization header into a Principal, or raises Unauthenticated."""

    def __init__(self, store: Store, settings: Settings, keys: Keys, guard: PasswordGuard):
        self.store = store
        self.settings = settings
        self.guard = guard
        self.admin_tokens = AdminTokens(settings, keys)
        self.user_tokens = UserTokens(settings, keys)
        self.stream_tickets = StreamTickets(settings, keys)

    async def authenticate(self, header: str | None, address: str = "") -> Principal | None:
        if not header:
            return None
        credentials = parse_authorization(header)
        if credentials.kind is Scheme.BASIC:
            return await self._by_password(credentials.login, credentials.secret, address, admin=True)
        if credentials.kind is Scheme.APP:
            return await self._by_password(credentials.login, credentials.secret, address, admin=False)
        if credentials.kind is Scheme.BEARER and is_admin_token(credentials.secret):
            return await self.verify_admin_token(credentials.secret)
        return self.user_tokens.verify(credentials.secret)

    async def _by_password(
        self,
        login: str,
        password: str,
        address: str,
        admin: bool,
        client: bool = True,
        message: str = "Invalid login or password",
    ) -> Principal:
        """One guarded check (one scrypt) against the one account the login names: the active admin of
        that username when `admin`, else the active client of that login; unknown ones cost the same."""
        # Both lookups always (concurrently), so their timing does not tell which kind of login exists.
        admin_account, client_account = await asyncio.gather(
            self.store.admins.find_one({"username": login}) if admin else _nothing(),
            self.store.clients.find_one({"login": login}) if client else _nothing(),
        )
        account: dict | None = None
        principal: Principal | None = None
        if admin_account is not None and admin_account.get("active", True):
            account, principal = admin_account, self._admin_principal(admin_account)
        elif client_account is not None and client_account.get("active", True):
            account, principal = client_account, self._client_principal(client_account)
        verified = await self.guard.check(login, password, account["password_hash"] if account else None, address)
        if not verified or principal is None:
            raise Unauthenticated(message)
        return principal

    @staticmethod
    def _admin_principal(admin: dict) -> Principal:
        return Principal(Role.ADMIN, str(admin["_id"]), admin["username"])

    @staticmethod
    def _client_principal(client: dict) -> Principal:
        # Read from the client document of this request: a grant or revocation applies at once.
        return Principal(Role.CLIENT, str(client["_id"]), client["login"], frozenset(client.get("permissions", ())))

    async def login_admin(self, username: str, password: str, address: str) -> Principal:
        """An admin's username and password, from the token endpoint or the login page."""
        return await self._by_password(
            username, password, address, admin=True, client=False, message="Invalid username or password"
        )

    # --- admin tokens, issued by us ---

    async def issue_admin_token(self, principal: Principal, auth_time: int | None = None) -> tuple[str, int]:
        """A token for `principal` and its lifetime; `auth_time` as in AdminTokens.issue."""
        return self.admin_tokens.issue(principal, await self.admin_version(principal), auth_time)

    async def refresh_admin_token(self, token: str) -> tuple[str, int]:
        """A fresh token of the same session, unless the session is older than ADMIN_SESSION_MAX."""
        claims, principal = await self._admin_token(token)
        return await self.issue_admin_token(principal, self.admin_tokens.session_start(claims))

    async def verify_admin_token(self, token: str) -> Principal:
        return (await self._admin_token(token))[1]

    async def _admin_token(self, token: str) -> tuple[dict[str, Any], Principal]:
        claims = self.admin_tokens.decode(token)
        try:
            admin_id = ObjectId(claims["sub"])
        except (InvalidId, TypeError):
            raise Unauthenticated("Invalid token: bad subject") from None
        principal = await self.admin_session(admin_id, claims.get("ver"))
        if principal is None:
            raise Unauthenticated("Invalid token: revoked")
        return claims, principal

    # --- admin-page sessions: an id in the signed cookie, the session itself in the database ---

    async def open_admin_session(self, principal: Principal, hours: float) -> str:
        now = datetime.now(UTC)
        session_id = secrets.token_urlsafe(24)
        await self.store.admin_sessions.insert_one(
            {
                "_id": session_id,
                "admin_id": ObjectId(principal.id),
                "ver": await self.admin_version(principal),
                "created_at": now,
                "expires_at": now + timedelta(hours=hours),
            }
        )
        return session_id

    async def admin_by_session(self, session_id: str) -> Principal | None:
        """The admin of a live session: not logged out, not expired, the admin still active and not
        changed since (a password change or deactivation ends every session)."""
        session = await self.store.admin_sessions.find_one({"_id": session_id})
        if session is None or session["expires_at"] <= datetime.now(UTC):
            return None
        return await self.admin_session(session["admin_id"], session["ver"])

    async def close_admin_session(self, session_id: str) -> None:
        await self.store.admin_sessions.delete_one({"_id": session_id})

    async def admin_session(self, admin_id: ObjectId, version: object) -> Principal | None:
        """The admin behind a token or admin-page session, if still active and not logged out since
        (a password change or deactivation bumps token_version)."""
        admin = await self.store.admins.find_one({"_id": admin_id})
        if not admin or not admin.get("active", True) or admin.get("token_version", 0) != version:
            return None
        return self._admin_principal(admin)

    async def admin_version(self, principal: Principal) -> int:
        admin = await self.store.admins.find_one({"_id": ObjectId(principal.id)}, {"token_version": 1})
        return (admin or {}).get("token_version", 0)
