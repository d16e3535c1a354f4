"""Status events: one event per state change of a tracked delivery, with a stable id, and the caller's feed.

**Tracked.** A notification is tracked when its author has an event endpoint (services/event_endpoints.py)
at the time it is created: the notification and each of its deliveries carry `events: true`. Nothing else
pays for events.

**Recorded in the state write.** Every write that moves a tracked delivery to a status callers hear about
(sent, failed, skipped, deferred, expired, cancelled) or marks it read appends an entry to the delivery's
`event_log` (`id`, `type`, `at`, `reason`) and sets `event_at` to the database's clock (`$currentDate`) in
that same update (`recording`). A state change without its entry cannot exist, whichever process dies when.

**Published by the event log** (`EventLog.collect`, job "event log", on the instance holding its lease):
it reads the tracked deliveries whose `event_at` is at or past its cursor (the database's clock, so a write
retried for minutes is still ahead of it), oldest first, and inserts one `events` document per entry, keyed
`<delivery>:<entry>` (unique: an entry read twice is stored once). Each event's `_id` is a new ObjectId,
above every one before (the feed's order); its string is the event id callers see, in the feed, in the
webhook body and as `Idempotency-Key`. The cursor moves after the inserts; every EVENT_LATE_WINDOW seconds a
run also reads that far behind it again, for writes that became visible after later ones (concurrent writers
on MongoDB). `notification.completed` is inserted once a tracked notification has no delivery under way
and no state change left to publish (checked after each run that saw it change, and by a slower sweep of
the tracked notifications not yet completed, for what a crash interrupted).

**Kept** EVENTS_DAYS (TTL index), and listed by `EventLog.after`: a caller's events in id order.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from bson import ObjectId
from pymongo.errors import BulkWriteError

from ..access import Principal
from ..clock import Clock
from ..domain import DeliveryStatus
from ..store import Store
from .counts import UNDER_WAY, shown
from .fanout import in_progress
from .paging import FIRST_WINDOW, GROWTH, floor_id, seconds_of
from .visibility import visible_to

log = logging.getLogger(__name__)


class EventType(enum.StrEnum):
    DELIVERY_SENT = "delivery.sent"
    DELIVERY_FAILED = "delivery.failed"
    DELIVERY_SKIPPED = "delivery.skipped"
    DELIVERY_DEFERRED = "delivery.deferred"
    DELIVERY_EXPIRED = "delivery.expired"
    DELIVERY_CANCELLED = "delivery.cancelled"
    DELIVERY_READ = "delivery.read"
    NOTIFICATION_COMPLETED = "notification.completed"


EVENT_TYPES = tuple(event_type.value for event_type in EventType)
EVENT_OF_STATUS = {
    DeliveryStatus.SENT: EventType.DELIVERY_SENT,
    DeliveryStatus.FAILED: EventType.DELIVERY_FAILED,
    DeliveryStatus.SKIPPED: EventType.DELIVERY_SKIPPED,
    DeliveryStatus.DEFERRED: EventType.DELIVERY_DEFERRED,
    DeliveryStatus.EXPIRED: EventType.DELIVERY_EXPIRED,
    DeliveryStatus.CANCELLED: EventType.DELIVERY_CANCELLED,
}
STATE_ID = "events:log"
READ_LIMIT = 1000  # deliveries one read of the log takes
WINDOW = timedelta(seconds=60)  # of event_at, per read: a backlog costs a window's matches, not all of them
COMPLETION_SWEEP_EVERY = 40  # runs between two sweeps of the tracked notifications not yet completed
COMPLETION_SWEEP_LIMIT = 50
DELIVERY_FIELDS = {"event_log": 1, "event_at": 1, "notification_id": 1, "user_id": 1, "channel": 1, "status": 1}


def entry(event_type: str, at: datetime, reason: str | None = None) -> dict:
    """One entry of a delivery's event_log."""
    return {"id": str(ObjectId()), "type": str(event_type), "at": at, "reason": reason}


def recording(update: dict, event_type: str, at: datetime, reason: str | None = None) -> dict:
    """A delivery's `update` that also records the event its change makes, in the same write."""
    recorded = dict(update)
    recorded["$push"] = {**update.get("$push", {}), "event_log": entry(event_type, at, reason)}
    recorded["$currentDate"] = {**update.get("$currentDate", {}), "event_at": True}
    return recorded


