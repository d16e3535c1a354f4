"""The delivery state machine: every status change a delivery goes through, as guarded database writes.

pending -> queued      the broker confirmed the message (publisher)
scheduled|deferred -> queued   its send_at, or the end of its quiet hours, came and the publisher's scheduled
                       wake-up had its message confirmed (no write before: the wake-up finds it again until then)
pending|queued -> sending    one consumer claimed it (the guard makes a redelivered message harmless)
scheduled|deferred -> sending  the same, for a woken delivery whose message reached a consumer before its
                       queued mark (only once its instant came)
sending -> sent | skipped | failed | queued | pending    by the claimer only (the claim token guards it),
                       as services/outcomes.py decides
sending -> sent | failed | pending     journal replay and the lease reconciler (queue/recovery.py)
failed -> pending      an operator's redrive (Parked)
scheduled|pending|queued -> cancelled    the sender's cancel (Deliveries.cancel), guarded like the claim: exactly one
                       of the two takes a delivery; a claimed one is marked `cancel_requested` instead, so
                       that it is never claimed again (a claim that meets it cancels it) nor retried

Each of these writes notes what it moved in a services/counts.Tally, applied after it as one increment per
notification (a consumer's batch applies its claim's and its outcomes' moves together, queue/batch.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Protocol

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import UpdateOne

from ..clock import Clock
from ..domain import DeliveryStatus
from ..store import Store
from .counts import Counts, Tally
from .events import EventType, by_tracking, recording_in_pipeline
from .outcomes import Decision, OutcomeKind, decide
from .paging import Page, newest_first

SCHEDULED, DEFERRED, PENDING, QUEUED, SENDING, SENT, FAILED, CANCELLED = (
    DeliveryStatus.SCHEDULED,
    DeliveryStatus.DEFERRED,
    DeliveryStatus.PENDING,
    DeliveryStatus.QUEUED,
    DeliveryStatus.SENDING,
    DeliveryStatus.SENT,
    DeliveryStatus.FAILED,
    DeliveryStatus.CANCELLED,
)
WAITING = [PENDING, QUEUED]
ASLEEP = [SCHEDULED, DEFERRED]  # waiting for an instant, outside the outbox: the scheduled wake-up wakes them
CANCELLABLE = [*ASLEEP, *WAITING]
LEASE_EXPIRED = "lease expired: the consumer stopped answering mid-send"
IN_CHUNK = 1000
MARK_CHUNK = 50  # queued marks per write, with no express delivery about: background writes stay short
EXPRESS_NEARBY_SECONDS = 10.0  # after an express delivery, how long this process keeps its writes in WRITE_CHUNKs
CLAIM_ROUNDS = 3  # a claim's tries at deliveries whose status changed under it (Deliveries.claim)
# What a queue message carries, so a consumer needs no read to start on it.
MESSAGE_FIELDS = {"_id": 1, "notification_id": 1, "user_id": 1, "channel": 1, "is_express": 1}


def _chunks(ids: list, size: int = IN_CHUNK) -> Iterable[list]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _scopes(notification_id: ObjectId, user_ids: list[str] | None) -> list[dict]:
    """Queries for a notification's deliveries, or for those of some of its recipients (in chunks)."""
    if user_ids is None:
        return [{"notification_id": notification_id}]
    return [{"notification_id": notification_id, "user_id": {"$in": chunk}} for chunk in _chunks(user_ids)]


def _by_token(entries: dict[str, str]) -> dict[str, list[ObjectId]]:
    grouped: dict[str, list[ObjectId]] = {}
    for delivery_id, token in entries.items():
        try:
            grouped.setdefault(token, []).append(ObjectId(delivery_id))
        except InvalidId:
            continue
    return grouped


def _due(doc: dict, now: datetime) -> bool:
    """Whether an asleep delivery's instant came (its message may be out: the scheduled wake-up's)."""
    instant = doc.get("available_at")
    return instant is not None and instant <= now and doc.get("cancel_requested") is not True


def _by_notification(docs: Iterable[dict]) -> dict[ObjectId, list[dict]]:
    grouped: dict[ObjectId, list[dict]] = {}
    for doc in docs:
        grouped.setdefault(doc["notification_id"], []).append(doc)
    return grouped


