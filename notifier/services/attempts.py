"""Counters of password attempts per account and per address, shared by every instance through MongoDB."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from ..clock import Clock
from ..store import Store


@dataclass(frozen=True)
class Reservation:
    window: int
    counts: dict[str, int]
    retry_after: int  # seconds until the window ends


class AttemptStore:
    """Fixed windows of `window` seconds: one document per key and window, counted with one atomic $inc,
    so concurrent attempts each see their own count. Old windows expire through retention (EXPIRING in store.py)."""

    def __init__(self, store: Store, clock: Clock, window: float):
        self.collection = store.login_failures
        self.clock = clock
        self.window = window

    async def reserve(self, keys: list[str]) -> Reservation:
        now = self.clock.now()
        window = int(now.timestamp() // self.window)
        counts = await asyncio.gather(*(self._increment(f"{key}@{window}", now) for key in keys))
        retry_after = int((window + 1) * self.window - now.timestamp()) + 1
        return Reservation(window, dict(zip(keys, counts, strict=True)), retry_after)

    async def _increment(self, document_id: str, now) -> int:
        # The counting is always a plain $inc on an existing document: upserts racing to create it are
        # not counted exactly by every server (SecantusDB can answer None to the loser after counting it).
        for _ in range(2):
            entry = await self.collection.find_one_and_update(
                {"_id": document_id}, {"$inc": {"count": 1}}, return_document=ReturnDocument.AFTER
            )
            if entry is not None:
                return entry["count"]
            try:
                await self.collection.update_one(
                    {"_id": document_id}, {"$setOnInsert": {"count": 0, "since": now}}, upsert=True
                )
            except DuplicateKeyError:  # another first attempt created it meanwhile
                pass
        raise RuntimeError(f"attempt counter {document_id} vanished twice")

    async def succeeded(self, reservation: Reservation, reset: str, release: list[str]) -> None:
        """`reset` starts counting again; each of `release` gives its reserved attempt back."""
        if reset:
            await self.collection.delete_one({"_id": f"{reset}@{reservation.window}"})
        if release:
            await self.collection.update_many(
                {"_id": {"$in": [f"{key}@{reservation.window}" for key in release]}}, {"$inc": {"count": -1}}
            )
