"""Where to reach a user: contacts stored here first, then the external user service (cached), if configured."""

from __future__ import annotations

import json
import logging
import time

from tornado.httpclient import AsyncHTTPClient

from ..channels.base import PermanentFailure, TemporaryFailure
from ..channels.http import post_json
from ..settings import Settings
from ..store import Store

log = logging.getLogger(__name__)

CONTACT_FIELDS = ("email", "telegram_chat_id", "webhook_url", "display_name")
SERVICE_BATCH = 100


class Contacts:
    def __init__(self, store: Store, settings: Settings, http: AsyncHTTPClient):
        self.store = store
        self.settings = settings
        self.http = http
        self._cache: dict[str, tuple[float, dict]] = {}

    async def lookup(self, user_ids: list[str], field: str | None) -> tuple[dict[str, dict], set[str]]:
        """Users by id, and the ids whose contacts are unknown for now because the user service is down.

        A user with no `field` stored here is asked for from USERS_SERVICE_URL; the stored preferences
        (unsubscribes) always come from here.
        """
        users = {u["user_id"]: u async for u in self.store.users.find({"user_id": {"$in": user_ids}})}
        if not self.settings.users_service_url or field is None:
            return users, set()
        missing = [uid for uid in user_ids if not (users.get(uid) or {}).get(field)]
        now = time.monotonic()
        wanted = [uid for uid in missing if not (uid in self._cache and self._cache[uid][0] > now)]
        unavailable: set[str] = set()
        for start in range(0, len(wanted), SERVICE_BATCH):
            batch = wanted[start : start + SERVICE_BATCH]
            try:
                fetched = await self._fetch(batch)
            except (TemporaryFailure, PermanentFailure, ValueError) as exc:
                log.warning("user service unavailable for %d users: %s %s", len(batch), exc, getattr(exc, "detail", ""))
                unavailable.update(batch)
                continue
            expires = now + self.settings.users_cache_ttl
            for uid in batch:
                self._cache[uid] = (expires, fetched.get(uid, {}))
        for uid in missing:
            if uid in self._cache and uid not in unavailable:
                found = {k: v for k, v in self._cache[uid][1].items() if k in CONTACT_FIELDS and v}
                users[uid] = {**found, **{k: v for k, v in (users.get(uid) or {}).items() if v}}
        return users, unavailable

    async def _fetch(self, user_ids: list[str]) -> dict[str, dict]:
        headers = {"Authorization": self.settings.users_service_token} if self.settings.users_service_token else {}
        response = await post_json(
            self.http, self.settings.users_service_url, {"ids": user_ids}, headers, self.settings.http_timeout
        )
        payload = json.loads(response.body)
        return {str(user["user_id"]): user for user in payload.get("users", []) if "user_id" in user}
