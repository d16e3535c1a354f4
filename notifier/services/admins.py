"""Admin accounts: the people who run the service."""

from __future__ import annotations

import re

from pymongo.errors import DuplicateKeyError

from ..access import Principal
from ..clock import Clock
from ..errors import Conflict, Invalid, NotFound
from ..passwords import check_strength, hash_password
from ..store import Store
from . import object_id
from .paging import Page, newest_first

# One rule for every way an admin is made (form, CLI, env bootstrap): a username is logged and audited, so it
# is plain ASCII with no spaces or controls.
USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.@+_\-]{0,149}")


class AdminService:
    def __init__(self, store: Store, clock: Clock):
        self.store = store
        self.clock = clock

    async def create(self, username: str, password: str) -> dict:
        if not USERNAME_RE.fullmatch(username):
            raise Invalid.field(
                "username", "must be 1-150 letters, digits, '.', '@', '+', '_' or '-' (not starting with a symbol)"
            )
        check_strength(password, username)
        now = self.clock.now()
        admin = {
            "username": username,
            "password_hash": hash_password(password),
            "active": True,
            "token_version": 0,
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self.store.admins.insert_one(admin)
        except DuplicateKeyError:
            raise Conflict(f"Admin {username!r} already exists", {"username": ["already exists"]}) from None
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

    async def page(self, limit: int, cursor: str | None) -> Page:
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
            {"$set": {"active": active, "updated_at": self.clock.now()}, "$inc": {"token_version": 1}},
        )
        if not result.matched_count:
            raise NotFound(f"Admin {admin_id!r} not found")
        return await self.get(admin_id)

    async def set_password(self, admin_id: str, password: str) -> None:
        """Change the password; tokens and sessions issued before stop working."""
        admin = await self.get(admin_id)
        check_strength(password, admin["username"])
        result = await self.store.admins.update_one(
            {"_id": object_id(admin_id, "Admin")},
            {
                "$set": {"password_hash": hash_password(password), "updated_at": self.clock.now()},
                "$inc": {"token_version": 1},
            },
        )
        if not result.matched_count:
            raise NotFound(f"Admin {admin_id!r} not found")
