"""Retention: how long history is kept, applied continuously a short write at a time.

The rule, per kind of record (settings RETENTION_*_DAYS; 0 keeps that kind forever):

- a delivery is deleted once it is older than RETENTION_DELIVERIES_DAYS *and* final (sent, failed or
  skipped); one still pending, queued, claimed or waiting for a retry is kept until it is final;
- a notification is deleted once it is older than RETENTION_NOTIFICATIONS_DAYS and the delivery walk below
  has passed it (so it never goes before its own deliveries are due: it lives as long as the longer of the
  two), unless a schedule still fires it or one of its deliveries is not final. Its remaining deliveries
  (recipients added later) are deleted first, then the notification: a delivery never outlives its
  notification, which the inbox and the delivery lists need;
- an audit entry is deleted once it is older than RETENTION_AUDIT_DAYS.

Records with an end of life (status events and their endpoints' attempts, inbox events, login failures, admin
sessions, schedule runs: `EXPIRING` in store.py) go once it passes, read through the index on their date and
deleted like the rest, with a budget of their own per run. Not through TTL indexes: SecantusDB expires
those by reading every document of the collection, once a minute, holding every other request meanwhile.

How: each kind is walked oldest first in short windows of `_id` (of `at` for the audit), from a position
kept in the `meta` collection, so that every read covers a bounded stretch of history (SecantusDB, the
embedded database, answers one request at a time and materializes a query's every match: one long delete
would hold back express deliveries). A window widens while it finds little and narrows where history is
dense; its final documents are deleted by id, RETENTION_BATCH at a time, each delete guarded by the final
status (a redrive racing it wins). What a window kept (not final yet) is looked at again on later runs.
Consequences to know: a notification's Idempotency-Key is forgotten with it, and a recipient added again
to a notification whose delivery was deleted is sent to again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from motor.motor_asyncio import AsyncIOMotorCollection

from ..clock import Clock
from ..domain import FINAL_STATUSES
from ..settings import Settings
from ..store import EXPIRING, Store
from .inbox import CHANGE_FIELDS, EXPIRED, INBOX, SENT, InboxLog, Tally, tally_of
from .paging import floor_id, seconds_of

log = logging.getLogger(__name__)

STATE_ID = "retention"
DAY = 86400.0
MIN_WIDTH = 1.0  # seconds of history in a window, at the narrowest...
MAX_WIDTH = {"deliveries": 30.0, "notifications": 6 * 3600.0, "audit": 6 * 3600.0}  # ...and the widest
WINDOWS_PER_RUN = 100  # empty windows cost a short read each; this bounds a run's reads
BATCHES_PER_RUN = 20  # deletes of RETENTION_BATCH documents
STRAGGLER_MARGIN = DAY  # a notification waits until the delivery walk is this far past it
ID_SKEW = 60.0  # deliveries are created after their notification; ids of other instances may be this early


def at_of(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass
class Walk:
    """Where one kind's walk stands: everything below `position` has been looked at; what was kept (not
    final yet) lies in [kept_from, position)."""

    position: float
    width: float = MIN_WIDTH
    kept_from: float | None = None

    def dump(self) -> dict:
        return {"position": self.position, "width": self.width, "kept_from": self.kept_from}

    @classmethod
    def load(cls, raw: dict | None) -> Walk | None:
        return cls(raw["position"], raw.get("width", MIN_WIDTH), raw.get("kept_from")) if raw else None


@dataclass
class Run:
    deleted: dict[str, int] = field(default_factory=lambda: {"deliveries": 0, "notifications": 0, "audit": 0})
    reads: int = 0
    batches: int = 0

    @property
    def spent(self) -> bool:
        return self.reads >= WINDOWS_PER_RUN or self.batches >= BATCHES_PER_RUN


class Retention:
    def __init__(self, store: Store, settings: Settings, clock: Clock, inbox: InboxLog | None = None):
        self.store = store
        self.settings = settings
        self.clock = clock
        self.inbox = inbox  # the users' inbox event logs, told of the items that go

    async def run(self) -> dict[str, int]:
        """One run: a bounded number of short reads and deletes per kind. Returns what was deleted."""
        now = self.clock.now().timestamp()
        state = await self.store.meta.find_one({"_id": STATE_ID}) or {}
        walks: dict[str, Walk] = {}
        run = Run()
        days = self.settings.retention_deliveries_days
        if days:
            walk = Walk.load(state.get("deliveries")) or await self._start(self.store.notifications, "_id", -ID_SKEW)
            walks["deliveries"] = walk
            first = Walk(walk.position + ID_SKEW)  # where the notifications' first walk starts
            await self._walk("deliveries", walk, now - days * DAY, run)
        days = self.settings.retention_notifications_days
        if days and "deliveries" in walks:  # deliveries kept forever keep their notifications
            walk = Walk.load(state.get("notifications")) or first
            walks["notifications"] = walk
            cutoff = min(now - days * DAY, walks["deliveries"].position - STRAGGLER_MARGIN)
            await self._walk("notifications", walk, cutoff, run)
        days = self.settings.retention_audit_days
        if days:
            walk = Walk.load(state.get("audit")) or await self._start(self.store.audit, "at")
            walks["audit"] = walk
            await self._walk("audit", walk, now - days * DAY, run)
        await self._expire(run)
        if walks:
            await self.store.meta.update_one(
                {"_id": STATE_ID}, {"$set": {name: walk.dump() for name, walk in walks.items()}}, upsert=True
            )
        if any(run.deleted.values()):
            log.info("retention: deleted %s", ", ".join(f"{n} {name}" for name, n in run.deleted.items() if n))
        return run.deleted

    async def _expire(self, run: Run) -> None:
        """Delete the records of EXPIRING whose end of life passed."""
        now = self.clock.now()
        size = self.settings.retention_batch
        budget = Run()  # its own reads and batches: a backlog of history never starves expiry
        for name, (date_field, seconds) in EXPIRING.items():
            collection = self.store.db[name]
            expired = {date_field: {"$lt": now - timedelta(seconds=seconds)}}
            while not budget.spent:
                budget.reads += 1
                found = await collection.find(expired, {"_id": 1}).limit(size).to_list(size)
                deleted, _ = await self._delete(collection, [doc["_id"] for doc in found], budget, expired)
                if deleted:
                    run.deleted[name] = run.deleted.get(name, 0) + deleted
                if len(found) < size:
                    break

    async def _start(self, collection: AsyncIOMotorCollection, key: str, offset: float = 0.0) -> Walk:
        """A first walk starts at the oldest document (once per database: this read is the whole index; the
        deliveries' walk starts from the oldest notification, the smaller collection, and so does theirs)."""
        first = await collection.find({}, {key: 1}).sort(key, 1).limit(1).to_list(1)
        if not first:
            return Walk(self.clock.now().timestamp() - DAY)
        value = first[0][key]
        seconds = seconds_of(value) if isinstance(value, ObjectId) else value.replace(tzinfo=UTC).timestamp()
        return Walk(max(seconds + offset, 0.0))

    # --- the walk ---

    def _kind(self, name: str) -> tuple[AsyncIOMotorCollection, str, Callable[[float], Any], dict]:
        """The collection, the key walked, a bound of it from seconds, and the fields a window reads."""
        if name == "audit":
            return self.store.audit, "at", at_of, {"at": 1}
        if name == "deliveries":
            return self.store.deliveries, "_id", floor_id, DELIVERY_FIELDS
        return self.store.notifications, "_id", floor_id, {"pending_schedule_since": 1}

    async def _walk(self, name: str, walk: Walk, cutoff: float, run: Run) -> None:
        collection, key, bound, fields = self._kind(name)
        if walk.kept_from is not None and not run.spent:
            # What earlier windows kept: all that is left of [kept_from, position).
            run.reads += 1
            kept_range = {key: {"$gte": bound(walk.kept_from), "$lt": bound(walk.position)}}
            found = await collection.find(kept_range, fields).to_list(None)
            kept = await self._settle(name, found, run)
            walk.kept_from = min(kept) if kept else None
        while walk.position < cutoff and not run.spent:
            end = min(walk.position + walk.width, cutoff)
            run.reads += 1
            window = {key: {"$gte": bound(walk.position), "$lt": bound(end)}}
            found = await collection.find(window, fields).to_list(None)
            kept = await self._settle(name, found, run)
            if kept:
                walk.kept_from = min([*kept, walk.kept_from] if walk.kept_from is not None else kept)
            walk.position = end
            # Aim at about one batch per window: wider where history is sparse, narrower where it is dense.
            target = self.settings.retention_batch
            if len(found) > target:
                walk.width = max(MIN_WIDTH, walk.width * target / len(found))
            elif len(found) < target / 2:
                walk.width = min(MAX_WIDTH[name], walk.width * 2)

    async def _settle(self, name: str, found: list[dict], run: Run) -> list[float]:
        """Delete what of `found` may go; return the positions (seconds) of what was kept (including what
        this run had no budget left to delete: the next one finds it again)."""
        if name == "notifications":
            ids = [n["_id"] for n in found if "pending_schedule_since" not in n]
            # One read per window (schedules have no index on it): the notifications a schedule still fires.
            fired = set(await self.store.schedules.distinct("notification_id", {"notification_id": {"$in": ids}}))
            kept = []
            for notification in found:
                kept_back = run.spent or "pending_schedule_since" in notification or notification["_id"] in fired
                if kept_back or not await self._delete_notification(notification, run):
                    kept.append(seconds_of(notification["_id"]))
            return kept
        if name == "deliveries":
            await self._expire_from_inboxes([d for d in found if d.get("status") in FINAL_STATUSES])
            gone = [d["_id"] for d in found if d.get("status") in FINAL_STATUSES]
            kept = [seconds_of(d["_id"]) for d in found if d.get("status") not in FINAL_STATUSES]
            guard: dict | None = {"status": {"$in": FINAL}}  # a redrive racing this delete wins
        else:
            gone, kept, guard = [d["_id"] for d in found], [], None
        collection = self.store.deliveries if name == "deliveries" else self.store.audit
        deleted, left = await self._delete(collection, gone, run, guard)
        run.deleted[name] += deleted
        key = "at" if name == "audit" else "_id"
        positions = {id(d["_id"]): d for d in found}
        for oid in left:
            value = positions[id(oid)].get(key, oid)
            kept.append(seconds_of(value) if isinstance(value, ObjectId) else value.replace(tzinfo=UTC).timestamp())
        return kept

    async def _expire_from_inboxes(self, deliveries: list[dict]) -> None:
        """Before in-app inbox items go, each one's `expired` event (its users' counts drop; an event written
        by a run that died before its delete is found by the next run, which writes none again)."""
        if self.inbox is None:
            return
        for item in deliveries:
            if item.get("channel") == INBOX and item.get("status") == SENT:  # arrived
                fields = {"item_id": str(item["_id"])}
                event_id = f"{item['_id']}:expired"
                await self.inbox.append(item["user_id"], EXPIRED, Tally() - tally_of(item), fields, event_id, False)

    async def _delete(
        self, collection: AsyncIOMotorCollection, ids: list, run: Run, guard: dict | None = None
    ) -> tuple[int, list]:
        """Delete `ids` RETENTION_BATCH at a time while the run has budget; (deleted, ids left or missed)."""
        deleted = 0
        missed: list = []
        size = self.settings.retention_batch
        for start in range(0, len(ids), size):
            if run.batches >= BATCHES_PER_RUN:
                return deleted, missed + ids[start:]
            run.batches += 1
            chunk = ids[start : start + size]
            result = await collection.delete_many({"_id": {"$in": chunk}, **(guard or {})})
            deleted += result.deleted_count
            if result.deleted_count < len(chunk):
                missed.extend(chunk)  # some changed meanwhile (a redrive): looked at again on a later run
        return deleted, missed

    async def _delete_notification(self, notification: dict, run: Run) -> bool:
        """Delete a notification no schedule fires after its remaining deliveries, if it may go; False if
        it is kept."""
        # Few are left by now (the delivery walk went past it): recipients added later, and what is not final.
        left = await self.store.deliveries.find({"notification_id": notification["_id"]}, DELIVERY_FIELDS).to_list(None)
        if any(d.get("status") not in FINAL_STATUSES for d in left):
            return False
        await self._expire_from_inboxes(left)
        final = {"status": {"$in": FINAL}}
        deleted, _ = await self._delete(self.store.deliveries, [d["_id"] for d in left], run, final)
        run.deleted["deliveries"] += deleted
        if await self.store.deliveries.find_one({"notification_id": notification["_id"]}, {"_id": 1}):
            return False  # one was added or redriven meanwhile, or the run's budget ran out
        run.batches += 1
        result = await self.store.notifications.delete_one({"_id": notification["_id"]})
        run.deleted["notifications"] += result.deleted_count
        # What belongs to it only: its counts document and any recipient list a background create left.
        await self.store.counts.delete_one({"_id": notification["_id"]})
        await self.store.recipient_chunks.delete_many({"notification_id": notification["_id"]})
        return True


FINAL = list(FINAL_STATUSES)
# What a window reads of a delivery: its status, and what an in-app inbox item's expiry event needs.
DELIVERY_FIELDS = {"status": 1, "channel": 1, "user_id": 1, **CHANGE_FIELDS}
