"""What the admin dashboard shows, computed at most every few seconds (the database scans for it)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from ..clock import Clock
from ..store import Store

CACHE_SECONDS = 15.0


class DashboardStats:
    def __init__(self, store: Store, clock: Clock):
        self.store = store
        self.clock = clock
        self._cached: tuple[float, dict] | None = None

    async def deliveries(self) -> dict:
        """Deliveries created in the last hour and day, by status, and the latest failures."""
        if self._cached and self._cached[0] > time.monotonic():
            return self._cached[1]
        now = self.clock.now()
        result = {
            "as_of": now,
            "hour": await self._by_status(now - timedelta(hours=1)),
            "day": await self._by_status(now - timedelta(days=1)),
            "failures": await self._failures(now - timedelta(days=7)),
        }
        self._cached = (time.monotonic() + CACHE_SECONDS, result)
        return result

    async def _by_status(self, since: datetime) -> dict[str, int]:
        # ObjectIds start with their creation time: an _id range is a time range with an index.
        pipeline: list[dict[str, Any]] = [
            {"$match": {"_id": {"$gte": ObjectId.from_datetime(since)}}},
            {"$group": {"_id": "$status", "n": {"$sum": 1}}},
        ]
        return {group["_id"]: group["n"] async for group in self.store.deliveries.aggregate(pipeline)}

    async def _failures(self, since: datetime, limit: int = 10) -> list[dict]:
        query = {"_id": {"$gte": ObjectId.from_datetime(since)}, "status": "failed"}
        return await self.store.deliveries.find(query).sort("_id", -1).limit(limit).to_list(limit)

    def forget(self) -> None:
        self._cached = None