def recording_in_pipeline(when: dict, event_type: str, at: datetime) -> dict:
    """The same, as `$set` fields of an update pipeline, applied only where `when` holds (and the delivery
    is tracked)."""
    tracked = {"$and": [when, {"$eq": ["$events", True]}]}
    appended = {"$concatArrays": [{"$ifNull": ["$event_log", []]}, [{"$literal": entry(event_type, at)}]]}
    return {
        "event_log": {"$cond": [tracked, appended, "$event_log"]},
        "event_at": {"$cond": [tracked, "$$NOW", "$event_at"]},
    }


def by_tracking(docs: Iterable[dict]) -> list[tuple[bool, list[dict]]]:
    """Deliveries (read with `events`) in two groups, those that record events (True) and the others;
    only groups that have some."""
    groups: dict[bool, list[dict]] = {True: [], False: []}
    for doc in docs:
        groups[doc.get("events") is True].append(doc)
    return [(tracked, group) for tracked, group in groups.items() if group]


def event_id_after(last: ObjectId | None) -> ObjectId:
    """A new ObjectId above `last`, whatever the clocks of the processes that made them."""
    fresh = ObjectId()
    if last is None or fresh > last:
        return fresh
    return ObjectId((int.from_bytes(last.binary, "big") + 1).to_bytes(12, "big"))


