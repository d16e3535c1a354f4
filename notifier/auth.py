"""Who is calling: admins (password or JWT), client applications (login + password), end users (JWT).

`ACCESS` is the one table of which role may do what; handlers name a permission, never a role. A permission
in `GRANTABLE` is held by a client application only when an admin granted it to that application.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

import jwt
from bson import ObjectId
from bson.errors import InvalidId

from .errors import Unauthenticated
from .keys import Keys
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


# --- passwords -------------------------------------------------------------------------------------

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, expected = encoded.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                                p=int(p), dklen=32)
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(digest, base64.b64decode(expected))


def generate_password() -> str:
    return secrets.token_urlsafe(24)


# Checking an unknown login still costs one scrypt, so timing does not tell which logins exist.
_DUMMY_HASH = hash_password(secrets.token_hex(8))


class _VerifiedPasswords:
    """Recently verified (account, password) pairs, so an app sending its password on every request
    does not pay for scrypt every time. An entry holds the stored hash it was checked against: a
    password change or reset invalidates it at once."""

    def __init__(self, key: bytes, size: int = 10000, ttl: float = 300.0):
        self._key, self._size, self._ttl = key, size, ttl
        self._entries: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    def _fingerprint(self, kind: str, login: str, password: str) -> bytes:
        return hmac.new(self._key, f"{kind}\0{login}\0{password}".encode(), hashlib.sha256).digest()

    def verify(self, kind: str, login: str, password: str, stored_hash: str) -> bool:
        fingerprint = self._fingerprint(kind, login, password)
        entry = self._entries.get(fingerprint)
        if entry and entry[0] == stored_hash and entry[1] > time.monotonic():
            return True
        if not verify_password(password, stored_hash):
            return False
        self._entries[fingerprint] = (stored_hash, time.monotonic() + self._ttl)
        self._entries.move_to_end(fingerprint)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return True


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


class Authenticator:
    """Turns an Authorization header into a Principal, or raises Unauthenticated."""

    def __init__(self, store: Store, settings: Settings, keys: Keys):
        self.store = store
        self.settings = settings
        self.keys = keys
        self._verified = _VerifiedPasswords(keys.derive("password-cache"))

    async def authenticate(self, header: str | None) -> Principal | None:
        if not header:
            return None
        credentials = parse_authorization(header)
        if credentials.kind == "basic":
            return (await self._admin_by_password(credentials.login, credentials.secret)
                    or await self._client_by_password(credentials.login, credentials.secret)
                    or self._reject_password())
        if credentials.kind == "app":
            return (await self._client_by_password(credentials.login, credentials.secret)
                    or self._reject_password())
        if credentials.kind == "bearer" and self._is_admin_token(credentials.secret):
            return await self.verify_admin_token(credentials.secret)
        return self.verify_user_token(credentials.secret)

    @staticmethod
    def _reject_password():
        raise Unauthenticated("Invalid login or password")

    async def _admin_by_password(self, username: str, password: str) -> Principal | None:
        admin = await self.store.admins.find_one({"username": username})
        if not admin or not admin.get("active", True):
            return None
        if not self._verified.verify("admin", username, password, admin["password_hash"]):
            return None
        return Principal(Role.ADMIN, str(admin["_id"]), admin["username"])

    async def _client_by_password(self, login: str, password: str) -> Principal | None:
        client = await self.store.clients.find_one({"login": login})
        if not client or not client.get("active", True):
            verify_password(password, _DUMMY_HASH)
            return None
        if not self._verified.verify("client", login, password, client["password_hash"]):
            return None
        # Read from the client document of this request: a grant or revocation applies at once.
        return Principal(Role.CLIENT, str(client["_id"]), client["login"], frozenset(client.get("permissions", ())))

    async def login_admin(self, username: str, password: str) -> Principal:
        principal = await self._admin_by_password(username, password)
        if principal is None:
            verify_password(password, _DUMMY_HASH)
            raise Unauthenticated("Invalid username or password")
        return principal

    # --- admin tokens, issued by us ---

    @staticmethod
    def _is_admin_token(token: str) -> bool:
        try:
            return jwt.get_unverified_header(token).get("kid") == ADMIN_TOKEN_KID
        except jwt.InvalidTokenError:
            return False

    async def issue_admin_token(self, principal: Principal) -> tuple[str, int]:
        version = await self.admin_version(principal)
        now = int(time.time())
        ttl = self.settings.admin_jwt_ttl
        claims = {"sub": principal.id, "name": principal.name, "iat": now, "nbf": now, "exp": now + ttl,
                  "iss": ADMIN_TOKEN_ISSUER, "aud": ADMIN_TOKEN_AUDIENCE,
                  "ver": version, "jti": secrets.token_hex(8)}
        token = jwt.encode(claims, self.keys.admin_jwt, algorithm="HS256", headers={"kid": ADMIN_TOKEN_KID})
        return token, ttl

    async def verify_admin_token(self, token: str) -> Principal:
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
        return principal

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