class Deliveries:
    def __init__(self, store: Store, counts: Counts, write_chunk: int):
        """`write_chunk`: the most deliveries one write takes while express deliveries are about (WRITE_CHUNK)."""
        self.collection = store.deliveries
        self.counts = counts
        self.write_chunk = write_chunk
        self._express_until = 0.0

    def express_seen(self) -> None:
        """An express delivery is on its way: for EXPRESS_NEARBY_SECONDS this process's writes take at most
        write_chunk deliveries each. The embedded database holds a collection's lock for the whole of a write
        and an express claim queues for it; short writes cost regular throughput (about a fifth at 25 instead
        of 100), so they are kept for while express traffic flows."""
        self._express_until = time.monotonic() + EXPRESS_NEARBY_SECONDS

    def _piece(self, usual: int) -> int:
        """How many deliveries one write takes now: `usual`, or write_chunk while express deliveries are about."""
        return min(usual, self.write_chunk) if time.monotonic() < self._express_until else usual

    async def mark_queued(
        self,
        notifications: Mapping[ObjectId, ObjectId],
        now: datetime,
        due: datetime | None = None,
        source: DeliveryStatus = PENDING,
        woken_by: datetime | None = None,
    ) -> None:
        """The broker holds the messages of these deliveries (delivery id -> notification id), `source` ones
        (pending, or asleep for the scheduled wake-up); `due` is when they reach the work queue (after a delay
        tier). One update per notification and chunk, so that the counts know how many each moved.

        `woken_by`: the instant the wake-up read them at. One a consumer claimed meanwhile and deferred again
        (to a later end of quiet hours) is asleep until later, with no message: it is left alone."""
        guard: dict = {"status": source}
        if woken_by is not None:
            guard["available_at"] = {"$lte": woken_by}
        grouped: dict[ObjectId, list[ObjectId]] = {}
        for delivery_id, notification_id in notifications.items():
            grouped.setdefault(notification_id, []).append(delivery_id)
        for notification_id, members in grouped.items():
            for chunk in _chunks(members, self._piece(MARK_CHUNK)):
                tally = Tally()
                try:
                    result = await self.collection.update_many(
                        {"_id": {"$in": chunk}, **guard},
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
                    tally.move(notification_id, source, QUEUED, result.modified_count)
                except BaseException:
                    tally.touch(notification_id)  # applied or not: the reconciler looks
                    raise
                finally:
                    await self.counts.apply_safely(tally, now)

    async def due_to_wake(self, now: datetime, limit: int) -> list[dict]:
        """Scheduled and deferred deliveries whose instant came, with their status: the scheduled wake-up
        publishes them, then marks them queued (mark_queued). Nothing is written here: until that mark, the
        next wake-up finds them again (a wake-up that died in between loses nothing)."""
        due: list[dict] = []
        for status in ASLEEP:  # one query per partial index
            query = {"status": status, "available_at": {"$lte": now}}
            found = self.collection.find(query, {**MESSAGE_FIELDS, "status": 1}).limit(limit - len(due))
            due += await found.to_list(None)
            if len(due) >= limit:
                break
        return due

    async def refresh_queued(self, ids: list[ObjectId], now: datetime) -> None:
        """Queued deliveries whose messages were published again (the lost-message finder): due from now."""
        for chunk in _chunks(ids, self._piece(MARK_CHUNK)):
            await self.collection.update_many(
                {"_id": {"$in": chunk}, "status": QUEUED}, {"$set": {"available_at": now, "updated_at": now}}
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
        """Take the deliveries that are still waiting, with one conditional update (per write_chunk of them
        while express deliveries are about; each delivery is taken atomically, whoever races for it); returns
        the ids taken with `token`.

        Safe to repeat with the same token: a claim that was applied but whose answer was lost (the
        database went away mid-request) is found again by its token."""
        taken: list[ObjectId] = []
        for chunk in _chunks(ids, self._piece(IN_CHUNK)):
            taken += await self._claim_chunk(chunk, owner, now, lease, token)
        return taken

    async def _claim_chunk(
        self, ids: list[ObjectId], owner: str, now: datetime, lease: float, token: str
    ) -> list[ObjectId]:
        update = {
            "$set": {
                "status": SENDING,
                "claim": token,
                "claimed_by": owner,
                "lease_until": now + timedelta(seconds=lease),
                "is_sent_to_queue": True,
                "updated_at": now,
            },
            "$inc": {"attempts": 1},
        }
        taken: list[ObjectId] = []
        left = list(ids)
        for _ in range(CLAIM_ROUNDS):
            result = await self.collection.update_many(
                {"_id": {"$in": left}, "status": {"$in": WAITING}, "cancel_requested": {"$ne": True}}, update
            )
            if result.modified_count == len(left):
                return taken + left
            # One read for all three: what this token took, what a cancel left for the claim to end, and what
            # was woken but not yet marked queued.
            found = await self.collection.find(
                {"_id": {"$in": left}},
                {"notification_id": 1, "status": 1, "claim": 1, "cancel_requested": 1, "available_at": 1, "events": 1},
            ).to_list(None)
            await self._cancel_requested(
                [doc for doc in found if doc.get("cancel_requested") is True and doc["status"] in CANCELLABLE], now
            )
            mine = {doc["_id"] for doc in found if doc.get("claim") == token}
            woken = [doc for doc in found if doc["status"] in ASLEEP and _due(doc, now)]
            if woken:
                mine.update(await self._claim_woken(woken, update, now, token))
            taken += [doc["_id"] for doc in found if doc["_id"] in mine]
            # A woken delivery marked queued between this round's writes and its read is still to be taken:
            # another round for what is still claimable (the mark comes once, so two rounds suffice).
            left = [
                doc["_id"]
                for doc in found
                if doc["_id"] not in mine
                and doc.get("cancel_requested") is not True
                and (doc["status"] in WAITING or doc["status"] in ASLEEP and _due(doc, now))
            ]
            if not left:
                break
        return taken

    async def _claim_woken(self, woken: list[dict], update: dict, now: datetime, token: str) -> list[ObjectId]:
        """The claim of woken deliveries whose message came before their queued mark (read with their
        notification_id and status): counted as queued first, so that the batch's claim takes them from there."""
        taken: list[ObjectId] = []
        for notification_id, docs in _by_notification(woken).items():
            for status in ASLEEP:
                ids = [doc["_id"] for doc in docs if doc["status"] == status]
                if not ids:
                    continue
                tally = Tally()
                try:
                    result = await self.collection.update_many(
                        {
                            "_id": {"$in": ids},
                            "status": status,
                            "available_at": {"$lte": now},
                            "cancel_requested": {"$ne": True},
                        },
                        update,
                    )
                    tally.move(notification_id, status, QUEUED, result.modified_count)
                except BaseException:
                    tally.touch(notification_id)
                    raise
                finally:
                    await self.counts.apply_safely(tally, now)
                if result.modified_count == len(ids):
                    taken += ids
                elif result.modified_count:  # a cancel came first for some
                    mine = self.collection.find({"_id": {"$in": ids}, "claim": token}, {"_id": 1})
                    taken += [doc["_id"] for doc in await mine.to_list(None)]
        return taken

    async def _cancel_requested(self, found: list[dict], now: datetime) -> None:
        """Deliveries cancelled while a consumer held them, then released or left unsent (read with their
        notification_id and status): their message came back, and they end here as cancelled."""
        if not found:
            return
        cancelled = decide(OutcomeKind.CANCELLED, now)
        tally = Tally()
        try:
            for source in CANCELLABLE:
                for tracked, docs in by_tracking(doc for doc in found if doc["status"] == source):
                    guard = {"status": source, "cancel_requested": True}
                    update = cancelled.update(tracked=tracked)
                    await self._move_counted(docs, guard, update, source, cancelled, tally)
        finally:
            await self.counts.apply_safely(tally, now)

    async def cancel(self, notification_id: ObjectId, user_ids: list[str] | None, now: datetime) -> int:
        """Cancel the notification's waiting deliveries (of `user_ids` only, if given): the same kind of guarded
        write as the claim, so each is either claimed or cancelled, never both. Claimed ones are marked
        `cancel_requested`: their current attempt ends as the consumer finds, and they are never tried again.
        Returns how many were cancelled now.

        One update decides per delivery from the status it has when the update reaches it, so no delivery
        slips between two writes (one released by a dead consumer's journal replay meanwhile, say)."""
        cancel_id = ObjectId()
        waiting: dict = {"$in": ["$status", CANCELLABLE]}
        cancelled = decide(OutcomeKind.CANCELLED, now).update()["$set"]
        fields: dict[str, dict] = {
            name: {"$cond": [waiting, {"$literal": value}, f"${name}"]} for name, value in cancelled.items()
        }
        fields["cancel_id"] = {"$cond": [waiting, cancel_id, "$cancel_id"]}
        fields["cancelled_from"] = {"$cond": [waiting, "$status", "$cancelled_from"]}  # for the counts
        fields["cancel_requested"] = {"$cond": [{"$eq": ["$status", SENDING]}, True, "$cancel_requested"]}
        fields.update(recording_in_pipeline(waiting, EventType.DELIVERY_CANCELLED, now))
        tally = Tally()
        count = 0
        try:
            for scope in _scopes(notification_id, user_ids):
                await self.collection.update_many(
                    {**scope, "status": {"$in": [*CANCELLABLE, SENDING]}}, [{"$set": fields}]
                )
                sources = self.collection.aggregate(
                    [
                        {"$match": {**scope, "cancel_id": cancel_id}},
                        {"$group": {"_id": "$cancelled_from", "n": {"$sum": 1}}},
                    ]
                )
                async for source in sources:
                    tally.move(notification_id, source["_id"], CANCELLED, source["n"])
                    count += source["n"]
        except BaseException:
            tally.touch(notification_id)  # what was written is the reconciler's to count
            raise
        finally:
            await self.counts.apply_safely(tally, now)
        return count

    async def statuses(self, notification_id: ObjectId, user_ids: list[str] | None = None) -> dict[str, int]:
        """The notification's deliveries (of `user_ids` only, if given) counted by status."""
        if user_ids is None:
            return (await self.counts.exact(notification_id))[0]
        counted: dict[str, int] = {}
        for scope in _scopes(notification_id, user_ids):
            groups = self.collection.aggregate([{"$match": scope}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}])
            async for group in groups:
                counted[group["_id"]] = counted.get(group["_id"], 0) + group["n"]
        return counted

    async def counters(self, ids: list[ObjectId]) -> dict[ObjectId, dict]:
        """Attempts and deferrals of these deliveries, and whether they were cancelled while being sent
        (needed only when one has to be retried)."""
        docs = await self.collection.find(
            {"_id": {"$in": ids}}, {"attempts": 1, "deferrals": 1, "cancel_requested": 1}
        ).to_list(None)
        return {doc["_id"]: doc for doc in docs}

    async def finish(self, token: str, changes: list[tuple[ObjectId, dict]]) -> list[tuple[ObjectId, str, str | None]]:
        """Write the results of one claim: per delivery the `update()` of its outcomes.Decision. The sent
        ones of a claim all write the same fields, so they go in one update_many (per write_chunk while
        express deliveries are about, see express_seen). Returns (id, status, reason) of the deliveries whose
        outcome is written, for the counts.

        Guarded by the claim token, so a claim that was taken away (lease expired) is never overwritten.
        Safe to repeat: a repeat after a lost answer finds what the first attempt wrote by its token.
        """
        # The sent ones of a claim write the same update, tracked ones (services/events.py) another.
        sent: dict[bool, list[tuple[ObjectId, dict]]] = {}
        others = []
        for delivery_id, update in changes:
            if update["$set"]["status"] == SENT:
                sent.setdefault("$push" in update, []).append((delivery_id, update))
            else:
                others.append((delivery_id, update))
        modified = 0
        for group in sent.values():
            for chunk in _chunks(group, self._piece(IN_CHUNK)):
                result = await self.collection.update_many(
                    {"_id": {"$in": [i for i, _ in chunk]}, "claim": token, "status": SENDING}, chunk[0][1]
                )
                modified += result.modified_count
        for chunk in _chunks(others, self._piece(IN_CHUNK)):
            written = await self.collection.bulk_write(
                [
                    UpdateOne({"_id": delivery_id, "claim": token, "status": SENDING}, update)
                    for delivery_id, update in chunk
                ],
                ordered=False,
            )
            modified += written.modified_count
        if modified == len(changes):
            return [(i, update["$set"]["status"], update["$set"].get("reason")) for i, update in changes]
        # Some claims were taken away, or an earlier attempt wrote them: what carries our token and is no
        # longer being sent is what this claim wrote.
        found = await self.collection.find(
            {"_id": {"$in": [i for i, _ in changes]}, "claim": token}, {"status": 1, "reason": 1}
        ).to_list(None)
        return [(doc["_id"], doc["status"], doc.get("reason")) for doc in found if doc["status"] != SENDING]

    async def recover(
        self, consumer_id: str, sent: dict[str, str], interrupted: dict[str, str], now: datetime
    ) -> tuple[int, int, list[dict]]:
        """Journal replay, after a consumer died: record what its journal says it sent, fail what it may
        have half-sent on a channel where a repeat would show, and release every other claim it held.
        Returns (sent, interrupted, released deliveries)."""
        tally = Tally()
        try:
            recorded = await self._settle_journal(sent, decide(OutcomeKind.SENT, now), tally)
            failed = await self._settle_journal(interrupted, decide(OutcomeKind.INTERRUPTED, now), tally)
            held = await self.collection.find({"status": SENDING, "claimed_by": consumer_id}, MESSAGE_FIELDS).to_list(
                None
            )
            released = decide(OutcomeKind.RELEASED, now)
            for chunk in _chunks(held):
                await self._move_counted(
                    chunk, {"status": SENDING, "claimed_by": consumer_id}, released.update(), SENDING, released, tally
                )
        finally:
            await self.counts.apply_safely(tally, now)
        return recorded, failed, held

    async def _move_counted(
        self,
        docs: list[dict],
        guard: dict,
        update: dict,
        source: str,
        decision: Decision,
        tally: Tally,
        source_reason: bool = False,
    ) -> int:
        """One guarded update_many of `docs` (read with their notification_id), noted in `tally`: exactly
        when every one of them moved, as something for the reconciler to look at when some did not."""
        result = await self.collection.update_many({"_id": {"$in": [doc["_id"] for doc in docs]}, **guard}, update)
        if result.modified_count == len(docs):
            for doc in docs:
                tally.move(
                    doc["notification_id"],
                    source,
                    decision.status,
                    source_reason=doc.get("reason") if source_reason else None,
                    target_reason=decision.fields.get("reason"),
                )
        else:
            for notification_id in _by_notification(docs):
                tally.touch(notification_id)
        return result.modified_count

    async def _settle_journal(self, entries: dict[str, str], decision: Decision, tally: Tally) -> int:
        settled = 0
        for token, ids in _by_token(entries).items():
            guard = {"claim": token, "status": SENDING}
            found = self.collection.find({"_id": {"$in": ids}, **guard}, {"notification_id": 1, "events": 1})
            for tracked, docs in by_tracking(await found.to_list(None)):
                update = decision.update(tracked=tracked)
                settled += await self._move_counted(docs, guard, update, SENDING, decision, tally)
        return settled

    async def release_expired(
        self, now: datetime, limit: int = 10000, keep_owners: Iterable[str] = (), abandoned_by: Iterable[str] = ()
    ) -> list[dict]:
        """Claims whose lease ran out (their consumer vanished without its pool noticing), except those of
        `keep_owners` (consumers known to be alive), and every claim of `abandoned_by` (dead consumers whose
        journal was replayed), go back to pending; returns them for publishing."""
        expired: dict = {"lease_until": {"$lt": now}}
        owners = list(keep_owners)
        if owners:
            expired["claimed_by"] = {"$nin": owners}
        dead = list(abandoned_by)
        guard = (
            {"status": SENDING, "$or": [expired, {"claimed_by": {"$in": dead}}]}
            if dead
            else {"status": SENDING, **expired}
        )
        found = await self.collection.find(guard, MESSAGE_FIELDS).limit(limit).to_list(limit)
        released = decide(OutcomeKind.RELEASED, now, error=LEASE_EXPIRED)
        tally = Tally()
        try:
            for chunk in _chunks(found):
                await self._move_counted(chunk, guard, released.update(), SENDING, released, tally)
        finally:
            await self.counts.apply_safely(tally, now)
        return found


class Outbox(Protocol):
    """Where redriven deliveries go to be published (queue/publisher.py)."""

    def submit(self, notification: dict, deliveries: list[dict], position: int = 0) -> None: ...


class Parked:
    """Deliveries that failed for good (their copies wait in the parking queue): page through them, send
    them again."""

    def __init__(self, store: Store, clock: Clock, outbox: Outbox, deliveries: Deliveries):
        self.store = store
        self.clock = clock
        self.outbox = outbox
        self.deliveries = deliveries

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
        chosen = await self.store.deliveries.find(query, {**MESSAGE_FIELDS, "reason": 1}).to_list(None)
        chosen_ids = [d["_id"] for d in chosen]
        again = Decision(
            DeliveryStatus.PENDING,
            now,
            {"is_sent_to_queue": False, "attempts": 0, "reason": None, "available_at": now, "claim": None},
        )
        update = {"$set": {"status": PENDING, **again.fields, "updated_at": now}}
        tally = Tally()
        try:
            for chunk in _chunks(chosen, 200):
                await self.deliveries._move_counted(
                    chunk, {"status": FAILED}, update, FAILED, again, tally, source_reason=True
                )
        finally:
            await self.deliveries.counts.apply_safely(tally, now)
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
