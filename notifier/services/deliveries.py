"""The delivery state machine: every status change a delivery goes through, as guarded database writes.

pending -> queued      the broker confirmed the message (publisher)
pending|queued -> sending    one consumer claimed it (the guard makes a redelivered message harmless)
sending -> sent | skipped | failed | queued | pending    by the claimer only (the claim token guards it),
                       as services/outcomes.py decides
sending -> sent | failed | pending     journal replay and the lease reconciler (queue/recovery.py)
failed -> pending      an operator's redrive (Parked)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Protocol

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import UpdateOne

from ..clock import Clock
from ..domain import DeliveryStatus
from ..store import Store
from .outcomes import Decision, OutcomeKind, decide
from .paging import Page, newest_first

PENDING, QUEUED, SENDING, SENT, FAILED = (
    DeliveryStatus.PENDING,
    DeliveryStatus.QUEUED,
    DeliveryStatus.SENDING,
    DeliveryStatus.SENT,
    DeliveryStatus.FAILED,
)
WAITING = [PENDING, QUEUED]
LEASE_EXPIRED = "lease expired: the consumer stopped answering mid-send"
IN_CHUNK = 1000
MARK_CHUNK = 200  # the database answers one request at a time: keep background writes short
# What a queue message carries, so a consumer needs no read to start on it.
MESSAGE_FIELDS = {"_id": 1, "notification_id": 1, "user_id": 1, "channel": 1, "is_express": 1}


def _chunks(ids: list, size: int = IN_CHUNK) -> Iterable[list]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _by_token(entries: dict[str, str]) -> dict[str, list[ObjectId]]:
    grouped: dict[str, list[ObjectId]] = {}
    for delivery_id, token in entries.items():
        try:
            grouped.setdefault(token, []).append(ObjectId(delivery_id))
        except InvalidId:
            continue
    return grouped


class Deliveries:
    def __init__(self, store: Store):
        self.collection = store.deliveries

    async def mark_queued(self, ids: list[ObjectId], now: datetime, due: datetime | None = None) -> None:
        """The broker holds their messages; `due` is when they reach the work queue (after a delay tier)."""
        for chunk in _chunks(ids, MARK_CHUNK):
            await self.collection.update_many(
                {"_id": {"$in": chunk}, "status": {"$in": WAITING}},
                {
                    "$set": {
                        "status": QUEUED,
                        "is_sent_to_queue": True,
                        "queued_at": now,
                        "updated_at": now,
                        "available_at": due or now,
                    }
                },
            )

    async def lost_in_the_broker(self, now: datetime, after: float, limit: int) -> list[dict]:
        """Queued deliveries that should have reached a consumer long ago. Call it only when the work queues
        are empty: then their messages are gone (RabbitMQ's dead-lettering from delay tiers is at-most-once,
        so a broker stopping at the wrong moment can drop one)."""
        query = {"status": QUEUED, "available_at": {"$lt": now - timedelta(seconds=after)}}
        return await self.collection.find(query, MESSAGE_FIELDS).limit(limit).to_list(limit)

    async def due_for_publishing(self, now: datetime, grace: float, limit: int) -> list[dict]:
        """Deliveries stored (or due for a retry) more than `grace` seconds ago whose message the broker
        never confirmed: the outbox sweep publishes them again, tick after tick, until they go."""
        cutoff = now - timedelta(seconds=grace)
        # Exactly the partial "outbox" index's terms: with one more term (status) SecantusDB scans the whole
        # collection instead, every sweep. Only pending deliveries are ever unsent; the check below is a guard.
        query = {"is_sent_to_queue": False, "available_at": {"$lte": cutoff}}
        found = await self.collection.find(query, {**MESSAGE_FIELDS, "status": 1}).limit(limit).to_list(limit)
        return [doc for doc in found if doc.get("status") == PENDING]

    async def claim(self, ids: list[ObjectId], owner: str, now: datetime, lease: float, token: str) -> list[ObjectId]:
        """Atomically take the deliveries that are still waiting; returns the ids taken with `token`.

        Safe to repeat with the same token: a claim that was applied but whose answer was lost (the
        database went away mid-request) is found again by its token."""
        result = await self.collection.update_many(
            {"_id": {"$in": ids}, "status": {"$in": WAITING}},
            {
                "$set": {
                    "status": SENDING,
                    "claim": token,
                    "claimed_by": owner,
                    "lease_until": now + timedelta(seconds=lease),
                    "is_sent_to_queue": True,
                    "updated_at": now,
                },
                "$inc": {"attempts": 1},
            },
        )
        if result.modified_count == len(ids):
            return list(ids)
        claimed = await self.collection.find({"_id": {"$in": ids}, "claim": token}, {"_id": 1}).to_list(None)
        return [doc["_id"] for doc in claimed]

    async def counters(self, ids: list[ObjectId]) -> dict[ObjectId, dict]:
        """Attempts and deferrals of these deliveries (needed only when one has to be retried)."""
        docs = await self.collection.find({"_id": {"$in": ids}}, {"attempts": 1, "deferrals": 1}).to_list(None)
        return {doc["_id"]: doc for doc in docs}

    async def finish(self, token: str, changes: list[tuple[ObjectId, dict]]) -> None:
        """Write the results of one claim: per delivery the `update()` of its outcomes.Decision. The sent
        ones of a claim all write the same fields, so they go in one update_many.

        Guarded by the claim token, so a claim that was taken away (lease expired) is never overwritten.
        """
        sent = [(delivery_id, update) for delivery_id, update in changes if update["$set"]["status"] == SENT]
        others = [(delivery_id, update) for delivery_id, update in changes if update["$set"]["status"] != SENT]
        if sent:
            await self.collection.update_many(
                {"_id": {"$in": [i for i, _ in sent]}, "claim": token, "status": SENDING}, sent[0][1]
            )
        if others:
            await self.collection.bulk_write(
                [
                    UpdateOne({"_id": delivery_id, "claim": token, "status": SENDING}, update)
                    for delivery_id, update in others
                ],
                ordered=False,
            )

    async def recover(
        self, consumer_id: str, sent: dict[str, str], interrupted: dict[str, str], now: datetime
    ) -> tuple[int, int, list[dict]]:
        """Journal replay, after a consumer died: record what its journal says it sent, fail what it may
        have half-sent on a channel where a repeat would show, and release every other claim it held.
        Returns (sent, interrupted, released deliveries)."""
        recorded = await self._settle_journal(sent, decide(OutcomeKind.SENT, now))
        failed = await self._settle_journal(interrupted, decide(OutcomeKind.INTERRUPTED, now))
        held = await self.collection.find({"status": SENDING, "claimed_by": consumer_id}, MESSAGE_FIELDS).to_list(None)
        released = decide(OutcomeKind.RELEASED, now).update()
        for chunk in _chunks([doc["_id"] for doc in held]):
            await self.collection.update_many(
                {"_id": {"$in": chunk}, "status": SENDING, "claimed_by": consumer_id}, released
            )
        return recorded, failed, held

    async def _settle_journal(self, entries: dict[str, str], decision: Decision) -> int:
        settled = 0
        for token, ids in _by_token(entries).items():
            result = await self.collection.update_many(
                {"_id": {"$in": ids}, "claim": token, "status": SENDING}, decision.update()
            )
            settled += result.modified_count
        return settled

    async def release_expired(self, now: datetime, limit: int = 10000, keep_owners: Iterable[str] = ()) -> list[dict]:
        """Claims whose lease ran out (their consumer vanished without its pool noticing) go back to
        pending, except those of `keep_owners` (consumers known to be alive); returns them for publishing."""
        query: dict = {"status": SENDING, "lease_until": {"$lt": now}}
        owners = list(keep_owners)
        if owners:
            query["claimed_by"] = {"$nin": owners}
        expired = await self.collection.find(query, MESSAGE_FIELDS).limit(limit).to_list(limit)
        released = decide(OutcomeKind.RELEASED, now, error=LEASE_EXPIRED).update()
        for chunk in _chunks([doc["_id"] for doc in expired]):
            await self.collection.update_many(
                {"_id": {"$in": chunk}, "status": SENDING, "lease_until": {"$lt": now}}, released
            )
        return expired


class Outbox(Protocol):
    """Where redriven deliveries go to be published (queue/publisher.py)."""

    def submit(self, notification: dict, deliveries: list[dict], position: int = 0) -> None: ...


class Parked:
    """Deliveries that failed for good (their copies wait in the parking queue): page through them, send
    them again."""

    def __init__(self, store: Store, clock: Clock, outbox: Outbox):
        self.store = store
        self.clock = clock
        self.outbox = outbox

    @staticmethod
    def _query(reason: str | None = None, notification_id: ObjectId | None = None) -> dict:
        query: dict = {"status": FAILED}
        if reason:
            query["reason"] = reason
        if notification_id is not None:
            query["notification_id"] = notification_id
        return query

    async def page(
        self, limit: int, cursor: str | None, reason: str | None = None, notification_id: ObjectId | None = None
    ) -> Page:
        return await newest_first(self.store.deliveries, self._query(reason, notification_id), limit, cursor)

    async def redrive(
        self,
        actor: str,
        ids: list[ObjectId] | None = None,
        reason: str | None = None,
        notification_id: ObjectId | None = None,
    ) -> int:
        """Give failed deliveries (all, by reason/notification, or by id) a fresh set of attempts and publish
        them again; returns how many. Audited."""
        now = self.clock.now()
        query = self._query(reason, notification_id)
        if ids is not None:
            query["_id"] = {"$in": ids}
        chosen = await self.store.deliveries.find(query, MESSAGE_FIELDS).to_list(None)
        chosen_ids = [d["_id"] for d in chosen]
        for chunk in _chunks(chosen_ids, 200):
            await self.store.deliveries.update_many(
                {"_id": {"$in": chunk}, "status": FAILED},
                {
                    "$set": {
                        "status": PENDING,
                        "is_sent_to_queue": False,
                        "attempts": 0,
                        "reason": None,
                        "available_at": now,
                        "updated_at": now,
                        "claim": None,
                    }
                },
            )
        await self.store.audit.insert_one(
            {
                "at": now,
                "actor": actor,
                "action": "redrive",
                "count": len(chosen_ids),
                "filter": {
                    "ids": [str(i) for i in ids] if ids is not None else None,
                    "reason": reason,
                    "notification_id": str(notification_id) if notification_id else None,
                },
            }
        )
        if chosen:
            self.outbox.submit({}, chosen)
        return len(chosen)

    async def audit(self, limit: int = 20) -> list[dict]:
        return await self.store.audit.find({"action": "redrive"}).sort("at", -1).limit(limit).to_list(limit)
