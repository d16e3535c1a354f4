"""Recipients: their contacts, their preferences, and their own inbox.

The contacts are one platform-wide directory (user ids are the auth server's `sub`). Opt-outs belong to the
user: contact writes change only the fields they send, and only the user (`set_preferences`, through their
token or the signed link) or an admin (audited) changes `unsubscribed_*`.
"""

from __future__ import annotations

import re

from pymongo import UpdateOne

from ..access import Principal, allowed
from ..clock import Clock
from ..errors import Forbidden, Invalid, NotFound
from ..links import ALL_CHANNELS
from ..rendering import recipient_values, render
from ..store import Store
from .paging import Page, by_key, newest_first

USER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,127}$")
CONTACT_FIELDS = ("email", "telegram_chat_id", "webhook_url", "display_name", "timezone", "locale")
PREFERENCE_FIELDS = ("unsubscribed_channels", "unsubscribed_all")
OWN_FIELDS = (*PREFERENCE_FIELDS, "quiet_hours")  # what a user sets through /me/preferences
PREFERENCES_AUDIT = "user_preferences"
NOT_YOURS = "only the user (their token or the unsubscribe link) or an admin may change this"


RESERVED_USER_IDS = frozenset({"bulk"})  # /api/v1/users/bulk is the bulk upsert


def check_user_id(user_id: str) -> str:
    if user_id in RESERVED_USER_IDS:
        raise Invalid.field("user_id", f"{user_id!r} is reserved")
    if not USER_ID_RE.fullmatch(user_id):
        raise Invalid.field("user_id", "must be 1-128 characters: letters, digits and . _ : @ + -")
    return user_id


def default_preferences() -> dict:
    return {"unsubscribed_channels": [], "unsubscribed_all": False}


