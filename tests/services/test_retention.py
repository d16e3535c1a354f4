"""Retention: what is deleted and what is kept, in short batches, final deliveries only, no orphans."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pytest
from bson import ObjectId

from notifier.clock import Clock
from notifier.services import retention as module
from notifier.services.inbox import Tally
from notifier.services.retention import Retention

DAY = 86400
NOW = time.time()


def oid(days: float, seconds: float = 0) -> ObjectId:
    return ObjectId(int(NOW - days * DAY + seconds).to_bytes(4, "big") + os.urandom(8))


def delivery(notification: dict, user: str, status: str, days: float | None = None, seconds: float = 1) -> dict:
    created = notification["_id"] if days is None else oid(days)
    return {
        "_id": ObjectId(int(int.from_bytes(created.binary[:4], "big") + seconds).to_bytes(4, "big") + os.urandom(8)),
        "notification_id": notification["_id"],
        "user_id": user,
        "occurrence": "",
        "channel": "inbox",
        "status": status,
    }


@pytest.fixture
def wide(monkeypatch):
    """Windows up to a day wide, so that a test crosses months of empty history in a few runs."""
    monkeypatch.setattr(module, "MAX_WIDTH", dict.fromkeys(module.MAX_WIDTH, float(DAY)))


async def settle(retention: Retention) -> dict[str, int]:
    """Run until a run deletes nothing and the walks are at their cutoffs; the totals deleted."""
    totals = {"deliveries": 0, "notifications": 0, "audit": 0}
    for _ in range(200):
        deleted = await retention.run()
        for name, n in deleted.items():
            totals[name] = totals.get(name, 0) + n
        state = await retention.store.meta.find_one({"_id": module.STATE_ID})
        caught_up = state["deliveries"]["position"] >= NOW - 90 * DAY - 1
        if caught_up and not any(deleted.values()):
            return totals
    raise AssertionError("retention never caught up")


def make(ctx, **settings) -> Retention:
    return Retention(ctx.store, ctx.settings.replace(**settings), Clock())


async def orphans(ctx) -> list:
    ids = set(await ctx.store.notifications.distinct("_id"))
    return [d for d in await ctx.store.deliveries.find().to_list(None) if d["notification_id"] not in ids]


@pytest.mark.gen_test
async def test_old_final_deliveries_go_and_the_rest_stays(ctx, wide):
    old = {"_id": oid(100), "title": "old"}
    young = {"_id": oid(10), "title": "young"}
    await ctx.store.notifications.insert_many([old, young])
    final = [delivery(old, f"f{s}", s) for s in ("sent", "failed", "skipped")]
    unfinished = [delivery(old, f"u{s}", s) for s in ("pending", "queued", "sending")]
    retrying = {**delivery(old, "retry", "pending"), "attempts": 2}
    recent = [delivery(young, "y1", "sent"), delivery(young, "y2", "failed")]
    await ctx.store.deliveries.insert_many([*final, *unfinished, retrying, *recent])

    totals = await settle(make(ctx))

    assert totals == {"deliveries": 3, "notifications": 0, "audit": 0}
    left = {d["user_id"] for d in await ctx.store.deliveries.find().to_list(None)}
    assert left == {"upending", "uqueued", "usending", "retry", "y1", "y2"}
    assert await ctx.store.notifications.count_documents({}) == 2  # the old one has unfinished deliveries

    # Once they are final, a later run finds them again (what a window kept is looked at again), and the
    # notification goes after them.
    await ctx.store.deliveries.update_many({"notification_id": old["_id"]}, {"$set": {"status": "sent"}})
    totals = await settle(make(ctx))
    assert totals == {"deliveries": 4, "notifications": 1, "audit": 0}
    assert [n["_id"] for n in await ctx.store.notifications.find().to_list(None)] == [young["_id"]]
    assert await orphans(ctx) == []


@pytest.mark.gen_test
async def test_a_notification_takes_its_later_deliveries_with_it(ctx, wide):
    """A recipient added long after the fan-out is deleted with its notification, first: no orphans."""
    old = {"_id": oid(100), "title": "old"}
    await ctx.store.notifications.insert_one(old)
    await ctx.store.deliveries.insert_many(
        [delivery(old, "early", "sent"), delivery(old, "late", "sent", days=20), delivery(old, "late2", "skipped", 5)]
    )
    await ctx.store.counts.insert_one({"_id": old["_id"], "status": {"sent": 2, "skipped": 1}})
    await ctx.store.recipient_chunks.insert_one(
        {"notification_id": old["_id"], "start": 0, "end": 1, "user_ids": ["a"]}
    )
    totals = await settle(make(ctx))
    assert totals == {"deliveries": 3, "notifications": 1, "audit": 0}
    assert await ctx.store.deliveries.count_documents({}) == 0
    assert await ctx.store.counts.count_documents({}) == 0  # what was the notification's goes with it
    assert await ctx.store.recipient_chunks.count_documents({}) == 0


@pytest.mark.gen_test
async def test_a_late_delivery_not_final_keeps_its_notification(ctx, wide):
    old = {"_id": oid(100), "title": "old"}
    await ctx.store.notifications.insert_one(old)
    await ctx.store.deliveries.insert_many([delivery(old, "early", "sent"), delivery(old, "late", "queued", days=3)])
    totals = await settle(make(ctx))
    assert totals == {"deliveries": 1, "notifications": 0, "audit": 0}
    assert await ctx.store.notifications.count_documents({}) == 1
    assert await orphans(ctx) == []


@pytest.mark.gen_test
async def test_a_scheduled_notification_stays(ctx, wide):
    scheduled = {"_id": oid(200), "title": "every day"}
    pending = {"_id": oid(200, 5), "title": "schedule being created", "pending_schedule_since": datetime.now(UTC)}
    await ctx.store.notifications.insert_many([scheduled, pending])
    await ctx.store.schedules.insert_one({"notification_id": scheduled["_id"], "enabled": True})
    await ctx.store.deliveries.insert_many([delivery(scheduled, "a", "sent"), delivery(scheduled, "b", "sent", 1)])
    totals = await settle(make(ctx))
    assert totals == {"deliveries": 1, "notifications": 0, "audit": 0}  # its old deliveries go, not its recent
    assert await ctx.store.notifications.count_documents({}) == 2


@pytest.mark.gen_test
async def test_deletes_are_batches_of_retention_batch(ctx, monkeypatch):
    """Dense history: windows narrow, and no delete names more than RETENTION_BATCH documents."""
    old = {"_id": oid(100), "title": "big"}
    await ctx.store.notifications.insert_one(old)
    await ctx.store.deliveries.insert_many(
        [delivery(old, f"u{i}", "sent", seconds=1 + i // 40) for i in range(120)]  # 40 a second for 3 s
    )
    sizes = []
    real = ctx.store.deliveries.delete_many

    async def spy(query, *args, **kwargs):
        sizes.append(len(query["_id"]["$in"]))
        return await real(query, *args, **kwargs)

    monkeypatch.setattr(ctx.store.deliveries, "delete_many", spy)
    monkeypatch.setattr(module, "BATCHES_PER_RUN", 2)
    retention = make(ctx, retention_batch=7)
    first = await retention.run()
    assert 0 < first["deliveries"] <= 14  # a run's budget: two batches
    assert sizes and max(sizes) <= 7
    monkeypatch.setattr(module, "MAX_WIDTH", dict.fromkeys(module.MAX_WIDTH, float(DAY)))
    monkeypatch.setattr(module, "BATCHES_PER_RUN", 100)
    await settle(retention)
    assert max(sizes) <= 7
    assert await ctx.store.deliveries.count_documents({}) == 0
    assert await ctx.store.notifications.count_documents({}) == 0


@pytest.mark.gen_test
async def test_audit_and_keep_forever(ctx, wide):
    now = datetime.now(UTC)
    await ctx.store.audit.insert_many(
        [{"at": datetime.fromtimestamp(NOW - days * DAY, UTC), "action": f"a{days}"} for days in (400, 380, 300, 1)]
    )
    old = {"_id": oid(100), "title": "old"}
    await ctx.store.notifications.insert_one(old)
    await ctx.store.deliveries.insert_one(delivery(old, "a", "sent"))

    # 0 keeps deliveries forever, and so their notifications.
    kept = make(ctx, retention_deliveries_days=0)
    for _ in range(5):
        assert (await kept.run())["deliveries"] == 0
    assert await ctx.store.deliveries.count_documents({}) == 1
    assert await ctx.store.notifications.count_documents({}) == 1
    assert sorted(await ctx.store.audit.distinct("action")) == ["a1", "a300"]
    assert now  # the audit cutoff is RETENTION_AUDIT_DAYS (365) before now


@pytest.mark.gen_test
async def test_a_delivery_redriven_while_it_is_deleted_stays_and_goes_later(ctx, wide, monkeypatch):
    old = {"_id": oid(100), "title": "old"}
    await ctx.store.notifications.insert_one(old)
    failed = delivery(old, "a", "failed")
    await ctx.store.deliveries.insert_one(failed)
    real = ctx.store.deliveries.delete_many

    async def redrive_first(query, *args, **kwargs):
        monkeypatch.setattr(ctx.store.deliveries, "delete_many", real)
        await ctx.store.deliveries.update_one({"_id": failed["_id"]}, {"$set": {"status": "pending"}})
        return await real(query, *args, **kwargs)

    monkeypatch.setattr(ctx.store.deliveries, "delete_many", redrive_first)
    assert (await settle(make(ctx)))["deliveries"] == 0
    assert await ctx.store.notifications.count_documents({}) == 1
    await ctx.store.deliveries.update_one({"_id": failed["_id"]}, {"$set": {"status": "sent"}})
    assert await settle(make(ctx)) == {"deliveries": 1, "notifications": 1, "audit": 0}


@pytest.mark.gen_test
async def test_inbox_items_that_go_are_expired_from_their_users_counts_once(ctx, wide, monkeypatch):
    """Each sent inbox item deleted gets an `expired` event first; a run that died between its events and its
    delete writes none again."""
    old = {"_id": oid(100), "title": "old"}
    young = {"_id": oid(10), "title": "young"}
    await ctx.store.notifications.insert_many([old, young])
    await ctx.store.deliveries.insert_many(
        [
            delivery(old, "ann", "sent", seconds=1),
            {**delivery(old, "ann", "sent", seconds=2), "occurrence": "2", "read_at": ctx.clock.now()},
            delivery(old, "bob", "failed", seconds=3),  # never arrived: nothing to take off
            delivery(young, "ann", "sent"),
        ]
    )
    log = ctx.inbox.events
    assert await ctx.inbox.counts("ann") == {"total": 3, "unread": 2, "unseen": 3}
    retention = Retention(ctx.store, ctx.settings, Clock(), log)
    real_delete = retention._delete
    calls = 0

    async def dies_once(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("the database went away before the delete")
        return await real_delete(*args, **kwargs)

    monkeypatch.setattr(retention, "_delete", dies_once)
    with pytest.raises(ConnectionError):
        await retention.run()
    await settle(retention)
    assert await ctx.inbox.counts("ann") == {"total": 1, "unread": 1, "unseen": 1}
    assert await log.count_items("ann") == Tally(1, 1, 1)
    expired = [e async for e in ctx.store.inbox_events.find({"type": "expired"})]
    assert sorted(e["user_id"] for e in expired) == ["ann", "ann"]
    assert await ctx.store.inbox_events.count_documents({"user_id": "bob"}) == 0


@pytest.mark.gen_test(timeout=60)
async def test_records_past_their_end_of_life_go_in_batches_and_no_index_expires_anything(ctx):
    """SecantusDB expires a TTL index's collection by reading all of it under its one lock, once a minute
    (status events made that a 30 s stall of every request): retention expires these records instead."""
    from datetime import timedelta

    from notifier.store import EXPIRING

    now = datetime.now(UTC)
    for name, (date_field, seconds) in EXPIRING.items():
        gone = now - timedelta(seconds=seconds + 60)
        kept = now - timedelta(seconds=seconds) + timedelta(minutes=5)
        records = [(gone, i) for i in range(7)] + [(kept, 99)]
        await ctx.store.db[name].insert_many(  # key, user_id and seq for the unique indexes
            [{date_field: at, "n": i, "key": f"k{i}", "user_id": "u", "seq": i} for at, i in records]
        )
    deleted = await make(ctx, retention_batch=3).run()
    for name in EXPIRING:
        assert deleted[name] == 7
        assert [doc["n"] for doc in await ctx.store.db[name].find().to_list(None)] == [99]
        for index in (await ctx.store.db[name].index_information()).values():
            assert "expireAfterSeconds" not in index
