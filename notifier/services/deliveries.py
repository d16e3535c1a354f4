"""The delivery state machine: every status change a delivery goes through, as guarded database writes.

pending -> queued      the broker confirmed the message (publisher)
pending|queued -> sending    one consumer claimed it (the guard makes a redelivered message harmless)
sending -> sent | skipped | failed    by the claimer only (the claim token guards it)
sending -> pending     a retry (attempts counted at the claim), or a lease that expired
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Iterable

from bson import ObjectId
from pymongo import UpdateOne

from ..store import Store

IN_CHUNK = 1000


def _chunks(ids: list, size: int = IN_CHUNK) -> Iterable[list]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def new_claim_token() -> str:
    return secrets.token_hex(8)


class Deliveries:
    def __init__(self, store: Store):
        self.collection = store.deliveries

    async def mark_queued(self, ids: list[ObjectId], now: datetime) -> None:
        for chunk in _chunks(ids):
            await self.collection.update_many(
                {"_id": {"$in": chunk}, "status": "pending"},
                {"$set": {"status": "queued", "is_sent_to_queue": True, "queued_at": now, "updated_at": now}})

    async def due_for_publishing(self, now: datetime, grace: float, limit: int) -> list[dict]:
        """Deliveries stored (or due for a retry) more than `grace` seconds ago whose message the broker
        never confirmed: the outbox sweep publishes them again, tick after tick, until they go."""
        cutoff = now - timedelta(seconds=grace)
        query = {"status": "pending", "is_sent_to_queue": False, "available_at": {"$lte": cutoff}}
        projection = {"_id": 1, "notification_id": 1, "is_express": 1}
        return await self.collection.find(query, projection).limit(limit).to_list(limit)

    async def claim(self, ids: list[ObjectId], owner: str, now: datetime, lease: float) -> tuple[str, list[dict]]:
        """Atomically take the deliveries that are still waiting; returns the claim token and the claimed ones."""
        token = new_claim_token()
        await self.collection.update_many(
            {"_id": {"$in": ids}, "status": {"$in": ["pending", "queued"]}},
            {"$set": {"status": "sending", "claim": token, "claimed_by": owner,
                      "lease_until": now + timedelta(seconds=lease), "is_sent_to_queue": True, "updated_at": now},
             "$inc": {"attempts": 1}})
        claimed = await self.collection.find({"_id": {"$in": ids}, "claim": token}).to_list(None)
        return token, claimed

    async def finish(self, token: str, now: datetime, sent: list[ObjectId],
                     outcomes: list[tuple[ObjectId, dict]]) -> None:
        """Write the results of one claim: `sent` ids, and per-delivery changes for the rest."""
        if sent:
            await self.collection.update_many(
                {"_id": {"$in": sent}, "claim": token},
                {"$set": {"status": "sent", "sent_at": now, "updated_at": now, "lease_until": None,
                          "last_error": None, "reason": None}})
        if outcomes:
            await self.collection.bulk_write(
                [UpdateOne({"_id": delivery_id, "claim": token},
                           {"$set": {**changes, "updated_at": now, "lease_until": None}})
                 for delivery_id, changes in outcomes], ordered=False)

    @staticmethod
    def skipped(reason: str) -> dict:
        return {"status": "skipped", "reason": reason}

    @staticmethod
    def failed(reason: str, error: str) -> dict:
        return {"status": "failed", "reason": reason, "last_error": error}

    @staticmethod
    def retry(error: str, at: datetime) -> dict:
        return {"status": "pending", "is_sent_to_queue": False, "last_error": error, "available_at": at}

    async def mark_retry_queued(self, ids: list[ObjectId], now: datetime) -> None:
        """The retry message is in a delay tier: the delivery waits there, queued."""
        await self.mark_queued(ids, now)

    async def release_expired(self, now: datetime, limit: int = 10000) -> int:
        """Claims whose lease ran out (a consumer vanished) go back to pending for the outbox sweep."""
        expired = await self.collection.find({"status": "sending", "lease_until": {"$lt": now}},
                                             {"_id": 1}).limit(limit).to_list(limit)
        ids = [doc["_id"] for doc in expired]
        for chunk in _chunks(ids):
            await self.collection.update_many(
                {"_id": {"$in": chunk}, "status": "sending", "lease_until": {"$lt": now}},
                {"$set": {"status": "pending", "is_sent_to_queue": False, "available_at": now, "claim": None,
                          "updated_at": now, "last_error": "lease expired: the consumer stopped mid-send"}})
        return len(ids)
