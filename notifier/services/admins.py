"""Admin accounts: the people who run the service."""

from __future__ import annotations

from datetime import timedelta

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from ..auth import Authenticator, Principal, hash_password
from ..clock import Clock
from ..errors import Conflict, Invalid, NotFound, TooManyAttempts, Unauthenticated
from ..store import Store
from . import object_id
from .paging import Page, newest_first

MIN_PASSWORD = 8
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise Invalid.field("password", f"must be at least {MIN_PASSWORD} characters")


class AdminService:
    def __init__(self, store: Store, clock: Clock):
        self.store = store
        self.clock = clock

    async def create(self, username: str, password: str) -> dict:
        if not username or len(username) > 150:
            raise Invalid.field("username", "must be 1-150 characters")
        check_password_strength(password)
        now = self.clock.now()
        admin = {"username": username, "password_hash": hash_password(password), "active": True,
                 "token_version": 0, "created_at": now, "updated_at": now}
        try:
            await self.store.admins.insert_one(admin)
        except DuplicateKeyError:
            raise Conflict(f"Admin {username!r} already exists",
                           {"username": ["already exists"]}) from None
        return admin

    async def ensure(self, username: str, password: str) -> bool:
        """Create the admin unless one with this username exists; True if it was created."""
        if await self.store.admins.find_one({"username": username}, {"_id": 1}):
            return False
        try:
            await self.create(username, password)
        except Conflict:
            return False
        return True

    async def list(self, limit: int, cursor: str | None) -> Page:
        return await newest_first(self.store.admins, {}, limit, cursor)

    async def get(self, admin_id: str) -> dict:
        admin = await self.store.admins.find_one({"_id": object_id(admin_id, "Admin")})
        if admin is None:
            raise NotFound(f"Admin {admin_id!r} not found")
        return admin

    async def set_active(self, admin_id: str, active: bool, by: Principal) -> dict:
        """Deactivate or reactivate an admin; sessions and tokens of a deactivated admin stop working."""
        if admin_id == by.id and not active:
            raise Invalid.field("active", "you cannot deactivate yourself")
        result = await self.store.admins.update_one(
            {"_id": object_id(admin_id, "Admin")},
            {"$set": {"active": active, "updated_at": self.clock.now()}, "$inc": {"token_version": 1}})
        if not result.matched_count:
            raise NotFound(f"Admin {admin_id!r} not found")
        return await self.get(admin_id)

    async def set_password(self, admin_id: str, password: str) -> None:
        """Change the password; tokens issued before stop working."""
        check_password_strength(password)
        result = await self.store.admins.update_one(
            {"_id": object_id(admin_id, "Admin")},
            {"$set": {"password_hash": hash_password(password), "updated_at": self.clock.now()},
             "$inc": {"token_version": 1}})
        if not result.matched_count:
            raise NotFound(f"Admin {admin_id!r} not found")


class LoginGuard:
    """Slows down password guessing: after MAX_FAILURES failed logins from one address within
    FAILURE_WINDOW, that address must wait LOCKOUT before trying again (kept in the database, so every
    instance agrees)."""

    def __init__(self, store: Store, clock: Clock):
        self.collection = store.login_failures
        self.clock = clock

    async def check(self, address: str) -> None:
        entry = await self.collection.find_one({"_id": address})
        now = self.clock.now()
        if entry and entry.get("locked_until") and entry["locked_until"] > now:
            wait = int((entry["locked_until"] - now).total_seconds()) + 1
            minutes = max(1, round(wait / 60))
            raise TooManyAttempts(f"Too many failed logins from your address; try again in {minutes} minute"
                                  f"{'s' if minutes != 1 else ''}", retry_after=wait)

    async def failed(self, address: str) -> None:
        now = self.clock.now()
        entry = await self.collection.find_one_and_update(
            {"_id": address}, {"$inc": {"failures": 1}, "$setOnInsert": {"since": now}}, upsert=True,
            return_document=ReturnDocument.AFTER)
        if now - entry["since"] > FAILURE_WINDOW:
            await self.collection.update_one({"_id": address}, {"$set": {"failures": 1, "since": now,
                                                                        "locked_until": None}})
        elif entry["failures"] >= MAX_FAILURES:
            await self.collection.update_one({"_id": address}, {"$set": {"locked_until": now + LOCKOUT,
                                                                        "failures": 0, "since": now}})

    async def succeeded(self, address: str) -> None:
        await self.collection.delete_one({"_id": address})


class AdminLogin:
    """An admin's username and password checked, with the failed-login guard, for the API and the admin."""

    def __init__(self, auth: Authenticator, guard: LoginGuard):
        self.auth = auth
        self.guard = guard

    async def login(self, username: str, password: str, address: str) -> Principal:
        await self.guard.check(address)
        try:
            principal = await self.auth.login_admin(username, password)
        except Unauthenticated:
            await self.guard.failed(address)
            raise
        await self.guard.succeeded(address)
        return principal
