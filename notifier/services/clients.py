"""Client applications: third-party services that send notifications with `Authorization: <login> <password>`.

Each sees only its own notifications and schedules; what else it may do (the contacts directory) is the
`permissions` list an admin grants it (auth.GRANTABLE; none by default).
"""

from __future__ import annotations

from pymongo.errors import DuplicateKeyError

from ..access import GRANTABLE, Principal
from ..clock import Clock
from ..errors import Conflict, Invalid, NotFound
from ..passwords import generate_password, hash_password
from ..store import Store
from . import object_id
from .paging import Page, newest_first


class ClientService:
    def __init__(self, store: Store, clock: Clock):
        self.store = store
        self.clock = clock

    @staticmethod
    def _permissions(permissions) -> list[str]:
        unknown = sorted(set(permissions) - set(GRANTABLE))
        if unknown:
            raise Invalid.field("permissions", f"unknown: {', '.join(unknown)}; known: {', '.join(GRANTABLE)}")
        return sorted(set(permissions))

    async def create(self, login: str, name: str, created_by: Principal, permissions=()) -> tuple[dict, str]:
        """The new client and its generated password, which is stored only as a hash."""
        password = generate_password()
        now = self.clock.now()
        client = {
            "login": login,
            "name": name,
            "password_hash": hash_password(password),
            "active": True,
            "permissions": self._permissions(permissions),
            "created_by": created_by.name,
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self.store.clients.insert_one(client)
        except DuplicateKeyError:
            raise Conflict(f"Client {login!r} already exists", {"login": ["already exists"]}) from None
        return client, password

    async def get(self, client_id: str) -> dict:
        client = await self.store.clients.find_one({"_id": object_id(client_id, "Client")})
        if client is None:
            raise NotFound(f"Client {client_id!r} not found")
        return client

    async def page(self, limit: int, cursor: str | None) -> Page:
        return await newest_first(self.store.clients, {}, limit, cursor)

    async def delete(self, client_id: str) -> None:
        result = await self.store.clients.delete_one({"_id": object_id(client_id, "Client")})
        if not result.deleted_count:
            raise NotFound(f"Client {client_id!r} not found")

    async def reset_password(self, client_id: str) -> str:
        password = generate_password()
        result = await self.store.clients.update_one(
            {"_id": object_id(client_id, "Client")},
            {"$set": {"password_hash": hash_password(password), "updated_at": self.clock.now()}},
        )
        if not result.matched_count:
            raise NotFound(f"Client {client_id!r} not found")
        return password

    async def set_active(self, client_id: str, active: bool) -> dict:
        result = await self.store.clients.update_one(
            {"_id": object_id(client_id, "Client")}, {"$set": {"active": active, "updated_at": self.clock.now()}}
        )
        if not result.matched_count:
            raise NotFound(f"Client {client_id!r} not found")
        return await self.get(client_id)

    async def set_permissions(self, client_id: str, permissions, actor: Principal) -> dict:
        """Grant exactly `permissions` (effective from the application's next request). Audited."""
        chosen = self._permissions(permissions)
        client = await self.get(client_id)
        await self.store.clients.update_one(
            {"_id": client["_id"]}, {"$set": {"permissions": chosen, "updated_at": self.clock.now()}}
        )
        before = client.get("permissions", [])
        if before != chosen:
            await self.store.audit.insert_one(
                {
                    "at": self.clock.now(),
                    "actor": actor.name,
                    "actor_id": actor.id,
                    "action": "client_permissions",
                    "client_id": str(client["_id"]),
                    "login": client["login"],
                    "before": before,
                    "after": chosen,
                }
            )
        return await self.get(client_id)
