"""Who is calling: admins (password or JWT), client applications (login + password), end users (JWT).

`ACCESS` is the one table of which role may do what; handlers name a permission, never a role. A permission
in `GRANTABLE` is held by a client application only when an admin granted it to that application.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import jwt
from bson import ObjectId
from bson.errors import InvalidId

from .errors import Unauthenticated
from .keys import Keys
from .passwords import PasswordGuard
from .settings import Settings
from .store import Store


class Role(str, enum.Enum):
    ADMIN = "admin"
    CLIENT = "client"
    USER = "user"


@dataclass(frozen=True)
class Principal:
    role: Role
    id: str
    name: str
    permissions: frozenset[str] = frozenset()  # what an admin granted a client application (GRANTABLE)

    def as_author(self) -> dict:
        return {"kind": self.role.value, "id": self.id, "name": self.name}


PUBLIC = "public"
ADMIN, CLIENT, USER = Role.ADMIN, Role.CLIENT, Role.USER

ACCESS: dict[str, frozenset[Role]] = {
    "notifications:write": frozenset({ADMIN, CLIENT}),
    "notifications:read": frozenset({ADMIN, CLIENT}),
    "contacts:write": frozenset({ADMIN, CLIENT}),
    "contacts:read": frozenset({ADMIN, CLIENT}),
    "preferences:write": frozenset({ADMIN}),  # someone else's opt-outs (the user has "me" for their own)
    "schedules:write": frozenset({ADMIN, CLIENT}),
    "schedules:read": frozenset({ADMIN, CLIENT}),
    "clients:manage": frozenset({ADMIN}),
    "system:read": frozenset({ADMIN}),
    "auth:refresh": frozenset({ADMIN}),
    "me": frozenset({USER}),
}


# The contacts directory is platform-wide: a client application reads or writes it only once granted.
GRANTABLE = ("contacts:read", "contacts:write")


def allowed(permission: str, principal: Principal | None) -> bool:
    if permission == PUBLIC:
        return True
    if principal is None or principal.role not in ACCESS[permission]:
        return False
    return principal.role is not CLIENT or permission not in GRANTABLE or permission in principal.permissions


def refusal(permission: str, principal: Principal) -> str:
    """Why `allowed` said no to a known caller."""
    if principal.role in ACCESS[permission]:
        return f"This client application has not been granted {permission!r}; an admin can grant it"
    return f"A {principal.role.value} may not do this"


# --- credentials -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Credentials:
    kind: str  # "basic" | "app" | "bearer" | "token"
    login: str = ""
    secret: str = ""


RESERVED_LOGINS = frozenset({"basic", "bearer"})


def parse_authorization(header: str) -> Credentials:
    """Read the four accepted forms: `Basic b64(login:password)`, `Bearer <jwt>`,
    `<login> <password>` (the original service's app form) and a bare `<jwt>` (its end-user form)."""
    parts = header.strip().split(None, 1)
    if not parts:
        raise Unauthenticated("Empty Authorization header")
    scheme = parts[0].lower()
    rest = parts[1].strip() if len(parts) > 1 else ""
    if scheme == "basic":
        try:
            login, _, password = base64.b64decode(rest, validate=True).decode("utf-8").partition(":")
        except ValueError:  # not base64 (or not ASCII at all), or not UTF-8 inside
            raise Unauthenticated("Malformed Basic credentials") from None
        if not login or not _:
            raise Unauthenticated("Malformed Basic credentials")
        return Credentials("basic", login, password)
    if scheme == "bearer":
        if not rest:
            raise Unauthenticated("Bearer scheme without a token")
        return Credentials("bearer", secret=rest)
    if rest:
        return Credentials("app", parts[0], rest)
    return Credentials("token", secret=parts[0])


ADMIN_TOKEN_KID = "notifier-admin"
ADMIN_TOKEN_ISSUER = "notifier"
ADMIN_TOKEN_AUDIENCE = "notifier-admin"


async def _nothing() -> None:
    return None


class Authenticator:
    """Turns an Authorization header into a Principal, or raises Unauthenticated."""

    def __init__(self, store: Store, settings: Settings, keys: Keys, guard: PasswordGuard | None = None):
        self.store = store
        self.settings = settings
        self.keys = keys
        self.guard = guard

    async def authenticate(self, header: str | None, address: str = "") -> Principal | None:
        if not header:
            return None
        credentials = parse_authorization(header)
        if credentials.kind == "basic":
            return await self._by_password(credentials.login, credentials.secret, address, admin=True)
        if credentials.kind == "app":
            return await self._by_password(credentials.login, credentials.secret, address, admin=False)
        if credentials.kind == "bearer" and self._is_admin_token(credentials.secret):
            return await self.verify_admin_token(credentials.secret)
        return self.verify_user_token(credentials.secret)

    async def _by_password(self, login: str, password: str, address: str, admin: bool, client: bool = True,
                           message: str = "Invalid login or password") -> Principal:
        """One guarded check (one scrypt) against the one account the login names: the active admin of
        that username when `admin`, else the active client of that login; unknown ones cost the same."""
        # Both lookups always (concurrently), so their timing does not tell which kind of login exists.
        admin_account, client_account = await asyncio.gather(
            self.store.admins.find_one({"username": login}) if admin else _nothing(),
            self.store.clients.find_one({"login": login}) if client else _nothing())
        if admin_account is not None and admin_account.get("active", True):
            account, make = admin_account, self._admin_principal
        elif client_account is not None and client_account.get("active", True):
            account, make = client_account, self._client_principal
        else:
            account, make = None, None
        if not await self.guard.check(login, password, account["password_hash"] if account else None, address):
            raise Unauthenticated(message)
        return make(account)

    @staticmethod
    def _admin_principal(admin: dict) -> Principal:
        return Principal(Role.ADMIN, str(admin["_id"]), admin["username"])

    @staticmethod
    def _client_principal(client: dict) -> Principal:
        # Read from the client document of this request: a grant or revocation applies at once.
        return Principal(Role.CLIENT, str(client["_id"]), client["login"], frozenset(client.get("permissions", ())))

    async def login_admin(self, username: str, password: str, address: str) -> Principal:
        """An admin's username and password, from the token endpoint or the login page."""
        return await self._by_password(username, password, address, admin=True, client=False,
                                       message="Invalid username or password")

    # --- admin tokens, issued by us ---

    @staticmethod
    def _is_admin_token(token: str) -> bool:
        try:
            return jwt.get_unverified_header(token).get("kid") == ADMIN_TOKEN_KID
        except jwt.InvalidTokenError:
            return False

    async def issue_admin_token(self, principal: Principal, auth_time: int | None = None) -> tuple[str, int]:
        """A token for `principal`; `auth_time` is when the session began with a password (now when
        omitted), carried through refreshes: no token of a session outlives ADMIN_SESSION_MAX."""
        version = await self.admin_version(principal)
        now = int(time.time())
        auth_time = now if auth_time is None else auth_time
        ttl = min(self.settings.admin_jwt_ttl, auth_time + self.settings.admin_session_max - now)
        claims = {"sub": principal.id, "name": principal.name, "iat": now, "nbf": now, "exp": now + ttl,
                  "iss": ADMIN_TOKEN_ISSUER, "aud": ADMIN_TOKEN_AUDIENCE,
                  "ver": version, "jti": secrets.token_hex(8), "auth_time": auth_time}
        token = jwt.encode(claims, self.keys.admin_jwt, algorithm="HS256", headers={"kid": ADMIN_TOKEN_KID})
        return token, ttl

    async def refresh_admin_token(self, token: str) -> tuple[str, int]:
        """A fresh token of the same session, unless the session is older than ADMIN_SESSION_MAX."""
        claims, principal = await self._admin_token(token)
        auth_time = claims.get("auth_time")
        if not isinstance(auth_time, int) or isinstance(auth_time, bool) or \
                time.time() - auth_time >= self.settings.admin_session_max - 1:
            raise Unauthenticated("Session too old to refresh: get a new token with your password")
        return await self.issue_admin_token(principal, auth_time)

    async def verify_admin_token(self, token: str) -> Principal:
        return (await self._admin_token(token))[1]

    async def _admin_token(self, token: str) -> tuple[dict, Principal]:
        try:
            claims = jwt.decode(token, self.keys.admin_jwt, algorithms=["HS256"],
                                audience=ADMIN_TOKEN_AUDIENCE, issuer=ADMIN_TOKEN_ISSUER,
                                leeway=self.settings.jwt_leeway,
                                options={"require": ["exp", "iat", "sub", "iss", "aud"]})
            admin_id = ObjectId(claims["sub"])
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"Invalid token: {exc}") from None
        except (InvalidId, TypeError):
            raise Unauthenticated("Invalid token: bad subject") from None
        principal = await self.admin_session(admin_id, claims.get("ver"))
        if principal is None:
            raise Unauthenticated("Invalid token: revoked")
        return claims, principal

    # --- admin-page sessions: an id in the signed cookie, the session itself in the database ---

    async def open_admin_session(self, principal: Principal, hours: float) -> str:
        now = datetime.now(timezone.utc)
        session_id = secrets.token_urlsafe(24)
        await self.store.admin_sessions.insert_one({
            "_id": session_id, "admin_id": ObjectId(principal.id), "ver": await self.admin_version(principal),
            "created_at": now, "expires_at": now + timedelta(hours=hours)})
        return session_id

    async def admin_by_session(self, session_id: str) -> Principal | None:
        """The admin of a live session: not logged out, not expired, the admin still active and not
        changed since (a password change or deactivation ends every session)."""
        session = await self.store.admin_sessions.find_one({"_id": session_id})
        if session is None or session["expires_at"] <= datetime.now(timezone.utc):
            return None
        return await self.admin_session(session["admin_id"], session["ver"])

    async def close_admin_session(self, session_id: str) -> None:
        await self.store.admin_sessions.delete_one({"_id": session_id})

    async def admin_session(self, admin_id: ObjectId, version) -> Principal | None:
        """The admin behind a token or admin-page session, if still active and not logged out since
        (a password change or deactivation bumps token_version)."""
        admin = await self.store.admins.find_one({"_id": admin_id})
        if not admin or not admin.get("active", True) or admin.get("token_version", 0) != version:
            return None
        return Principal(Role.ADMIN, str(admin["_id"]), admin["username"])

    async def admin_version(self, principal: Principal) -> int:
        admin = await self.store.admins.find_one({"_id": ObjectId(principal.id)}, {"token_version": 1})
        return (admin or {}).get("token_version", 0)

    # --- end-user tokens, issued by the external auth server ---

    def verify_user_token(self, token: str) -> Principal:
        settings = self.settings
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"Invalid token: {exc}") from None
        if algorithm not in settings.user_jwt_algorithms:
            raise Unauthenticated(f"Invalid token: algorithm {algorithm!r} is not accepted")
        key = self.keys.user_jwt if algorithm.startswith("HS") else settings.user_jwt_public_key
        try:
            claims = jwt.decode(token, key, algorithms=[algorithm],
                                audience=settings.user_jwt_audience or None,
                                issuer=settings.user_jwt_issuer or None,
                                leeway=settings.jwt_leeway,
                                options={"require": ["exp"], "verify_aud": bool(settings.user_jwt_audience)})
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"Invalid token: {exc}") from None
        user_id = claims.get(settings.user_id_claim)
        if isinstance(user_id, int) and not isinstance(user_id, bool):
            user_id = str(user_id)
        if not isinstance(user_id, str) or not user_id:
            raise Unauthenticated(f"Invalid token: no {settings.user_id_claim!r} claim")
        return Principal(Role.USER, user_id, user_id)

    def issue_user_token(self, user_id: str, ttl: int = 3600) -> str:
        """A token as the external auth server would issue it (HS256 with USER_JWT_SECRET): for local use."""
        now = int(time.time())
        claims = {self.settings.user_id_claim: user_id, "iat": now, "exp": now + ttl}
        if self.settings.user_jwt_issuer:
            claims["iss"] = self.settings.user_jwt_issuer
        if self.settings.user_jwt_audience:
            claims["aud"] = self.settings.user_jwt_audience
        return jwt.encode(claims, self.keys.user_jwt, algorithm="HS256")
