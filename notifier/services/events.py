"""Status events: one event per state change of a tracked delivery, with a stable id, and the caller's feed.

**Tracked.** A notification is tracked when its author has an event endpoint (services/event_endpoints.py)
at the time it is created: the notification and each of its deliveries carry `events: true`. Nothing else
pays for events.

**Recorded in the state write.** Every write that moves a tracked delivery to a status callers hear about
(sent, failed, skipped, deferred, expired, cancelled) or marks it read appends an entry to the delivery's
`event_log` (`id`, `type`, `at`, `reason`) and sets `event_at` to the database's clock (`$currentDate`) in
that same update (`recording`). A state change without its entry cannot exist, whichever process dies when.

**Published by the event log** (`EventLog.collect`, job "event log", on the instance holding its lease):
it reads the tracked deliveries past its cursor in (`event_at`, `_id`) order, READ_LIMIT at a time (the
database's clock, so a write retried for minutes is still ahead of it), and inserts one `events` document
per entry, keyed `<delivery>:<entry>` (unique: an entry read twice is stored once). Each event's `_id` is a
new ObjectId, above every one before (the feed's order); its string is the event id callers see, in the
feed, in the webhook body and as `Idempotency-Key`. The cursor moves after the inserts. A second cursor
reads everything again EVENT_LATE_WINDOW seconds later, for writes that became visible after later ones
(concurrent writers on MongoDB): it reads each delivery's last entry, and the whole log only of deliveries
whose last entry this process did not publish (after a restart, or on another instance: what was published
is refused by the key). `notification.completed` is inserted once a tracked notification has no
delivery under way and no state change left to publish (checked in each run that is caught up, for the
notifications it saw change, and by a slower sweep of the tracked notifications not yet completed, for what
a crash interrupted).

**Kept** EVENTS_DAYS (then expired by retention), and listed by `EventLog.after`: a caller's events in id order.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import OrderedDict
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
from .paging import FIRST_WINDOW, GROWTH, WINDOWS, floor_id, seconds_of
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
FIRST_ID = ObjectId(bytes(12))  # below every id: (instant, FIRST_ID) is before every change at that instant
Position = tuple[datetime, ObjectId]  # where a read of the tracked deliveries stands: (event_at, _id) read last
READ_LIMIT = 1000  # deliveries one read of the log takes
WINDOW = timedelta(seconds=60)  # of event_at, per read: a backlog costs a window's matches, not all of them
TRAILING_EVERY = 8  # runs between two reads of the trailing cursor (READ_LIMIT each: it keeps up)
COMPLETION_SWEEP_EVERY = 40  # runs between two sweeps of the tracked notifications not yet completed
COMPLETION_SWEEP_LIMIT = 50
DELIVERY_FIELDS = {"event_log": 1, "event_at": 1, "notification_id": 1, "user_id": 1, "channel": 1, "status": 1}
LAST_ENTRY_FIELDS = {"event_at": 1, "event_log": {"$slice": -1}}  # the trailing cursor's
SEEN_MOST = 200_000  # deliveries whose published change is remembered for the trailing cursor


def _position(stored: list | tuple) -> Position:
    return stored[0], stored[1]


def _persisted(stored: Position, reached: Position, read_some: bool) -> Position:
    """What a run writes of the position it reached: past an idle stretch only once it is a WINDOW long (a
    write every run would cost the database more than the run; read again, the stretch is still empty)."""
    return reached if read_some or reached[0] - stored[0] >= WINDOW else stored


def _last_entry(delivery: dict) -> str:
    log = delivery.get("event_log") or [{}]
    return log[-1].get("id", "")


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
        self._last_id: ObjectId | None = None  # the newest event id given out
        # Tracked notifications seen changing in this run, and those seen in the last one whose counts still
        # showed deliveries under way (the counts of a change are written a moment after it): their
        # completion is checked at the end of the run. A crash forgets them; the sweep does not.
        self._touched: set[ObjectId] = set()
        self._recheck: set[ObjectId] = set()
        self._swept_to: ObjectId | None = None
        # Per delivery, the last entry of its log this process published, and when: the trailing cursor
        # skips deliveries whose last entry it is (storing it again, refused, costs the database a write).
        self._seen: OrderedDict[ObjectId, tuple[str, float]] = OrderedDict()

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
        if state.get("last_id") is not None and (self._last_id is None or state["last_id"] > self._last_id):
            self._last_id = state["last_id"]  # another instance published last
        if state.get("cursor") is None:
            first = await self.store.event_endpoints.find({}, {"created_at": 1}).sort("created_at", 1).to_list(1)
            if not first:
                return 0
            state["cursor"] = state["late"] = (first[0]["created_at"] - timedelta(seconds=1), FIRST_ID)
        position, late = _position(state["cursor"]), _position(state.get("late") or state["cursor"])
        now = await self.store.server_time()  # the clock event_at is written with
        self._runs += 1
        found, position = await self._read_after(position, now)
        stored = await self._publish(found)
        trailing: list[dict] = []
        if self.late_window and self._runs % TRAILING_EVERY == 0:
            # Again, late_window behind: what became visible after later writes (concurrent writers).
            trailing, late = await self._read_after(late, min(position[0], now - self.late_window), LAST_ENTRY_FIELDS)
            stored += await self._publish(await self._unseen(trailing))
        if len(found) < READ_LIMIT:  # caught up: what changed is published, completions can be told
            stored += await self._check_completions(position)
            if self._runs % COMPLETION_SWEEP_EVERY == 0:
                stored += await self._sweep_completions(position)
        moved = {
            "cursor": list(_persisted(_position(state["cursor"]), position, bool(found))),
            "late": list(_persisted(_position(state.get("late") or state["cursor"]), late, bool(trailing))),
            "last_id": self._last_id,
        }
        if any(state.get(name) != value for name, value in moved.items()):
            await self.store.meta.update_one({"_id": STATE_ID}, {"$set": moved}, upsert=True)
        return stored

    async def _read_after(
        self, position: Position, until: datetime, fields: dict = DELIVERY_FIELDS
    ) -> tuple[list[dict], Position]:
        """Up to READ_LIMIT tracked deliveries after `position` in (event_at, _id) order, changed before
        `until`, and the position after them (the whole stretch up to `until` when there were none)."""
        instant, last = position
        deliveries = self.store.deliveries
        # The rest of the instant read last, filtered here: with an `_id` term SecantusDB leaves the index.
        at_instant = deliveries.find({"event_at": instant}, fields).sort("_id", 1)
        found = [doc for doc in await at_instant.to_list(None) if doc["_id"] > last][:READ_LIMIT]
        start, inclusive = instant, False  # the first window starts after `instant`, the others at their start
        while len(found) < READ_LIMIT and start < until:
            end = min(start + WINDOW, until)
            bounds = {"$gte" if inclusive else "$gt": start, "$lt": end}
            found += await (
                deliveries.find({"event_at": bounds}, fields)
                .sort([("event_at", 1), ("_id", 1)])
                .limit(READ_LIMIT - len(found))
                .to_list(None)
            )
            start, inclusive = end, True
        if found:
            return found, (found[-1]["event_at"], found[-1]["_id"])
        if inclusive:  # every window read up to `until`, none with a change: the position is past them
            return found, (start, FIRST_ID)
        return found, position

    async def _unseen(self, changes: list[dict]) -> list[dict]:
        """The deliveries of these changes (read with LAST_ENTRY_FIELDS) whose last entry this process has
        not published, read whole."""
        ids = [change["_id"] for change in changes if self._seen.get(change["_id"], ("", 0))[0] != _last_entry(change)]
        if not ids:
            return []
        found = self.store.deliveries.find({"_id": {"$in": ids}}, DELIVERY_FIELDS)
        return await found.to_list(None)

    def _remember(self, deliveries: list[dict]) -> None:
        now = time.monotonic()
        for delivery in deliveries:
            self._seen[delivery["_id"]] = (_last_entry(delivery), now)
            self._seen.move_to_end(delivery["_id"])
        keep = self.late_window.total_seconds() * 2 + WINDOW.total_seconds()
        while self._seen and (len(self._seen) > SEEN_MOST or next(iter(self._seen.values()))[1] < now - keep):
            self._seen.popitem(last=False)

    async def _publish(self, deliveries: list[dict]) -> int:
        """Store the events of these deliveries' entries that are not stored yet, then the completions they
        may have brought."""
        if not deliveries:
            return 0
        authors = await self._authors_of({d["notification_id"] for d in deliveries})
        candidates: dict[str, dict] = {}
        # An entry this old was published long ago, and its event may be gone with EVENTS_DAYS: not again.
        oldest = self.clock.now() - self.keep + min(self.keep / 2, timedelta(days=1))
        for delivery in deliveries:
            author = authors.get(delivery["notification_id"])
            if author is None:
                continue
            for logged in delivery.get("event_log") or []:
                if logged["at"] < oldest:
                    continue
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
        if self.late_window:
            self._remember(deliveries)
        self._touched.update(d["notification_id"] for d in deliveries if d["notification_id"] in authors)
        return stored

    async def _changed_after(self, horizon: Position) -> set[ObjectId]:
        """The notifications with a change after `horizon` (written since this run read): not complete yet."""
        instant, last = horizon
        found = self.store.deliveries.find({"event_at": {"$gte": instant}}, {"notification_id": 1, "event_at": 1})
        return {
            doc["notification_id"]
            for doc in await found.to_list(None)
            if doc["event_at"] > instant or doc["_id"] > last
        }

    async def _check_completions(self, horizon: Position) -> int:
        touched, self._touched = self._touched, set()
        rechecked, self._recheck = self._recheck, set()
        candidates = touched | rechecked
        if not candidates:
            return 0
        changing = await self._changed_after(horizon)
        stored = 0
        for notification_id in candidates - changing:
            completed = await self._complete_if_done(notification_id)
            if completed is None and notification_id in touched:
                self._recheck.add(notification_id)
            stored += completed or 0
        return stored

    async def _store_new(self, candidates: list[dict]) -> int:
        if not candidates:
            return 0
        now = self.clock.now()
        fresh = []
        for candidate in candidates:
            self._last_id = event_id_after(self._last_id)
            fresh.append({"_id": self._last_id, **candidate, "created_at": now, "expires_at": now + self.keep})
        refused: set[int] = set()
        try:
            await self.store.events.insert_many(fresh, ordered=False)
        except BulkWriteError as exc:  # a key stored before (read again, or by another instance): kept as it was
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != 11000 for error in errors):
                raise
            refused = {error["index"] for error in errors}
        return len(fresh) - len(refused)

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

    async def _complete_if_done(self, notification_id: ObjectId) -> int | None:
        """`notification.completed`, once every delivery of the notification is final (its last change
        published: the caller checked that none came after). How many events it stored; None when its counts
        still show deliveries under way (they are written a moment after the change)."""
        counts = await self.store.counts.find_one({"_id": notification_id})
        if counts is not None and any(n for status, n in shown(counts)[0].items() if status in UNDER_WAY):
            return None
        notification = await self.store.notifications.find_one(
            {"_id": notification_id, "events_open": True}, {"author": 1, "materialize_at": 1, "recipient_count": 1}
        )
        if notification is None or in_progress(notification):  # completed already, or not one that completes
            return 0
        # The counts say final; the deliveries have the last word (a crash can leave counts short until the
        # counts reconciler's pass), once per notification, and give the event's counts.
        statuses = await self.store.deliveries.aggregate(
            [{"$match": {"notification_id": notification_id}}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        ).to_list(None)
        if any(group["_id"] in UNDER_WAY for group in statuses):
            return 0  # its counts were off; the counts reconciler sets them right, and the sweep looks again
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

    async def _sweep_completions(self, horizon: Position) -> int:
        """Tracked notifications not yet completed, COMPLETION_SWEEP_LIMIT at a time round and round: those a
        crash left without their check, or whose counts were set right by the counts reconciler."""
        query: dict = {"events_open": True}
        if self._swept_to is not None:
            query["_id"] = {"$gt": self._swept_to}
        found = await self.store.notifications.find(query, {"_id": 1}).limit(COMPLETION_SWEEP_LIMIT).to_list(None)
        self._swept_to = found[-1]["_id"] if len(found) == COMPLETION_SWEEP_LIMIT else None
        stored = 0
        changing = await self._changed_after(horizon) if found else set()
        for notification in found:
            if notification["_id"] not in changing:
                stored += await self._complete_if_done(notification["_id"]) or 0
        return stored

    # --- reading ---

    async def feed(
        self, principal: Principal, after: ObjectId | None, types: list[str] | None, limit: int, since=None
    ) -> list[dict]:
        """The events `principal` may see (the visibility rule: a client its own notifications', an admin
        every one), oldest first, after the event id `after` (else from `since`, else from the oldest kept)."""
        query = visible_to(principal, {"type": {"$in": types}} if types else {})
        now = self.clock.now()
        start = (since or now - self.keep).timestamp()
        return await oldest_first(self.store.events, query, limit, after, start, now.timestamp())

    async def by_author(self, author: dict, after: ObjectId, types: list[str] | None, limit: int) -> list[dict]:
        """The events of the notifications `author` ({"kind", "id"}) created, after the event id `after`, oldest
        first: what that author's endpoints receive, whoever the author is."""
        query: dict = {"author.kind": author["kind"], "author.id": author["id"]}
        if types:
            query["type"] = {"$in": types}
        now = self.clock.now().timestamp()
        return await oldest_first(self.store.events, query, limit, after, 0, now)


async def oldest_first(collection, query: dict, limit: int, after: ObjectId | None, start: float, now: float) -> list:
    """Documents with ids after `after` (or from the second `start`), oldest first, read in `_id` windows that
    widen while they find little, so that no read materializes more than a window's matches (the embedded
    database collects every match of a sorted query before it limits); after WINDOWS of them the rest is read
    in one query, so a page costs at most WINDOWS + 1 reads."""
    items: list[dict] = []
    begin, width = (seconds_of(after) if after is not None else start), FIRST_WINDOW
    for step in range(WINDOWS + 1):
        end = begin + width
        window: dict = {"$gt": after} if after is not None else {"$gte": floor_id(begin)}
        # The last window is open: ids from a clock ahead of ours are found too.
        last = step == WINDOWS or end > now + FIRST_WINDOW
        if not last:
            window["$lt"] = floor_id(end)
        wanted = limit - len(items)
        found = await collection.find({"_id": window, **query}).sort("_id", 1).limit(wanted).to_list(wanted)
        items.extend(found)
        if last or len(items) >= limit:
            break
        after, begin = None, end
        if len(found) < wanted / GROWTH:
            width *= GROWTH
    return items
