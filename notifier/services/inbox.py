"""The live inbox: each user's inbox changes as a numbered event log, the counts folded from it, and the
states of the items (seen, read, archived).

The log. Every change of a user's in-app inbox is one event, numbered 1, 2, 3... per user with no gap. An
event takes the number after the last one folded into the user's head document, and the unique
(user_id, seq) index lets only one writer have it: the loser folds what it missed and takes the next. The
head holds the last number folded and the counts (total, unread, unseen), the sum of the events' deltas.
A fold is guarded by the number before, so each event counts once, and an event whose writer died before
folding it is folded by the next writer. Numbers follow the order in which the events were written, so a
reader that has event n has every event before it: a stream resumes after a number (notifier/streams.py).

Items are the in-app inbox's deliveries (channel "inbox"). One counts from its arrival (its `new` event,
which its consumer writes while the delivery is `sending`, just before marking it `sent`) while it is not
archived: in `total`, and in `unread`/`unseen` while it is. Its marks do not change while it is `sending`
(a change of it then is refused, a bulk change passes it by), so an arrival counts the marks it reads.

Which event a change writes is part of the change's own write: an arrival's id is `<delivery id>:new`
(written by the consumer before the delivery is marked sent: a repeated attempt finds it); an item's state
change bumps the item's `inbox_version` and records the event it owes (`inbox_change`) in the same guarded
update, and the event's id is `<delivery id>:<version>`, so the next change of that item writes a missing
one first. The bulk changes (read all, seen all) write their state, then one event; a crash between the two
leaves the counts off until the user's counts are recounted (`recount`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from ..channels.base import Message
from ..clock import Clock
from ..domain import DeliveryStatus
from ..errors import Conflict, NotFound, Unavailable
from ..store import Store
from . import object_id
from .events import EventType, recording

log = logging.getLogger(__name__)

INBOX = "inbox"
SENDING, SENT = DeliveryStatus.SENDING.value, DeliveryStatus.SENT.value
APPEND_TRIES = 50  # writers racing for one user's next number; each loss means another writer got one
FOLD_BATCH = 100
DUPLICATE_KEY = 11000

NEW, RESET, COUNTS, EXPIRED = "new", "reset", "counts", "expired"
# A change of one item: the field it writes, and whether it sets the field (now) or clears it.
CHANGES: dict[str, tuple[str, bool]] = {
    "seen": ("seen_at", True),
    "read": ("read_at", True),
    "unread": ("read_at", False),
    "archived": ("archived_at", True),
    "unarchived": ("archived_at", False),
}
BULK_CHANGES: dict[str, str] = {"read_all": "read_at", "seen_all": "seen_at"}
CHANGE_FIELDS = {"read_at": 1, "seen_at": 1, "archived_at": 1}  # an item's marks, as a projection

Publish = Callable[[list[dict]], Awaitable[None]]


@dataclass(frozen=True)
class Tally:
    total: int = 0
    unread: int = 0
    unseen: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.total + other.total, self.unread + other.unread, self.unseen + other.unseen)

    def __sub__(self, other: Tally) -> Tally:
        return Tally(self.total - other.total, self.unread - other.unread, self.unseen - other.unseen)

    def __bool__(self) -> bool:
        return bool(self.total or self.unread or self.unseen)

    def dump(self) -> dict[str, int]:
        return {"total": self.total, "unread": self.unread, "unseen": self.unseen}

    def shown(self) -> dict[str, int]:
        """As a client reads it: never below zero (only a crash in a bulk change can take a count there)."""
        return {name: max(value, 0) for name, value in self.dump().items()}

    @classmethod
    def of(cls, doc: dict) -> Tally:
        return cls(doc.get("total", 0), doc.get("unread", 0), doc.get("unseen", 0))


def tally_of(item: dict, arrived: bool | None = None) -> Tally:
    """What one delivery adds to its user's counts: once it `arrived` (by default: once it is sent)."""
    if item.get("channel") != INBOX or item.get("archived_at") is not None:
        return Tally()
    if not (item.get("status") == SENT if arrived is None else arrived):
        return Tally()
    return Tally(1, int(item.get("read_at") is None), int(item.get("seen_at") is None))


