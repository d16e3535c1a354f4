"""Maintained counts (services/counts.py): the tally's arithmetic, what the API is shown, and the counts
reconciler against the real database (lost increments, idempotence, batches and a reconciler at once)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

import pytest
from bson import ObjectId

from notifier.access import Principal, Role
from notifier.services.counts import PENDING, QUEUED, SENDING, WAITING, Counts, Tally, shown
from notifier.services.outcomes import OutcomeKind, RetryPolicy, decide

ADMIN = Principal(Role.ADMIN, "a1", "root")
CONTENT = {"title": "t", "text": "x", "channel": "inbox", "is_express": False, "content_id": None, "variables": {}}


async def shown_after(ctx, *moves) -> tuple[dict, dict]:
    """What the API shows after these moves, each applied as its own increment."""
    notification = ObjectId()
    for move in moves:
        tally = Tally()
        tally.move(notification, *move[:3], **move[3] if len(move) > 3 else {})
        await ctx.deliveries.counts.apply(tally, ctx.clock.now())
    return shown(await ctx.store.counts.find_one({"_id": notification}))


@pytest.mark.gen_test
async def test_claims_take_from_queued_first_and_the_sum_stays_exact(ctx):
    assert await shown_after(
        ctx,
        (None, PENDING, 10),
        (WAITING, SENDING, 6),  # claimed before the publisher marked them: nothing is queued yet
        (PENDING, QUEUED, 4),  # the publisher marks the four still pending
    ) == ({"queued": 4, "sending": 6}, {})
    assert await shown_after(
        ctx,
        (None, PENDING, 10),
        (PENDING, QUEUED, 10),
        (WAITING, SENDING, 10),
        (SENDING, "sent", 5),
        (SENDING, "skipped", 1, {"target_reason": "unsubscribed"}),
        (SENDING, "failed", 4, {"target_reason": "odd.reason$%"}),
    ) == ({"sent": 5, "skipped": 1, "failed": 4}, {"unsubscribed": 1, "odd.reason$%": 4})
    assert await shown_after(
        ctx,
        (None, PENDING, 4),
        (WAITING, SENDING, 4),
        (SENDING, "failed", 4, {"target_reason": "odd.reason$%"}),
        ("failed", PENDING, 4, {"source_reason": "odd.reason$%"}),  # a redrive
    ) == ({"pending": 4}, {})


@pytest.mark.gen_test
async def test_counts_gone_negative_after_a_lost_increment_are_never_shown(ctx):
    # A journal replay of claims whose increment was lost; a claim counted before the marking before it.
    assert await shown_after(ctx, (SENDING, "sent", 3)) == ({"sent": 3}, {})
    assert await shown_after(
        ctx, (None, PENDING, 2), (WAITING, SENDING, 2), (PENDING, QUEUED, 2), (SENDING, "sent", 2)
    ) == ({"sent": 2}, {})


async def fan_out(ctx, recipients: int) -> dict:
    notification, _ = await ctx.notifications.create(
        ADMIN, {**CONTENT, "recipients": [f"u{i}" for i in range(recipients)]}
    )
    await ctx.publisher.drain(10)  # published and marked queued
    return notification


async def run_batch(ctx, notification: dict, kinds: list[OutcomeKind], count: bool = True) -> None:
    """What queue/batch.py does with one batch, without the broker: claim, decide, finish, one increment."""
    deliveries = ctx.deliveries
    waiting = await ctx.store.deliveries.find(
        {"notification_id": notification["_id"], "status": {"$in": ["pending", "queued"]}}, {"_id": 1}
    ).to_list(len(kinds))
    token = secrets.token_hex(8)
    now = ctx.clock.now()
    claimed = await deliveries.claim([d["_id"] for d in waiting], "test.1.1", now, 60, token)
    tally = Tally()
    for _ in claimed:
        tally.move(notification["_id"], WAITING, SENDING)
    policy = RetryPolicy.of(3, (1,))
    reasons = {OutcomeKind.SKIPPED: "unsubscribed", OutcomeKind.FAILED: "rejected"}
    changes = [
        (delivery_id, decide(kind, now, policy, reason=reasons.get(kind)).update())
        for delivery_id, kind in zip(claimed, kinds, strict=False)
    ]
    written = await deliveries.finish(token, changes)
    for _, status, reason in written:
        tally.move(notification["_id"], SENDING, status, target_reason=reason)
    if count:
        await deliveries.counts.apply(tally, now)


async def detail(ctx, notification: dict) -> tuple[dict, dict]:
    found = await ctx.notifications.get(ADMIN, str(notification["_id"]))
    return found["counts"], found["reasons"]


async def reconcile(ctx) -> int:
    return await ctx.deliveries.counts.reconcile(ctx.clock.now(), quiet=0, recheck=0, limit=10)


MIXED = [OutcomeKind.SENT] * 5 + [OutcomeKind.SKIPPED] * 2 + [OutcomeKind.FAILED, OutcomeKind.RETRY]


@pytest.mark.gen_test(timeout=60)
async def test_maintained_counts_equal_a_recount_after_mixed_outcomes(ctx):
    notification = await fan_out(ctx, 30)
    await run_batch(ctx, notification, MIXED)
    await run_batch(ctx, notification, [OutcomeKind.SENT] * 10)
    maintained = await detail(ctx, notification)
    assert maintained == await ctx.deliveries.counts.exact(notification["_id"])
    assert maintained == ({"queued": 11 + 1, "sent": 15, "skipped": 2, "failed": 1}, {"unsubscribed": 2, "rejected": 1})


@pytest.mark.gen_test(timeout=60)
async def test_the_reconciler_repairs_a_lost_increment_and_is_idempotent(ctx):
    notification = await fan_out(ctx, 20)
    await run_batch(ctx, notification, [OutcomeKind.SENT] * 10)
    await run_batch(ctx, notification, [OutcomeKind.SENT] * 5 + [OutcomeKind.SKIPPED] * 5, count=False)  # killed
    exact = await ctx.deliveries.counts.exact(notification["_id"])
    assert await detail(ctx, notification) == ({"queued": 10, "sent": 10}, {})
    assert await reconcile(ctx) == 1
    assert await detail(ctx, notification) == exact == ({"sent": 15, "skipped": 5}, {"unsubscribed": 5})
    stored = await ctx.store.counts.find_one({"_id": notification["_id"]})
    assert "open" not in stored  # final and checked: no further recount
    assert await reconcile(ctx) == 0
    assert await ctx.store.counts.find_one({"_id": notification["_id"]}) == stored


@pytest.mark.gen_test(timeout=60)
async def test_a_notification_under_way_stays_open_for_the_reconciler(ctx):
    notification = await fan_out(ctx, 10)
    await run_batch(ctx, notification, [OutcomeKind.SENT] * 4, count=False)
    assert await reconcile(ctx) == 1
    assert await detail(ctx, notification) == ({"queued": 6, "sent": 4}, {})
    assert (await ctx.store.counts.find_one({"_id": notification["_id"]}))["open"] is True
    assert await reconcile(ctx) == 0  # checked again (recheck=0), nothing to repair
    await run_batch(ctx, notification, [OutcomeKind.SENT] * 6, count=False)  # its last batch, increment lost
    assert await reconcile(ctx) == 1
    assert await detail(ctx, notification) == ({"sent": 10}, {})


async def overlapping_batches(ctx, notification, *beside):
    """Two batches of one notification at once whose claims overlap (a redelivered message), with `beside`."""
    waiting = await ctx.store.deliveries.find({"notification_id": notification["_id"]}, {"_id": 1}).to_list(None)
    ids = [d["_id"] for d in waiting]

    async def batch(part: list[ObjectId], kind: OutcomeKind) -> None:
        token = secrets.token_hex(8)
        now = ctx.clock.now()
        claimed = await ctx.deliveries.claim(part, f"test.1.{token}", now, 60, token)
        written = await ctx.deliveries.finish(
            token, [(i, decide(kind, now, reason="no_contact").update()) for i in claimed]
        )
        tally = Tally()
        for _, status, reason in written:
            tally.move(notification["_id"], WAITING, SENDING)
            tally.move(notification["_id"], SENDING, status, target_reason=reason)
        await ctx.deliveries.counts.apply(tally, now)

    await asyncio.gather(batch(ids[:25], OutcomeKind.SENT), batch(ids[15:], OutcomeKind.SKIPPED), *beside)


@pytest.mark.gen_test(timeout=60)
async def test_two_batches_of_one_notification_at_once_count_exactly(ctx):
    notification = await fan_out(ctx, 40)
    await overlapping_batches(ctx, notification)
    counts, reasons = await detail(ctx, notification)
    assert sum(counts.values()) == 40 and set(counts) == {"sent", "skipped"}
    assert (counts, reasons) == await ctx.deliveries.counts.exact(notification["_id"])
    await reconcile(ctx)
    assert (counts, reasons) == await detail(ctx, notification)


@pytest.mark.gen_test(timeout=60)
async def test_a_reconciler_racing_the_batches_is_repaired_by_its_next_pass(ctx):
    """A recount that lands between a batch's delivery writes and its increment counts that batch twice
    (seen under load); the increment reopens the document, so the next pass makes the counts exact."""
    notification = await fan_out(ctx, 40)
    await overlapping_batches(ctx, notification, reconcile(ctx), reconcile(ctx))
    await reconcile(ctx)
    counts, reasons = await detail(ctx, notification)
    assert sum(counts.values()) == 40 and set(counts) == {"sent", "skipped"}
    assert (counts, reasons) == await ctx.deliveries.counts.exact(notification["_id"])


@pytest.mark.gen_test(timeout=60)
async def test_the_reconciler_leaves_counts_alone_when_an_increment_comes_in_meanwhile(ctx, monkeypatch):
    notification = await fan_out(ctx, 10)
    await run_batch(ctx, notification, [OutcomeKind.SENT] * 3, count=False)
    counts = ctx.deliveries.counts
    count = counts._count

    async def racing(notification_id):
        found = await count(notification_id)
        await run_batch(ctx, notification, [OutcomeKind.SENT] * 2)  # counted, after the recount read it
        return found

    monkeypatch.setattr(counts, "_count", racing)
    assert await reconcile(ctx) == 0  # its recount is stale: not written
    monkeypatch.setattr(counts, "_count", count)
    assert await reconcile(ctx) == 1
    assert await detail(ctx, notification) == ({"queued": 5, "sent": 5}, {})


@pytest.mark.gen_test(timeout=60)
async def test_redrive_and_lease_release_are_counted(ctx):
    notification = await fan_out(ctx, 6)
    await run_batch(ctx, notification, [OutcomeKind.FAILED] * 3)
    assert await ctx.parked.redrive("admin", reason="rejected") == 3
    assert await detail(ctx, notification) == ({"pending": 3, "queued": 3}, {})
    token = secrets.token_hex(8)
    ids = [d["_id"] for d in await ctx.store.deliveries.find({"status": "queued"}).to_list(None)]
    await ctx.deliveries.claim(ids, "gone.1.1", ctx.clock.now(), -1, token)  # a lease already over
    tally = Tally()
    tally.move(notification["_id"], WAITING, SENDING, len(ids))
    await ctx.deliveries.counts.apply(tally, ctx.clock.now())
    assert len(await ctx.deliveries.release_expired(ctx.clock.now())) == 3
    assert await detail(ctx, notification) == ({"pending": 6}, {})
    assert await detail(ctx, notification) == await ctx.deliveries.counts.exact(notification["_id"])


@pytest.mark.gen_test(timeout=60)
async def test_a_notification_without_counts_is_counted_once_on_first_read(ctx):
    notification = await fan_out(ctx, 5)
    await ctx.store.counts.delete_many({})  # stored before counts were maintained
    assert await detail(ctx, notification) == ({"queued": 5}, {})
    assert await ctx.store.counts.count_documents({"_id": notification["_id"]}) == 1


@pytest.mark.gen_test(timeout=60)
async def test_a_read_between_a_stored_chunk_and_its_increment_never_counts_it_twice(ctx, monkeypatch):
    """A detail read while a create's deliveries are stored but not yet counted (in CI: a big create's
    background fan-out polled through the API showed 24 pending of 12)."""
    counts = ctx.notifications.counts
    apply = counts.apply
    read_between = []

    async def late(tally, now):
        for notification_id in tally.deltas:
            read_between.append(await counts.read(notification_id, now))
        await apply(tally, now)

    monkeypatch.setattr(counts, "apply", late)
    notification, _ = await ctx.notifications.create(ADMIN, {**CONTENT, "recipients": ["a", "b", "c"]})
    assert read_between == [({}, {})]
    assert await detail(ctx, notification) == ({"pending": 3}, {})


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("settings_overrides", [{"counts_maintained": False}])
async def test_with_counts_off_nothing_is_written_and_reads_count(ctx):
    notification = await fan_out(ctx, 5)
    await run_batch(ctx, notification, [OutcomeKind.SENT] * 2)
    assert await ctx.store.counts.count_documents({}) == 0
    assert await detail(ctx, notification) == ({"queued": 3, "sent": 2}, {})
    assert isinstance(ctx.deliveries.counts, Counts) and "counts reconciler" not in ctx.jobs.jobs


@pytest.mark.gen_test(timeout=60)
async def test_the_reconciler_waits_while_a_batchs_increment_may_be_on_its_way(ctx):
    """Seen in CI: counts quiet for a while, then a batch writes its deliveries and, before its increment,
    the reconciler recounts them; the increment then counted them a second time (33 expired of 20)."""
    notification = await fan_out(ctx, 10)
    now = ctx.clock.now()
    await ctx.store.counts.update_one(
        {"_id": notification["_id"]}, {"$set": {"changed_at": now - timedelta(seconds=60)}}
    )
    await run_batch(ctx, notification, [OutcomeKind.SENT] * 4, count=False)  # its increment not yet written
    counts = ctx.deliveries.counts
    assert await counts.reconcile(ctx.clock.now(), quiet=30, recheck=0, limit=10) == 0
    assert await detail(ctx, notification) == ({"queued": 10}, {})
    later = ctx.clock.now() + timedelta(seconds=31)  # the increment never came: lost
    assert await counts.reconcile(later, quiet=30, recheck=0, limit=10) == 1
    assert await detail(ctx, notification) == ({"queued": 6, "sent": 4}, {})