class UserService:
    def __init__(self, store: Store, clock: Clock):
        self.store = store
        self.clock = clock

    def _upsert(self, user_id: str, fields: dict) -> tuple[dict, dict]:
        now = self.clock.now()
        return (
            {"user_id": user_id},
            {"$set": {**fields, "updated_at": now}, "$setOnInsert": {"user_id": user_id, "created_at": now}},
        )

    @staticmethod
    def _refused(actor: Principal, data: dict) -> dict:
        """The preference fields in `data` that `actor` may not set, with why."""
        if allowed("preferences:write", actor):
            return {}
        return {name: [NOT_YOURS] for name in PREFERENCE_FIELDS if name in data}

    async def _preferences_of(self, user_ids: list[str]) -> dict[str, dict]:
        found = {
            u["user_id"]: u
            async for u in self.store.users.find(
                {"user_id": {"$in": user_ids}}, {"user_id": 1, **dict.fromkeys(PREFERENCE_FIELDS, 1)}
            )
        }
        return {
            uid: {
                **default_preferences(),
                **{k: v for k, v in (found.get(uid) or {}).items() if k in PREFERENCE_FIELDS},
            }
            for uid in user_ids
        }

    async def _audit_preferences(self, actor: Principal, before: dict[str, dict]) -> None:
        """One audit entry per user whose preferences an admin's write changed."""
        if not before:
            return
        after = await self._preferences_of(list(before))
        now = self.clock.now()
        entries = [
            {
                "at": now,
                "actor": actor.name,
                "actor_id": actor.id,
                "action": PREFERENCES_AUDIT,
                "user_id": uid,
                "before": before[uid],
                "after": after[uid],
            }
            for uid in before
            if before[uid] != after[uid]
        ]
        if entries:
            await self.store.audit.insert_many(entries)

    async def put(self, actor: Principal, user_id: str, data: dict) -> tuple[dict, bool]:
        """Change the fields sent (None clears one; absent ones stay); True if the user is new."""
        check_user_id(user_id)
        refused = self._refused(actor, data)
        if refused:
            raise Forbidden("Only the user or an admin may change a user's opt-outs", refused)
        sets_preferences = any(name in data for name in PREFERENCE_FIELDS)
        before = await self._preferences_of([user_id]) if sets_preferences else {}
        result = await self.store.users.update_one(*self._upsert(user_id, data), upsert=True)
        await self._audit_preferences(actor, before)
        return await self.get(user_id), result.upserted_id is not None

    async def get(self, user_id: str) -> dict:
        user = await self.store.users.find_one({"user_id": user_id})
        if user is None:
            raise NotFound(f"User {user_id!r} not found")
        return user

    async def delete(self, actor: Principal, user_id: str) -> None:
        """Forget the user's contacts. Their opt-outs stay unless an admin deletes (audited): deleting and
        re-creating a contact must not re-subscribe anyone."""
        if allowed("preferences:write", actor):
            before = await self._preferences_of([user_id])
            deleted = await self.store.users.delete_one({"user_id": user_id})
            if not deleted.deleted_count:
                raise NotFound(f"User {user_id!r} not found")
            await self._audit_preferences(actor, before)
            return
        cleared = await self.store.users.update_one(
            {"user_id": user_id},
            {"$set": {**dict.fromkeys((*CONTACT_FIELDS, "quiet_hours")), "updated_at": self.clock.now()}},
        )
        if not cleared.matched_count:
            raise NotFound(f"User {user_id!r} not found")
        user = await self.store.users.find_one({"user_id": user_id})
        if user and not (user.get("unsubscribed_all") or user.get("unsubscribed_channels")):
            # Guarded by updated_at: an opt-out arriving meanwhile keeps the document.
            await self.store.users.delete_one({"_id": user["_id"], "updated_at": user["updated_at"]})

    async def page(self, limit: int, cursor: str | None) -> Page:
        return await by_key(self.store.users, {}, "user_id", limit, cursor)

    async def bulk_upsert(self, actor: Principal, users: list[dict]) -> tuple[int, int]:
        """Create or change many users at once, each as `put` does (the last entry wins for a repeated id):
        (created, updated). Nothing is written when one entry is refused."""
        refused = {str(i): errors for i, user in enumerate(users) if (errors := self._refused(actor, user))}
        if refused:
            raise Forbidden("Only the user or an admin may change a user's opt-outs", {"users": refused})
        latest = {user["user_id"]: {k: v for k, v in user.items() if k != "user_id"} for user in users}
        changing = [uid for uid, fields in latest.items() if any(name in fields for name in PREFERENCE_FIELDS)]
        before = await self._preferences_of(changing) if changing else {}
        requests = [UpdateOne(*self._upsert(user_id, fields), upsert=True) for user_id, fields in latest.items()]
        result = await self.store.users.bulk_write(requests, ordered=False)
        await self._audit_preferences(actor, before)
        return result.upserted_count, result.matched_count

    async def preferences(self, user_id: str) -> dict:
        user = await self.store.users.find_one({"user_id": user_id}, dict.fromkeys(OWN_FIELDS, 1))
        return {**default_preferences(), **{k: v for k, v in (user or {}).items() if k in OWN_FIELDS}}

    async def set_preferences(self, user_id: str, preferences: dict) -> dict:
        check_user_id(user_id)
        changes = {k: preferences[k] for k in OWN_FIELDS if k in preferences}
        await self.store.users.update_one(*self._upsert(user_id, changes), upsert=True)
        return await self.preferences(user_id)

    async def unsubscribe(self, user_id: str, channel: str) -> dict:
        """Opt the user out of one channel, or of everything with channel ALL_CHANNELS."""
        if channel == ALL_CHANNELS:
            return await self.set_preferences(user_id, {"unsubscribed_all": True})
        check_user_id(user_id)
        query, update = self._upsert(user_id, {})
        # Added in place, not read and written back: two links clicked at once both hold.
        update["$addToSet"] = {"unsubscribed_channels": channel}
        await self.store.users.update_one(query, update, upsert=True)
        return await self.preferences(user_id)

    async def inbox(
        self,
        user_id: str,
        limit: int,
        cursor: str | None,
        channel: str | None = None,
        unread: bool | None = None,
        unseen: bool | None = None,
        archived: bool | None = None,
    ) -> Page:
        """The user's own deliveries, newest first, with the text they were (or will be) sent."""
        query: dict = {"user_id": user_id}
        if channel:
            query["channel"] = channel
        # Each filter asks whether an item bears a mark: unread=true keeps those without read_at.
        marked = {"read_at": _negated(unread), "seen_at": _negated(unseen), "archived_at": archived}
        for field, bears in marked.items():
            if bears is not None:
                query[field] = {"$ne": None} if bears else None
        # Windows ride `inbox` (user_id, _id); with a channel or read filter, one query over the user's own.
        page = await newest_first(self.store.deliveries, query, limit, cursor, windowed=len(query) == 1)
        notification_ids = list({d["notification_id"] for d in page.items})
        notifications = {n["_id"]: n async for n in self.store.notifications.find({"_id": {"$in": notification_ids}})}
        user = await self.store.users.find_one({"user_id": user_id})
        for delivery in page.items:
            notification = notifications.get(delivery["notification_id"], {})
            values = recipient_values(user_id, user, notification)
            delivery.update(
                title=render(notification.get("title", ""), values),
                text=render(notification.get("text", ""), values),
                is_express=notification.get("is_express", False),
            )
        return page


def _negated(flag: bool | None) -> bool | None:
    return None if flag is None else not flag
