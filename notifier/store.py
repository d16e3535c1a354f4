"""MongoDB access through motor: the client, the collections and their indexes. No business rules here."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import OperationFailure

log = logging.getLogger(__name__)

EVENT_RECORDED = {"event_at": {"$gt": datetime(2000, 1, 1, tzinfo=UTC)}}
INDEXES: dict[str, list[IndexModel]] = {
    "admins": [IndexModel([("username", ASCENDING)], unique=True)],
    "clients": [IndexModel([("login", ASCENDING)], unique=True)],
    "notifications": [
        IndexModel([("author.id", ASCENDING), ("_id", DESCENDING)]),
        # Newest-first pages in `_id` windows (services/paging.py): an admin's, and a client application's
        # (the visibility rule's two equalities, then `_id`). Retention walks `newest` from the oldest.
        IndexModel([("_id", DESCENDING)], name="newest"),
        IndexModel([("author.kind", ASCENDING), ("author.id", ASCENDING), ("_id", DESCENDING)], name="author_newest"),
        IndexModel([("idempotency_key", ASCENDING)], unique=True, sparse=True),
        # Sparse: only notifications created with a cancellation_key (cancelled by key, per author).
        IndexModel([("cancellation_key", ASCENDING), ("author.id", ASCENDING)], sparse=True, name="cancellation_key"),
        # Sparse: only inline notifications of a schedule create still under way (or cut short).
        IndexModel([("pending_schedule_since", ASCENDING)], sparse=True, name="pending_schedule"),
        # Sparse: only tracked notifications whose `notification.completed` event is still to come.
        IndexModel([("events_open", ASCENDING)], sparse=True, name="events_open"),
        # Sparse: only notifications whose deliveries are still being stored in the background.
        IndexModel([("materialize_at", ASCENDING)], sparse=True, name="materializing"),
    ],
    # The recipients of a background fan-out, in chunks (a list of MAX_RECIPIENTS ids may pass the 16 MB
    # document limit); deleted once every delivery is stored.
    "recipient_chunks": [
        IndexModel([("notification_id", ASCENDING), ("start", ASCENDING)], unique=True, name="chunk_once")
    ],
    # Recipients cancelled while their notification's deliveries were still being stored in the background;
    # deleted with its recipient chunks.
    "cancelled_recipients": [
        IndexModel([("notification_id", ASCENDING), ("user_id", ASCENDING)], unique=True, name="cancelled_once")
    ],
    # Every index costs each delivery write; these eight serve every query on the collection.
    "deliveries": [
        # Retention deletes in short `_id` windows (services/retention.py); without it each batch would scan
        # the collection (SecantusDB serves no `_id` range from the primary key). About 13% of an insert.
        IndexModel([("_id", DESCENDING)], name="newest"),
        # One recipient once per occurrence; its prefix serves a notification's deliveries and counts.
        IndexModel(
            [("notification_id", ASCENDING), ("user_id", ASCENDING), ("occurrence", ASCENDING)],
            unique=True,
            name="recipient_once",
        ),
        IndexModel([("user_id", ASCENDING), ("_id", DESCENDING)], name="inbox"),
        # Partial: only deliveries the outbox sweep has to look at, and only claims in progress.
        IndexModel([("available_at", ASCENDING)], partialFilterExpression={"is_sent_to_queue": False}, name="outbox"),
        IndexModel([("lease_until", ASCENDING)], partialFilterExpression={"status": "sending"}, name="leases"),
        IndexModel([("available_at", ASCENDING)], partialFilterExpression={"status": "queued"}, name="queued"),
        # Only deliveries waiting for their send_at (the scheduled wake-up's query).
        IndexModel([("available_at", ASCENDING)], partialFilterExpression={"status": "scheduled"}, name="scheduled"),
        IndexModel([("available_at", ASCENDING)], partialFilterExpression={"status": "deferred"}, name="deferred"),
        # Only deliveries with a recorded status event (services/events.py): the event log reads them by
        # change. Entered at a tracked delivery's first event, not at its insert, claim and marking (each
        # write of a document rewrites its entries in every index it is in). Queries name `event_at` alone:
        # with `events` beside it, SecantusDB scans the collection.
        IndexModel(
            [("event_at", ASCENDING), ("_id", ASCENDING)], partialFilterExpression=EVENT_RECORDED, name="event_changes"
        ),
    ],
    # Status events in id order (the feed's and each endpoint's), one per recorded change (`key`).
    "events": [
        IndexModel([("key", ASCENDING)], unique=True, name="event_once"),
        # The feed's and the endpoints' `_id` windows (SecantusDB serves no `_id` range from the primary key).
        IndexModel([("_id", DESCENDING)], name="newest"),
        IndexModel([("author.kind", ASCENDING), ("author.id", ASCENDING), ("_id", ASCENDING)], name="author_order"),
        IndexModel([("expires_at", ASCENDING)], name="expires"),
    ],
    "event_endpoints": [
        IndexModel([("author.kind", ASCENDING), ("author.id", ASCENDING)], name="author"),
        IndexModel([("retry_at", ASCENDING)], partialFilterExpression={"enabled": True}, name="due"),
    ],
    "event_attempts": [
        IndexModel([("endpoint_id", ASCENDING), ("_id", DESCENDING)], name="endpoint_newest"),
        IndexModel([("expires_at", ASCENDING)], name="expires"),
    ],
    # One document per notification (services/counts.py); partial: only counts the reconciler has yet to check.
    "counts": [IndexModel([("changed_at", ASCENDING)], partialFilterExpression={"open": True}, name="open")],
    # Each user's inbox changes, numbered 1, 2, 3... per user (services/inbox.py): the unique pair is what
    # makes two writers of one user's next event take turns; kept until expires_at (INBOX_EVENTS_DAYS).
    "inbox_events": [
        IndexModel([("user_id", ASCENDING), ("seq", ASCENDING)], unique=True, name="user_seq"),
        IndexModel([("expires_at", ASCENDING)], name="expires"),
    ],
    "users": [IndexModel([("user_id", ASCENDING)], unique=True)],
    "schedules": [
        IndexModel([("enabled", ASCENDING), ("next_run_at", ASCENDING)]),
        IndexModel([("author.id", ASCENDING), ("_id", DESCENDING)]),
    ],
    "login_failures": [IndexModel([("since", ASCENDING)], name="since")],
    "admin_sessions": [IndexModel([("expires_at", ASCENDING)], name="expires")],
    "audit": [IndexModel([("at", DESCENDING)])],
    "schedule_runs": [
        IndexModel([("schedule_id", ASCENDING), ("_id", DESCENDING)]),
        IndexModel([("claimed_at", ASCENDING)], partialFilterExpression={"status": "firing"}, name="firing"),
        IndexModel([("finished_at", ASCENDING)], name="finished"),
    ],
}

# Indexes an earlier version created that this one replaced. The TTL indexes went because SecantusDB expires
# by reading every document of the collection under its global lock, once a minute: with a few days of
# status events that held every request for 30 s at a time. Retention expires those records instead
# (EXPIRING).
RETIRED_INDEXES = {
    "deliveries": ["events"],
    "events": ["expiry"],
    "event_attempts": ["expiry"],
    "inbox_events": ["expiry"],
    "login_failures": ["since_1"],
    "admin_sessions": ["expires_at_1"],
    "schedule_runs": ["history"],
}
# Records that go once `field` is `seconds` old (services/retention.py), each through the index on `field`.
EXPIRING: dict[str, tuple[str, float]] = {
    "events": ("expires_at", 0),
    "event_attempts": ("expires_at", 0),
    "inbox_events": ("expires_at", 0),
    "login_failures": ("since", 24 * 3600),
    "admin_sessions": ("expires_at", 0),
    "schedule_runs": ("finished_at", 90 * 24 * 3600),
}


def connect(url: str, timeout_ms: int) -> AsyncIOMotorClient:
    """The one motor client of a process; create it after the event loop (and any spawn) exists."""
    return AsyncIOMotorClient(
        url,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms * 10, 30000),
        appname="notifier",
    )


class Store:
    """The service's collections in one database."""

    def __init__(self, client: AsyncIOMotorClient, db_name: str):
        self.client = client
        self.db: AsyncIOMotorDatabase = client[db_name]
        self.admins = self.db["admins"]
        self.clients = self.db["clients"]
        self.notifications = self.db["notifications"]
        self.deliveries = self.db["deliveries"]
        self.recipient_chunks = self.db["recipient_chunks"]
        self.cancelled_recipients = self.db["cancelled_recipients"]
        self.counts = self.db["counts"]
        self.inbox_events = self.db["inbox_events"]
        self.inbox_heads = self.db["inbox_heads"]  # per user: the last event folded in, and the counts
        self.users = self.db["users"]
        self.schedules = self.db["schedules"]
        self.schedule_runs = self.db["schedule_runs"]
        self.login_failures = self.db["login_failures"]
        self.admin_sessions = self.db["admin_sessions"]
        self.audit = self.db["audit"]
        self.meta = self.db["meta"]
        self.events = self.db["events"]
        self.event_endpoints = self.db["event_endpoints"]
        self.event_attempts = self.db["event_attempts"]

    async def ensure_indexes(self) -> None:
        """Create every index; safe to repeat (create_indexes is idempotent for identical specs)."""
        for name, retired in RETIRED_INDEXES.items():
            for index in retired:
                try:
                    await self.db[name].drop_index(index)
                except OperationFailure:  # not there (a new database, or dropped before)
                    pass
        for name, indexes in INDEXES.items():
            await self.db[name].create_indexes(indexes)

    async def ping(self) -> None:
        await self.db.command("ping")

    async def server_time(self) -> datetime:
        """The database server's clock (what `$currentDate` writes)."""
        return (await self.db.command("hello", codec_options=self.db.codec_options))["localTime"]

    def close(self) -> None:
        self.client.close()