class EventLog:
    def __init__(self, store: Store, clock: Clock, keep_days: float, late_window: float, lease=None):
        self.store = store
        self.clock = clock
        self.keep = timedelta(days=keep_days)
        self.late_window = timedelta(seconds=late_window)
        self.lease = lease  # a services.leases.JobLease: one instance publishes at a time
        self._authors: dict[ObjectId, dict | None] = {}
        self._runs = 0
        self._last_late: datetime | None = None
        self._last_id: ObjectId | None = None  # the newest event id given out
        # Tracked notifications seen changing in this run, and those seen in the last one whose counts still
        # showed deliveries under way (the counts of a change are written a moment after it): their
        # completion is checked at the end of the run. A crash forgets them; the sweep does not.
        self._touched: set[ObjectId] = set()
        self._recheck: set[ObjectId] = set()
        self._swept_to: ObjectId | None = None

    # --- tracking ---

    async def tracks(self, author: Principal) -> bool:
        """Whether a notification `author` creates now is tracked (they have an event endpoint)."""
        found = await self.store.event_endpoints.find_one(
            {"author.kind": author.role.value, "author.id": author.id}, {"_id": 1}
        )
        return found is not None

    # --- publishing ---

    async def collect(self) -> int:
        """One run of the event log: publish the recorded entries past the cursor; how many events it stored."""
        if self.lease is not None and not await self.lease.take():
            return 0
        state = await self.store.meta.find_one({"_id": STATE_ID}) or {}
        cursor: datetime | None = state.get("cursor")
        if state.get("last_id") is not None and (self._last_id is None or state["last_id"] > self._last_id):
            self._last_id = state["last_id"]  # another instance published last
        if cursor is None:
            first = await self.store.event_endpoints.find({}, {"created_at": 1}).sort("created_at", 1).to_list(1)
            if not first:
                return 0
            cursor = first[0]["created_at"] - timedelta(seconds=1)
        now = self.clock.now()
        self._runs += 1
        stored = 0
        if self.late_window and (self._last_late is None or now - self._last_late >= self.late_window):
            self._last_late = now
            stored += await self._publish(await self._read(cursor - self.late_window, cursor, None))
        found = await self._read(cursor, cursor + WINDOW, READ_LIMIT)
        while not found and cursor + WINDOW < now - self.late_window:
            cursor = cursor + WINDOW  # a stretch with nothing recorded: on to the next one
            found = await self._read(cursor, cursor + WINDOW, READ_LIMIT)
        if found:
            stored += await self._publish(found)
            newest = found[-1]["event_at"]
            if len(found) >= READ_LIMIT and newest == found[0]["event_at"]:
                # A whole read at one instant: take every one of it before moving on.
                stored += await self._publish(await self._read(newest, newest, None))
            cursor = max(cursor, newest)
        stored += await self._check_completions(cursor)
        if self._runs % COMPLETION_SWEEP_EVERY == 0:
            stored += await self._sweep_completions(cursor)
        await self.store.meta.update_one(
            {"_id": STATE_ID}, {"$set": {"cursor": cursor, "last_id": self._last_id}}, upsert=True
        )
        return stored

    async def _read(self, start: datetime, end: datetime, limit: int | None) -> list[dict]:
        """Tracked deliveries changed at `start` and after, before `end` (at `end` too, if both are equal)."""
        bounds = {"$gte": start, "$lte": end} if start == end else {"$gte": start, "$lt": end}
        found = self.store.deliveries.find({"events": True, "event_at": bounds}, DELIVERY_FIELDS).sort("event_at", 1)
        if limit is not None:
            found = found.limit(limit)
        return await found.to_list(None)

    async def _publish(self, deliveries: list[dict]) -> int:
        """Store the events of these deliveries' entries that are not stored yet, then the completions they
        may have brought."""
        if not deliveries:
            return 0
        authors = await self._authors_of({d["notification_id"] for d in deliveries})
        candidates: dict[str, dict] = {}
        for delivery in deliveries:
            author = authors.get(delivery["notification_id"])
            if author is None:
                continue
            for logged in delivery.get("event_log") or []:
                key = f"{delivery['_id']}:{logged['id']}"
                candidates[key] = {
                    "key": key,
                    "author": author,
                    "type": logged["type"],
                    "at": logged["at"],
                    "delivery_id": delivery["_id"],
                    "notification_id": delivery["notification_id"],
                    "user_id": delivery["user_id"],
                    "channel": delivery["channel"],
                    "reason": logged.get("reason"),
                }
        stored = await self._store_new(list(candidates.values()))
        self._touched.update(d["notification_id"] for d in deliveries if d["notification_id"] in authors)
        return stored

    async def _check_completions(self, horizon: datetime) -> int:
        touched, self._touched = self._touched, set()
        rechecked, self._recheck = self._recheck, set()
        stored = 0
        for notification_id in touched | rechecked:
            completed = await self._complete_if_done(notification_id, horizon)
            if completed is None and notification_id in touched:
                self._recheck.add(notification_id)
            stored += completed or 0
        return stored

    async def _store_new(self, candidates: list[dict]) -> int:
        if not candidates:
            return 0
        known = {
            doc["key"]
            async for doc in self.store.events.find({"key": {"$in": [c["key"] for c in candidates]}}, {"key": 1})
        }
        now = self.clock.now()
        fresh = []
        for candidate in candidates:
            if candidate["key"] in known:
                continue
            self._last_id = event_id_after(self._last_id)
            fresh.append({"_id": self._last_id, **candidate, "created_at": now, "expires_at": now + self.keep})
        if not fresh:
            return 0
        try:
            await self.store.events.insert_many(fresh, ordered=False)
        except BulkWriteError as exc:  # another instance stored some (a lease that ran out): those stay theirs
            if any(error.get("code") != 11000 for error in exc.details.get("writeErrors", [])):
                raise
            return exc.details.get("nInserted", 0)
        return len(fresh)

    async def _authors_of(self, notification_ids: set[ObjectId]) -> dict[ObjectId, dict]:
        """The authors of tracked notifications (notifications never change author: cached)."""
        unknown = [i for i in notification_ids if i not in self._authors]
        if unknown:
            async for notification in self.store.notifications.find(
                {"_id": {"$in": unknown}}, {"author": 1, "events": 1}
            ):
                if notification.get("events"):
                    author = notification["author"]
                    self._authors[notification["_id"]] = {"kind": author["kind"], "id": author["id"]}
            if len(self._authors) > 100000:
                self._authors.clear()
        return {i: author for i in notification_ids if (author := self._authors.get(i)) is not None}

    async def _complete_if_done(self, notification_id: ObjectId, horizon: datetime) -> int | None:
        """`notification.completed`, once every delivery of the notification is final and its last change
        is published (none changed after `horizon`, the newest change read: the next run publishes it first).
        How many events it stored; None when its counts still show deliveries under way."""
        counts = await self.store.counts.find_one({"_id": notification_id})
        if counts is not None and any(n for status, n in shown(counts)[0].items() if status in UNDER_WAY):
            return None
        notification = await self.store.notifications.find_one(
            {"_id": notification_id, "events_open": True}, {"author": 1, "materialize_at": 1, "recipient_count": 1}
        )
        if notification is None or in_progress(notification):  # completed already, or not one that completes
            return 0
        deliveries = self.store.deliveries
        if await deliveries.find_one({"notification_id": notification_id, "status": {"$in": list(UNDER_WAY)}}):
            return 0  # its counts were off; the counts reconciler sets them right, and the sweep looks again
        if await deliveries.find_one(
            {"notification_id": notification_id, "events": True, "event_at": {"$gt": horizon}}, {"_id": 1}
        ):
            return 0
        statuses = await deliveries.aggregate(
            [{"$match": {"notification_id": notification_id}}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        ).to_list(None)
        author = notification["author"]
        completed = {
            "key": f"{notification_id}:completed",
            "author": {"kind": author["kind"], "id": author["id"]},
            "type": EventType.NOTIFICATION_COMPLETED.value,
            "at": self.clock.now(),
            "notification_id": notification_id,
            "counts": {group["_id"]: group["n"] for group in statuses},
        }
        stored = await self._store_new([completed])
        await self.store.notifications.update_one({"_id": notification_id}, {"$unset": {"events_open": ""}})
        return stored

    async def _sweep_completions(self, horizon: datetime) -> int:
        """Tracked notifications not yet completed, COMPLETION_SWEEP_LIMIT at a time round and round: those a
        crash left without their check, or whose counts were set right by the counts reconciler."""
        query: dict = {"events_open": True}
        if self._swept_to is not None:
            query["_id"] = {"$gt": self._swept_to}
        found = await self.store.notifications.find(query, {"_id": 1}).limit(COMPLETION_SWEEP_LIMIT).to_list(None)
        self._swept_to = found[-1]["_id"] if len(found) == COMPLETION_SWEEP_LIMIT else None
        stored = 0
        for notification in found:
            stored += await self._complete_if_done(notification["_id"], horizon) or 0
        return stored

    # --- reading ---

    async def after(
        self,
        principal: Principal | dict,
        after: ObjectId | None,
        types: Iterable[str] | None,
        limit: int,
        since: datetime | None = None,
    ) -> list[dict]:
        """Events after `after` (an event id; else from `since`, else from the oldest kept), oldest first: those
        `principal` may see (a Principal), or those of notifications by one author ({"kind", "id"})."""
        query: dict = {}
        if types:
            query["type"] = {"$in": list(types)}
        if isinstance(principal, Principal):
            query = visible_to(principal, query)
        else:
            query = {"author.kind": principal["kind"], "author.id": principal["id"], **query}
        now = self.clock.now()
        start = seconds_of(after) if after is not None else (since or now - self.keep).timestamp()
        return await oldest_first(self.store.events, query, limit, after, start, now.timestamp())


async def oldest_first(collection, query: dict, limit: int, after: ObjectId | None, start: float, now: float) -> list:
    """Documents with ids after `after` (or from the second `start`), oldest first, read in `_id` windows that
    widen while they find nothing, so that no read materializes more than a window's matches (the embedded
    database collects every match of a sorted query before it limits)."""
    items: list[dict] = []
    begin, width = (seconds_of(after) if after is not None else start), FIRST_WINDOW
    while len(items) < limit:
        end = begin + width
        window: dict = {"$gt": after} if after is not None else {"$gte": floor_id(begin)}
        last = end > now + FIRST_WINDOW  # the final window is open: ids from a clock ahead of ours are found too
        if not last:
            window["$lt"] = floor_id(end)
        wanted = limit - len(items)
        found = await collection.find({"_id": window, **query}).sort("_id", 1).limit(wanted).to_list(wanted)
        items.extend(found)
        if last:
            break
        after, begin = None, end
        width = FIRST_WINDOW if found else width * GROWTH
    return items
