"""Notifications and their per-recipient deliveries."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import date, datetime, time, timedelta
from typing import Protocol

from bson import ObjectId
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from .. import logs
from ..access import Principal
from ..clock import Clock
from ..domain import DeliveryStatus
from ..errors import Conflict, Invalid, NotFound
from ..recurrence import local_instant
from ..rendering import unknown_variables
from ..settings import Settings
from ..store import Store
from . import object_id
from .counts import PENDING, Counts, Tally
from .deliveries import Deliveries
from .events import EventLog
from .fanout import Materializer, in_progress
from .paging import Page, newest_first
from .sending import zone_of
from .visibility import visible_to

log = logging.getLogger(__name__)

INSERT_CHUNK = 100  # short writes: an express claim waits behind whatever the database is doing
DUPLICATE_KEY = 11000
ONE_OFF = ""  # the occurrence of a notification sent once (schedules name theirs)
SCHEDULED = DeliveryStatus.SCHEDULED.value
SEND_AT_HORIZON = timedelta(days=366)
CANCEL_BY_KEY_LIMIT = 1000  # notifications one cancel by key takes on; the answer says when more are left


class Outbox(Protocol):
    """Where stored deliveries go to be published (queue/publisher.py); the sweep covers any it misses."""

    def submit(self, notification: dict, deliveries: list[dict], position: int) -> None: ...


def new_delivery(notification: dict, user_id: str, occurrence: str, now, send_at=None) -> dict:
    """A delivery as stored: pending (for the outbox to publish now), or scheduled until `send_at` (the
    notification's, unless given) outside the outbox until the scheduled wake-up publishes it."""
    send_at = send_at or notification.get("send_at")
    scheduled = send_at is not None and send_at > now
    return {
        "notification_id": notification["_id"],
        "user_id": user_id,
        "channel": notification["channel"],
        "is_express": notification["is_express"],
        "occurrence": occurrence,
        "status": SCHEDULED if scheduled else PENDING,
        "reason": None,
        "is_sent_to_queue": None if scheduled else False,
        "attempts": 0,
        "last_error": None,
        "created_at": now,
        "updated_at": now,
        "available_at": send_at if scheduled else now,
        "queued_at": None,
        "sent_at": None,
        "read_at": None,
        **({"events": True} if notification.get("events") else {}),
    }


def _fingerprint(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


class NotificationService:
    def __init__(
        self, store: Store, settings: Settings, clock: Clock, outbox: Outbox | None = None, counts: Counts | None = None
    ):
        self.store = store
        self.settings = settings
        self.clock = clock
        self.outbox = outbox
        self.counts = counts or Counts(store, settings.counts_maintained)
        self.delivery_states = Deliveries(store, self.counts, settings.write_chunk)
        self.materializer = Materializer(store, settings, clock, self._add_listed)
        self.event_log: EventLog | None = None  # set when status events are recorded (services/events.py)

    async def track(self, author: Principal, notification: dict, completes: bool = True) -> None:
        """Mark a notification about to be stored as tracked (its deliveries record status events) when its
        author has an event endpoint; one that `completes` (not a schedule's) gets `notification.completed`."""
        if self.event_log is not None and await self.event_log.tracks(author):
            notification["events"] = True
            if completes:
                notification["events_open"] = True

    # --- writing ---

    def check(self, data: dict, recipients: list[str]) -> None:
        """Raise Invalid for too many recipients or a placeholder nothing would fill."""
        if len(recipients) > self.settings.max_recipients:
            raise Invalid.field("recipients", f"at most {self.settings.max_recipients} per request")
        now = self.clock.now()
        if data.get("send_at") and data["send_at"] > now + SEND_AT_HORIZON:
            raise Invalid.field("send_at", f"at most {SEND_AT_HORIZON.days} days ahead")
        expires_at = data.get("expires_at")
        if expires_at is not None and expires_at <= max(now, data.get("send_at") or now):
            raise Invalid.field("expires_at", "must come after now and after send_at")
        local = data.get("deliver_at_local")
        if local and data.get("send_at"):
            raise Invalid.field("deliver_at_local", "give either send_at or deliver_at_local")
        if local and local["date"] is not None:
            if local["date"] > (now + SEND_AT_HORIZON).date():
                raise Invalid.field("deliver_at_local", f"at most {SEND_AT_HORIZON.days} days ahead")
            if local["date"] < (now - timedelta(days=1)).date():
                raise Invalid.field("deliver_at_local", "is a date that has passed everywhere")
        errors = {}
        for name in ("title", "text"):
            unknown = unknown_variables(data.get(name, ""), data.get("variables") or {})
            if unknown:
                errors[name] = [f"unknown placeholder {{{{ {v} }}}}; define it in `variables`" for v in unknown]
        if errors:
            raise Invalid("Invalid template", errors)

    def new_notification(self, author: Principal, data: dict, recipient_count: int) -> dict:
        """The notification a create stores (a dry run plans with it and stores nothing)."""
        notification = {key: data[key] for key in ("title", "text", "channel", "is_express", "content_id")}
        notification.update(
            variables=data.get("variables") or {},
            author=author.as_author(),
            created_at=self.clock.now(),
            recipient_count=recipient_count,
            request_id=logs.request_id.get(),
        )
        if data.get("cancellation_key"):
            notification["cancellation_key"] = data["cancellation_key"]
        for name in ("send_at", "expires_at"):
            if data.get(name):
                notification[name] = data[name]
        if data.get("respect_quiet_hours") is not None:
            notification["respect_quiet_hours"] = data["respect_quiet_hours"]
        if data.get("deliver_at_local"):
            local = data["deliver_at_local"]
            notification["deliver_at_local"] = {
                "date": local["date"].isoformat() if local["date"] else None,
                "time": local["time"].isoformat("minutes" if not local["time"].second else "seconds"),
            }
        return notification

    async def new_deliveries(self, notification: dict, user_ids: list[str], occurrence: str, now) -> list[dict]:
        """The deliveries of `user_ids` as they would be stored now (scheduled at each one's local time if the
        notification is delivered at local time)."""
        local = await self._local_instants(notification, user_ids, now)
        deliveries = [
            new_delivery(notification, user_id, occurrence, now, *(local[user_id][:1] if local else ()))
            for user_id in user_ids
        ]
        for delivery in deliveries if local else ():
            _, zone, note = local[delivery["user_id"]]
            delivery["local_time"] = {"zone": zone, "dst": note}
        return deliveries

    async def create(self, author: Principal, data: dict, idempotency_key: str | None = None) -> tuple[dict, bool]:
        """Store the notification and one delivery per distinct recipient, then hand them to the outbox.

        Past INLINE_RECIPIENTS recipients only the notification and its recipient list are stored here;
        the deliveries follow in the background (fanout.py) and the notification is returned while
        `in_progress`. With an idempotency key a repeated request returns the first one's notification
        (False), and finishes it if the first attempt stopped part-way.
        """
        recipients = list(dict.fromkeys(data["recipients"]))
        self.check(data, recipients)
        background = len(recipients) > self.settings.inline_recipients
        notification = self.new_notification(author, data, len(recipients))
        await self.track(author, notification)
        notification["complete"] = not idempotency_key
        if idempotency_key:
            notification.update(
                idempotency_key=f"{author.role.value}:{author.id}:{idempotency_key}", request_hash=_fingerprint(data)
            )
        if background:
            # The list first: the fan-out is taken up by whoever finds the notification, which is complete
            # (nothing for a repeat to finish) as soon as it is stored.
            notification.update(complete=True, materialized=0, materialize_at=notification["created_at"])
        notification["_id"] = ObjectId()  # known before it is stored: its counts and recipients come first
        try:
            await self.counts.start(notification["_id"], notification["created_at"])
            if background:
                await self.materializer.store_recipients(notification["_id"], recipients)
            await self.store.notifications.insert_one(notification)
        except BaseException as exc:
            await self.counts.forget_safely(notification["_id"])
            if background:
                await self.materializer.forget_recipients(notification["_id"])
            if not isinstance(exc, DuplicateKeyError):
                raise
            earlier = await self.store.notifications.find_one(
                visible_to(author, {"idempotency_key": notification["idempotency_key"]})
            )
            if earlier is None or earlier["request_hash"] != notification["request_hash"]:
                raise Conflict(
                    "Idempotency-Key was already used for a different request",
                    {"Idempotency-Key": ["already used for a different request"]},
                ) from None
            if earlier.get("complete"):
                return earlier, False
            notification = earlier
        if background and in_progress(notification):
            self.materializer.kick(notification["is_express"])
            return notification, True
        try:
            await self.add_deliveries(notification, recipients, ONE_OFF)
        except BaseException:
            if not idempotency_key:  # the caller cannot finish it by repeating the request: take it back
                await self._take_back(notification)
            raise
        if not notification["complete"]:
            # Only a request with an Idempotency-Key can be repeated to finish what a first attempt began.
            await self.store.notifications.update_one({"_id": notification["_id"]}, {"$set": {"complete": True}})
            notification["complete"] = True
        return notification, True

    async def _take_back(self, notification: dict) -> None:
        """Undo a create that failed half-way: its deliveries that no consumer has claimed yet are deleted
        (a message already published for one finds nothing to claim), and so is the notification unless
        some delivery was already under way; then its recipient_count is what was kept."""
        try:
            await self.store.deliveries.delete_many(
                {"notification_id": notification["_id"], "status": {"$in": [SCHEDULED, "pending", "queued"]}}
            )
            kept = await self.store.deliveries.count_documents({"notification_id": notification["_id"]})
            if kept:
                await self.store.notifications.update_one(
                    {"_id": notification["_id"]}, {"$set": {"recipient_count": kept}}
                )
                await self.counts.recount([notification["_id"]], self.clock.now())
            else:
                await self.store.notifications.delete_one({"_id": notification["_id"]})
                await self.counts.forget(notification["_id"])
        except Exception:
            log.warning("could not take back the failed notification %s", notification["_id"], exc_info=True)

    async def _add_listed(self, notification: dict, user_ids: list[str], position: int) -> tuple[int, int]:
        """The deliveries of listed recipients `position`... (the materializer's part of a create)."""
        return await self.add_deliveries(notification, user_ids, ONE_OFF, position, cancellable=True)

    async def add_deliveries(
        self, notification: dict, user_ids: list[str], occurrence: str, position: int = 0, cancellable: bool = False
    ) -> tuple[int, int]:
        """Insert deliveries chunk by chunk, handing each chunk to the outbox as soon as it is stored.

        A recipient already present for this occurrence is left alone (the unique index decides), so
        this is safe to repeat. `position` is where `user_ids` start in the whole list (for pacing).
        Returns (added, already present).
        """
        added = 0
        for start in range(0, len(user_ids), INSERT_CHUNK):
            # Stamped chunk by chunk: the outbox sweep counts its grace from available_at, and a large
            # request's last chunk may be stored well after its first.
            now = self.clock.now()
            deliveries = await self.new_deliveries(
                notification, user_ids[start : start + INSERT_CHUNK], occurrence, now
            )
            # What the chunk stored is counted in one increment; a chunk that failed half-way is left to the
            # counts reconciler.
            tally = Tally()
            try:
                await self.store.deliveries.insert_many(deliveries, ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(error.get("code") != DUPLICATE_KEY for error in errors):
                    tally.touch(notification["_id"])
                    await self.counts.apply_safely(tally, now)
                    raise
                duplicates = {error["index"] for error in errors}
                deliveries = [d for i, d in enumerate(deliveries) if i not in duplicates]
            except PyMongoError:
                tally.touch(notification["_id"])
                await self.counts.apply_safely(tally, now)
                raise
            for status in (PENDING, SCHEDULED):
                tally.move(notification["_id"], None, status, sum(1 for d in deliveries if d["status"] == status))
            await self.counts.apply_safely(tally, now)
            due = [d for d in deliveries if d["status"] == PENDING]  # the scheduled ones wait for the wake-up
            if cancellable:
                # Read after the insert: a cancel that came before it is seen here, one that comes after it
                # finds these deliveries (Deliveries.cancel). Either way none of them goes out. The whole chunk
                # is looked at, the part stored before too: a process that died between storing it and this
                # look left it for the resumed fan-out to repeat.
                chunk = user_ids[start : start + INSERT_CHUNK]
                cancelled = await self._cancelled_of(notification["_id"], chunk)
                if cancelled:
                    await self.delivery_states.cancel(notification["_id"], sorted(cancelled), now)
                    due = [d for d in due if d["user_id"] not in cancelled]
            if due and self.outbox is not None:
                self.outbox.submit(notification, due, position=position + added)
            added += len(deliveries)
        return added, len(user_ids) - added

    async def add_recipients(self, principal: Principal, notification_id: str, user_ids: list[str]) -> tuple[int, int]:
        notification = await self.visible(principal, notification_id)
        if notification.get("cancelled_at"):
            raise Conflict("The notification was cancelled", {"notification_id": ["was cancelled"]})
        recipients = list(dict.fromkeys(user_ids))
        if len(recipients) > self.settings.max_recipients:
            raise Invalid.field("recipients", f"at most {self.settings.max_recipients} per request")
        occurrence = notification.get("occurrence", ONE_OFF)
        added, present = await self.add_deliveries(notification, recipients, occurrence, cancellable=True)
        # Counted, not incremented, so that a call which failed after storing deliveries is repaired by the
        # next one ($max: two calls at once never lower it).
        counted = await self.store.deliveries.count_documents(
            {"notification_id": notification["_id"], "occurrence": occurrence}
        )
        await self.store.notifications.update_one(
            visible_to(principal, {"_id": notification["_id"]}), {"$max": {"recipient_count": counted}}
        )
        return added, present

    async def _local_instants(
        self, notification: dict, user_ids: list[str], now: datetime
    ) -> dict[str, tuple[datetime, str, str | None]]:
        """For a notification delivered at local time: each recipient's instant, zone and DST note."""
        local = notification.get("deliver_at_local")
        if not local:
            return {}
        day = date.fromisoformat(local["date"]) if local.get("date") else None
        at = time.fromisoformat(local["time"])
        zones = {
            user["user_id"]: user.get("timezone")
            async for user in self.store.users.find({"user_id": {"$in": user_ids}}, {"user_id": 1, "timezone": 1})
        }
        resolved = {}
        for user_id in user_ids:
            zone = zone_of({"timezone": zones.get(user_id)}, self.settings.default_timezone)
            instant, note = local_instant(day, at, zone, now)
            resolved[user_id] = (instant, zone, note)
        return resolved

    # --- cancelling ---

    async def _cancelled_of(self, notification_id: ObjectId, user_ids: list[str]) -> set[str]:
        """Which of these recipients are cancelled: all, once the notification is; else those a cancel for
        some recipients named while the fan-out was under way."""
        whole = await self.store.notifications.find_one(
            {"_id": notification_id, "cancelled_at": {"$ne": None}}, {"_id": 1}
        )
        if whole is not None:
            return set(user_ids)
        named = self.store.cancelled_recipients.find(
            {"notification_id": notification_id, "user_id": {"$in": user_ids}}, {"user_id": 1}
        )
        return {doc["user_id"] async for doc in named}

    async def cancel(self, principal: Principal, notification_id: str, user_ids: list[str] | None = None) -> dict:
        """Cancel what of the notification has not gone yet (for `user_ids` only, if given). A delivery
        counted `cancelled` is never sent; `in_flight` ones were claimed by a consumer at that instant: their
        current attempt ends as it ends (sent, or failed), and they are never tried again. Audited."""
        notification = await self.visible(principal, notification_id)
        summary = await self._cancel(principal, notification, user_ids)
        await self._audit_cancel(principal, [notification["_id"]], user_ids, summary["cancelled"])
        return summary

    async def cancel_by_key(self, principal: Principal, key: str) -> dict:
        """Cancel every notification the caller created with this `cancellation_key` (at most
        CANCEL_BY_KEY_LIMIT per call; `more` says when a call should follow)."""
        found = (
            await self.store.notifications.find(
                visible_to(principal, {"cancellation_key": key, "author.id": principal.id}),
                {"_id": 1, "cancelled_at": 1},
            )
            .limit(CANCEL_BY_KEY_LIMIT + 1)
            .to_list(None)
        )
        left = [n for n in found if not n.get("cancelled_at")]
        totals = {"notifications": 0, "cancelled": 0, "already_sent": 0, "in_flight": 0, "already_done": 0}
        for notification in left[:CANCEL_BY_KEY_LIMIT]:
            summary = await self._cancel(principal, notification, None)
            totals["notifications"] += 1
            for name in ("cancelled", "already_sent", "in_flight", "already_done"):
                totals[name] += summary[name]
        await self._audit_cancel(principal, [n["_id"] for n in left[:CANCEL_BY_KEY_LIMIT]], None, totals["cancelled"])
        return {**totals, "more": len(left) > CANCEL_BY_KEY_LIMIT}

    async def _cancel(self, principal: Principal, notification: dict, user_ids: list[str] | None) -> dict:
        now = self.clock.now()
        # Before the deliveries: a background fan-out reads it after each stored chunk (add_deliveries).
        if user_ids is None:
            await self.store.notifications.update_one(
                {"_id": notification["_id"], "cancelled_at": None}, {"$set": {"cancelled_at": now}}
            )
        elif in_progress(notification):
            named = [{"notification_id": notification["_id"], "user_id": u} for u in dict.fromkeys(user_ids)]
            try:
                await self.store.cancelled_recipients.insert_many(named, ordered=False)
            except BulkWriteError as exc:  # named by an earlier cancel too: the unique index keeps one
                if any(error.get("code") != DUPLICATE_KEY for error in exc.details.get("writeErrors", [])):
                    raise
        cancelled = await self.delivery_states.cancel(notification["_id"], user_ids, now)
        # Counted from the deliveries (the maintained counts learn of a claim only when its batch ends); a
        # cancel reads them all anyway.
        recipients = None if user_ids is None else list(dict.fromkeys(user_ids))
        counts = await self.delivery_states.statuses(notification["_id"], recipients)
        return {
            "notification_id": str(notification["_id"]),
            "cancelled": cancelled,
            "already_sent": counts.get("sent", 0),
            "in_flight": counts.get("sending", 0),
            "already_done": counts.get("failed", 0) + counts.get("skipped", 0),
            "already_cancelled": max(counts.get("cancelled", 0) - cancelled, 0),
        }

    async def _audit_cancel(
        self, principal: Principal, notification_ids: list[ObjectId], user_ids: list[str] | None, cancelled: int
    ) -> None:
        await self.store.audit.insert_one(
            {
                "at": self.clock.now(),
                "actor": principal.as_author(),
                "action": "cancel",
                "notification_ids": [str(i) for i in notification_ids],
                "recipients": None if user_ids is None else len(user_ids),
                "count": cancelled,
            }
        )

    # --- reading ---

    async def visible(self, principal: Principal, notification_id: str) -> dict:
        query = visible_to(principal, {"_id": object_id(notification_id, "Notification")})
        notification = await self.store.notifications.find_one(query)
        if notification is None:
            raise NotFound(f"Notification {notification_id!r} not found")
        return notification

    async def get(self, principal: Principal, notification_id: str) -> dict:
        """The notification with its deliveries counted by status, and skips/failures by reason: the counts
        maintained as they change (services/counts.py), one document read whatever the notification's size."""
        notification = await self.visible(principal, notification_id)
        counts, reasons = await self.counts.read(notification["_id"], self.clock.now())
        notification.update(counts=counts, reasons=reasons)
        return notification

    async def page(self, principal: Principal, query: dict) -> Page:
        conditions: dict = {}
        for name in ("channel", "is_express"):
            if name in query:
                conditions[name] = query[name]
        if "author" in query:
            conditions["author.id"] = query["author"]
        if "q" in query:
            conditions["title"] = {"$regex": re.escape(query["q"]), "$options": "i"}
        created = {}
        if "created_after" in query:
            created["$gte"] = query["created_after"]
        if "created_before" in query:
            created["$lt"] = query["created_before"]
        if created:
            conditions["created_at"] = created
        return await newest_first(
            self.store.notifications,
            visible_to(principal, conditions),
            query["limit"],
            query.get("cursor"),
            windowed=True,  # `newest`, `author_newest` or `author.id_1__id_-1`; other filters ride `newest`
        )

    async def deliveries(self, principal: Principal, notification_id: str, query: dict) -> Page:
        notification = await self.visible(principal, notification_id)
        conditions: dict = {"notification_id": notification["_id"]}
        for name in ("status", "user_id"):
            if name in query:
                conditions[name] = query[name]
        # One query: its index (`recipient_once`) does not end in `_id`, so a window would cost the whole.
        return await newest_first(self.store.deliveries, conditions, query["limit"], query.get("cursor"))