def public_event(event: dict) -> dict:
    """An event as a stream sends it (JSON-ready: instants as ISO 8601 text)."""
    shown = {k: v for k, v in event.items() if k not in ("_id", "user_id", "expires_at", "delta")}
    shown["counts"] = Tally.of(event.get("counts") or {}).shown()
    return json.loads(json.dumps(shown, default=_instant))


def wire(events: list[dict]) -> bytes:
    """Events as the servers pass them on to each other's streams (one message for the events written together)."""
    shown = [{**public_event(event), "user_id": event["user_id"]} for event in events]
    return json.dumps(shown, separators=(",", ":")).encode()


def _instant(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


class InboxLog:
    """The users' event logs and their heads."""

    def __init__(self, store: Store, clock: Clock, keep_days: float, publish: Publish | None = None):
        self.store = store
        self.clock = clock
        self.keep = timedelta(days=keep_days)
        self.publish = publish  # to the other servers' streams (queue/publisher.py); None: nobody listens
        self._arriving: list[tuple[Message, asyncio.Future[None]]] = []
        self._writing: set[asyncio.Task] = set()

    async def last_numbers(self, user_ids: list[str]) -> dict[str, int]:
        """The number of each user's last folded event (one read for them all; users without a head: none)."""
        found = self.store.inbox_heads.find({"_id": {"$in": user_ids}}, {"seq": 1})
        return {head["_id"]: head["seq"] async for head in found}

    async def head(self, user_id: str) -> dict:
        head = await self.store.inbox_heads.find_one({"_id": user_id})
        return head if head is not None else await self._start_head(user_id)

    async def _start_head(self, user_id: str) -> dict:
        """A user's head, the first time it is needed: counted from the items they have (items from before the
        live inbox count too; no arrival is written before the head), after the last event there is (none,
        unless a head was lost)."""
        counted = await self.count_items(user_id)
        last = await self.store.inbox_events.find({"user_id": user_id}, {"seq": 1}).sort("seq", -1).to_list(1)
        head = {"_id": user_id, "seq": last[0]["seq"] if last else 0, **counted.dump()}
        try:
            await self.store.inbox_heads.insert_one(head)
        except DuplicateKeyError:
            found = await self.store.inbox_heads.find_one({"_id": user_id})
            if found is not None:
                return found
        return head

    async def settled_head(self, user_id: str) -> dict:
        """The head with every stored event folded in (a writer may have died between its insert and fold)."""
        while True:
            head = await self.head(user_id)
            if not await self._fold_missed(user_id, head["seq"]):
                return head

    async def count_items(self, user_id: str) -> Tally:
        """The user's counts from their items (a read of all their inbox deliveries): the sent ones, and
        those being sent whose arrival is written."""
        tally = Tally()
        query = {"user_id": user_id, "channel": INBOX, "status": {"$in": [SENDING, SENT]}}
        sending = []
        async for item in self.store.deliveries.find(query, {"channel": 1, "status": 1, **CHANGE_FIELDS}):
            if item["status"] == SENT:
                tally += tally_of(item)
            else:
                sending.append(item)
        if sending:
            arrivals = {f"{item['_id']}:new": item for item in sending}
            async for event in self.store.inbox_events.find({"_id": {"$in": list(arrivals)}}, {"_id": 1}):
                tally += tally_of(arrivals[event["_id"]], arrived=True)
        return tally

    async def append(
        self,
        user_id: str,
        kind: str,
        delta: Tally,
        fields: dict[str, Any],
        event_id: str | None = None,
        check_first: bool = True,
    ) -> dict | None:
        """Write the user's next event and fold it into their head; None when `event_id` is written already
        (looked up first with `check_first`, else found by the insert: the cheaper way when it rarely is)."""
        events = self.store.inbox_events
        if event_id is not None and check_first and await events.find_one({"_id": event_id}, {"_id": 1}):
            return None
        for _ in range(APPEND_TRIES):
            event = self._next_event(await self.head(user_id), kind, delta, fields, event_id)
            try:
                await events.insert_one(event)
            except DuplicateKeyError:
                if event_id is not None and await events.find_one({"_id": event_id}, {"_id": 1}):
                    return None
                await self._fold_missed(user_id, event["seq"] - 1)
                continue
            await self._fold(event)  # before it is told: a stream resuming after it must find it in the head
            await self._announce([event])
            return event
        raise Unavailable(f"The inbox of {user_id!r} is too busy to change right now")

    def _next_event(self, head: dict, kind: str, delta: Tally, fields: dict[str, Any], event_id: str | None) -> dict:
        now = self.clock.now()
        return {
            "_id": event_id or str(ObjectId()),
            "user_id": head["_id"],
            "seq": head["seq"] + 1,
            "type": kind,
            "at": now,
            "expires_at": now + self.keep,
            "delta": delta.dump(),
            "counts": (Tally.of(head) + delta).dump(),
            **fields,
        }

    @staticmethod
    def _folding(event: dict) -> tuple[dict, dict]:
        """The head's update that adds the event: only onto the head of the number before it."""
        return {"_id": event["user_id"], "seq": event["seq"] - 1}, {
            "$set": {"seq": event["seq"]},
            "$inc": event["delta"],
        }

    async def _fold(self, event: dict) -> None:
        await self.store.inbox_heads.update_one(*self._folding(event))

    async def _fold_missed(self, user_id: str, after: int) -> int:
        """Fold the stored events after number `after` (a batch of them); how many there were."""
        missed = await self.since(user_id, after, FOLD_BATCH)
        for event in missed:
            await self._fold(event)
        return len(missed)

    async def _announce(self, events: list[dict]) -> None:
        if self.publish is None or not events:
            return
        try:
            await self.publish(events)
        except Exception as exc:  # they are stored: a stream missing one reads it when the next comes
            log.warning("%d inbox events not announced: %s", len(events), exc)

    async def since(self, user_id: str, after: int, limit: int) -> list[dict]:
        """The user's events numbered after `after`, in order, at most `limit` (numbers have no gaps, so the
        range is bounded on both sides: on the embedded database a read costs what it returns)."""
        query = {"user_id": user_id, "seq": {"$gt": after, "$lte": after + limit}}
        return await self.store.inbox_events.find(query).sort("seq", 1).to_list(limit)

    async def recount(self, user_id: str) -> dict | None:
        """Count the user's items again; when the head disagrees, a `counts` event sets it right."""
        head = await self.head(user_id)
        correction = await self.count_items(user_id) - Tally.of(head)
        return await self.append(user_id, COUNTS, correction, {}) if correction else None

    async def arrive(self, message: Message) -> None:
        """An item reaches the user's inbox (the inbox channel's send): its `new` event, once.

        The arrivals that come together (a consumer's batch sends all of its own at once) are written together:
        one read of their items (the user may have marked one before it arrived: read all, say), one of their
        users' heads, one insert and one fold for all of them. What that shared write cannot take (a second
        item of one user, a number another writer took, an arrival written already) goes one at a time."""
        loop = asyncio.get_running_loop()
        written: asyncio.Future[None] = loop.create_future()
        self._arriving.append((message, written))
        if len(self._arriving) == 1:
            task = loop.create_task(self._arrive_together())
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)
        await written

    async def _arrive_together(self) -> None:
        await asyncio.sleep(0)  # the rest of the batch joins in
        arriving, self._arriving = self._arriving, []
        try:
            failures = await self._write_arrivals([message for message, _ in arriving])
        except BaseException as exc:
            for _, written in arriving:
                if not written.done():
                    written.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for message, written in arriving:
            failure = failures.get(f"{message.delivery_id}:new")
            if written.done():
                continue
            if failure is None:
                written.set_result(None)
            else:
                written.set_exception(failure)

    async def _write_arrivals(self, messages: list[Message]) -> dict[str, BaseException]:
        """Write the arrivals; the failures of those written one at a time, by event id."""
        ids = [ObjectId(message.delivery_id) for message in messages]
        found = self.store.deliveries.find({"_id": {"$in": ids}}, {"created_at": 1, **CHANGE_FIELDS})
        marks = {str(doc["_id"]): doc async for doc in found}
        firsts: dict[str, tuple] = {}
        alone: list[tuple] = []
        for message in messages:
            item_marks = marks.get(message.delivery_id, {})
            item = {
                "id": message.delivery_id,
                "notification_id": message.notification_id,
                "channel": INBOX,
                "title": message.title,
                "text": message.text,
                "is_express": message.is_express,
                "created_at": item_marks.get("created_at"),
                **{name: item_marks.get(name) for name in CHANGE_FIELDS},
            }
            delta = tally_of({"channel": INBOX, **item_marks}, arrived=True)
            arrival = (message.user_id, NEW, delta, {"item": item}, f"{message.delivery_id}:new")
            if message.user_id in firsts:
                alone.append(arrival)
            else:
                firsts[message.user_id] = arrival
        heads = {head["_id"]: head async for head in self.store.inbox_heads.find({"_id": {"$in": list(firsts)}})}
        for user_id in firsts:
            if user_id not in heads:
                heads[user_id] = await self._start_head(user_id)
        events = [self._next_event(heads[user_id], *arrival[1:]) for user_id, arrival in firsts.items()]
        refused: set[str] = set()
        try:
            await self.store.inbox_events.insert_many(events, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise
            refused = {events[error["index"]]["_id"] for error in errors}
        stored = [event for event in events if event["_id"] not in refused]
        if stored:
            folds = [UpdateOne(*self._folding(event)) for event in stored]
            await self.store.inbox_heads.bulk_write(folds, ordered=False)
        await self._announce(stored)
        failures: dict[str, BaseException] = {}
        for arrival in [*(firsts[event["user_id"]] for event in events if event["_id"] in refused), *alone]:
            try:
                await self.append(*arrival)
            except Exception as exc:  # only that delivery's send fails (and is retried); the others went
                failures[arrival[4]] = exc
        return failures


class Inbox:
    """What a user does to their inbox items, and the counts they read."""

    def __init__(self, store: Store, clock: Clock, events: InboxLog):
        self.store = store
        self.clock = clock
        self.events = events

    async def counts(self, user_id: str) -> dict[str, int]:
        return Tally.of(await self.events.head(user_id)).shown()

    async def recount(self, user_id: str) -> dict[str, int]:
        """Count the user's items again (the repair of a crash inside a bulk change); the counts now."""
        await self.events.recount(user_id)
        return await self.counts(user_id)

    async def change(self, user_id: str, delivery_id: str, change: str) -> dict:
        """Apply one change (CHANGES) to one of the user's items; a change to the state it has is a no-op.
        Returns the item as it is now."""
        field, sets = CHANGES[change]
        oid = object_id(delivery_id, "Notification")
        deliveries = self.store.deliveries
        await self.events.head(user_id)  # a head counted from the items must not see this change already
        for _ in range(APPEND_TRIES):
            item = await deliveries.find_one({"_id": oid, "user_id": user_id})
            if item is None:
                raise NotFound(f"Notification {delivery_id!r} not found")
            await self._owed(item)
            if (item.get(field) is not None) == sets:
                return item
            if item["channel"] == INBOX and item["status"] == SENDING:
                raise Conflict("This notification is being delivered right now; change it in a moment")
            version = item.get("inbox_version", 0) + 1
            after = {**item, field: self.clock.now() if sets else None}
            delta = tally_of(after) - tally_of(item)
            changes: dict = {field: after[field], "inbox_version": version}
            if item["channel"] == INBOX:  # other channels' items are listed with their marks, never streamed
                changes["inbox_change"] = {"version": version, "type": change, "delta": delta.dump()}
            # Guarded by the version and the status: a change, a bulk change or a claim in between and the
            # delta would be wrong, so it is worked out again.
            update: dict = {"$set": changes}
            if change == "read" and read_is_an_event(item):
                update = recording(update, EventType.DELIVERY_READ, after[field])
            changed = await deliveries.update_one(
                {"_id": oid, "user_id": user_id, "inbox_version": item.get("inbox_version"), "status": item["status"]},
                update,
            )
            if changed.modified_count:
                after.update(changes)
                await self._owed(after)
                return after
        raise Unavailable("This notification is changing too often to change right now")

    async def _owed(self, item: dict) -> None:
        """Write the event an item's last change owes, unless it is written; then the item owes nothing (so
        that an event gone with INBOX_EVENTS_DAYS is never written again)."""
        owed = item.get("inbox_change")
        if not owed:
            return
        fields = {"item_id": str(item["_id"]), "item": _item_state(item)}
        event_id = f"{item['_id']}:{owed['version']}"
        await self.events.append(item["user_id"], owed["type"], Tally.of(owed["delta"]), fields, event_id)
        await self.store.deliveries.update_one(
            {"_id": item["_id"], "inbox_change.version": owed["version"]}, {"$unset": {"inbox_change": ""}}
        )

    async def change_all(self, user_id: str, change: str) -> int:
        """Mark every item of the user's read (`read_all`) or seen (`seen_all`): how many counted items
        changed. Items still on their way are marked too, and arrive read or seen; one arriving right now is
        passed by."""
        field = BULK_CHANGES[change]
        await self.events.head(user_id)  # a head counted from the items must not see this change already
        now = self.clock.now()
        deliveries = self.store.deliveries
        # Up to now only; the version bump makes a single change racing this one work out its delta again.
        mine = {"user_id": user_id, field: None, "_id": {"$lt": ObjectId.from_datetime(now + timedelta(seconds=1))}}
        marked: dict = {"$set": {field: now}, "$inc": {"inbox_version": 1}}
        parts: list[tuple[dict, dict]] = [({}, marked)]
        if field == "read_at":  # reads of tracked items are status events, recorded in the same write
            recorded = recording(marked, EventType.DELIVERY_READ, now)
            parts = [(FIRST_READ_OF_TRACKED, recorded), ({"$nor": [FIRST_READ_OF_TRACKED]}, marked)]
        changed = 0
        for part, update in parts:
            counted = await deliveries.update_many(
                {**mine, **part, "channel": INBOX, "status": SENT, "archived_at": None}, update
            )
            changed += counted.modified_count
        # Then the items that count for nothing, before or after: other channels', archived ones, those not
        # arrived. Not those that count (one made unread again meanwhile must be counted when marked), nor
        # those arriving right now (they arrive with the marks they have).
        counting = {"channel": INBOX, "status": {"$in": [SENDING, SENT]}, "archived_at": None}
        await deliveries.update_many({**mine, "$nor": [counting]}, marked)
        if changed:
            delta = Tally(unread=-changed) if field == "read_at" else Tally(unseen=-changed)
            await self.events.append(user_id, change, delta, {"before": now, "items": changed})
        return changed


# A tracked in-app item, delivered, read for the first time (read again after `unread`, it records no second
# event: a user toggling an item would grow its log without end).
FIRST_READ_OF_TRACKED = {"events": True, "event_log.type": {"$ne": EventType.DELIVERY_READ.value}}


def read_is_an_event(item: dict) -> bool:
    """Whether marking `item` read is a `delivery.read` event: FIRST_READ_OF_TRACKED, and delivered."""
    return (
        item.get("events") is True
        and item["channel"] == INBOX
        and item["status"] == SENT
        and not any(logged["type"] == EventType.DELIVERY_READ for logged in item.get("event_log") or [])
    )


def _item_state(item: dict) -> dict:
    return {"id": str(item["_id"]), **{name: item.get(name) for name in CHANGE_FIELDS}}
