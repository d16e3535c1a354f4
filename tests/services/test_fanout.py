"""Background fan-out (services/fanout.py): a big create answered before its deliveries exist, every recipient
sent once, a materializer stopped mid-way resumed by another process's, and idempotent repeats."""

from __future__ import annotations

import asyncio

import pytest
from bson import ObjectId
from pymongo.errors import AutoReconnect

from notifier.access import Principal, Role
from notifier.clock import ManualClock
from notifier.services import fanout
from notifier.services.fanout import in_progress
from notifier.services.notifications import NotificationService

from ..queue.conftest import add_users, settled
from ..support import eventually
from .test_notifications import fail_on_call

ADMIN = Principal(Role.ADMIN, "a1", "root")
CONTENT = {"title": "Hi {{ name }}", "text": "x", "channel": "email", "is_express": False, "content_id": None}
N = 300


@pytest.fixture
def settings_overrides(settings_overrides):
    return {**settings_overrides, "inline_recipients": 100}


@pytest.fixture
def small_chunks(monkeypatch):
    """Recipient chunks of 120 and progress records every 50 (of each chunk): records at 50, 100, 120, 170..."""
    monkeypatch.setattr(fanout, "RECIPIENT_CHUNK", 120)
    monkeypatch.setattr(fanout, "PROGRESS_EVERY", 50)


def gate(materializer, after: int) -> tuple[asyncio.Event, asyncio.Event]:
    """Let `after` calls store their deliveries, then hold every later one (stored, not yet recorded) until
    the first event is set; the second is set once one is held."""
    real, calls, release, holding = materializer.add_deliveries, [], asyncio.Event(), asyncio.Event()

    async def gated(*args):
        calls.append(1)
        result = await real(*args)
        if len(calls) > after:
            holding.set()
            await release.wait()
        return result

    materializer.add_deliveries = gated
    return release, holding


async def sent_once(ctx, smtp, notification_id: ObjectId, users: list[str]) -> None:
    assert await settled(ctx, notification_id, len(users)) == {"sent": len(users)}
    assert smtp.handler.count_by_recipient(str(notification_id)) == {f"{u}@example.com": 1 for u in users}
    assert await ctx.store.deliveries.count_documents({"notification_id": notification_id}) == len(users)


@pytest.mark.gen_test(timeout=90)
async def test_a_big_create_returns_before_its_deliveries_and_each_recipient_gets_one(ctx, workers, smtp, small_chunks):
    users = await add_users(ctx, N, display_name="Pat")
    release, holding = gate(ctx.notifications.materializer, after=0)
    notification, created = await ctx.notifications.create(ADMIN, {**CONTENT, "recipients": users})
    assert created and in_progress(notification)
    await asyncio.wait_for(holding.wait(), 20)
    assert await ctx.store.deliveries.count_documents({"notification_id": notification["_id"]}) == 50
    release.set()
    await sent_once(ctx, smtp, notification["_id"], users)
    done = await ctx.store.notifications.find_one({"_id": notification["_id"]})
    assert not in_progress(done) and done["materialized"] == N
    assert await ctx.store.recipient_chunks.count_documents({}) == 0


@pytest.mark.gen_test(timeout=90)
async def test_a_materializer_stopped_mid_way_is_resumed_by_another_once_its_lease_ran_out(
    ctx, workers, smtp, small_chunks
):
    """The first stops with a part stored but not recorded as progress; the second starts from the last record,
    the unique index drops the repeated part (not published again), and stores the rest."""
    users = await add_users(ctx, N)
    first = ctx.notifications.materializer
    _, holding = gate(first, after=3)
    notification, _ = await ctx.notifications.create(ADMIN, {**CONTENT, "recipients": users})
    await asyncio.wait_for(holding.wait(), 20)
    await first.stop()
    assert (await ctx.store.notifications.find_one({"_id": notification["_id"]}))["materialized"] == 120
    assert await ctx.store.deliveries.count_documents({"notification_id": notification["_id"]}) == 170
    clock = ManualClock(ctx.clock.now())
    other = NotificationService(ctx.store, ctx.settings, clock, ctx.publisher)
    assert await other.materializer.claim() is None  # the stopped one's lease still holds
    clock.advance(ctx.settings.materialize_lease + 1)
    await other.materializer.drain()
    await sent_once(ctx, smtp, notification["_id"], users)
    done = await ctx.store.notifications.find_one({"_id": notification["_id"]})
    assert not in_progress(done) and done["materialized"] == N


@pytest.mark.gen_test(timeout=60)
async def test_an_idempotent_repeat_returns_the_same_notification_and_never_fans_out_twice(ctx, small_chunks):
    release, _ = gate(ctx.notifications.materializer, after=0)
    data = {**CONTENT, "recipients": [f"u{i}" for i in range(N)]}
    first, created = await ctx.notifications.create(ADMIN, data, "big-1")
    again, created_again = await ctx.notifications.create(ADMIN, data, "big-1")
    assert created and not created_again
    assert again["_id"] == first["_id"] and in_progress(again)
    assert await ctx.store.recipient_chunks.count_documents({}) == 3  # the repeat's own list was taken back
    release.set()

    async def finished():
        stored = await ctx.store.notifications.find_one({"_id": first["_id"]})
        return not in_progress(stored)

    await eventually(finished, message="fan-out done")
    last, _ = await ctx.notifications.create(ADMIN, data, "big-1")
    assert last["_id"] == first["_id"] and not in_progress(last)
    await ctx.notifications.materializer.drain()
    assert await ctx.store.notifications.count_documents({}) == 1
    assert await ctx.store.deliveries.count_documents({}) == N
    assert await ctx.store.recipient_chunks.count_documents({}) == 0


@pytest.mark.gen_test(timeout=60)
async def test_an_express_fanout_never_waits_behind_a_regular_one(ctx):
    """The express lane stores its fan-out while the regular lane is held mid-way through a bigger one."""
    real, release = ctx.notifications.materializer.add_deliveries, asyncio.Event()

    async def regular_held(notification, *args):
        if not notification["is_express"]:
            await release.wait()
        return await real(notification, *args)

    ctx.notifications.materializer.add_deliveries = regular_held
    regular, _ = await ctx.notifications.create(ADMIN, {**CONTENT, "recipients": [f"r{i}" for i in range(N)]})
    express, _ = await ctx.notifications.create(
        ADMIN, {**CONTENT, "is_express": True, "recipients": [f"e{i}" for i in range(N)]}
    )

    async def express_done():
        return not in_progress(await ctx.store.notifications.find_one({"_id": express["_id"]}))

    await eventually(express_done, message="express fan-out stored")
    assert await ctx.store.deliveries.count_documents({"notification_id": express["_id"]}) == N
    assert await ctx.store.deliveries.count_documents({"notification_id": regular["_id"]}) == 0
    release.set()
    await eventually(
        lambda: ctx.store.deliveries.count_documents({"notification_id": regular["_id"]}),
        message="regular lane going again",
    )


@pytest.mark.gen_test
async def test_a_big_create_whose_notification_cannot_be_stored_leaves_no_recipient_list(ctx, monkeypatch):
    fail_on_call(ctx.store.notifications, "insert_one", 1, monkeypatch)
    with pytest.raises(AutoReconnect):
        await ctx.notifications.create(ADMIN, {**CONTENT, "recipients": [f"u{i}" for i in range(N)]})
    assert await ctx.store.recipient_chunks.count_documents({}) == 0
    assert await ctx.store.notifications.count_documents({}) == 0


@pytest.mark.gen_test(timeout=90)
async def test_a_big_create_cancelled_mid_fanout_stores_the_rest_cancelled_and_sends_none_of_it(
    ctx, workers, smtp, small_chunks
):
    """Cancelled while its first part is stored: what the consumers took before goes out once, everything
    else (the rest of the stored part, every part stored after) ends cancelled and is never sent."""
    users = await add_users(ctx, N)
    release, holding = gate(ctx.notifications.materializer, after=0)
    notification, _ = await ctx.notifications.create(ADMIN, {**CONTENT, "recipients": users})
    await asyncio.wait_for(holding.wait(), 20)
    answer = await ctx.notifications.cancel(ADMIN, str(notification["_id"]))
    release.set()

    counts = await settled(ctx, notification["_id"], N)
    assert set(counts) <= {"sent", "cancelled"} and counts["cancelled"] >= N - 50, counts
    assert counts["cancelled"] >= answer["cancelled"]
    received = smtp.handler.count_by_recipient(str(notification["_id"]))
    assert set(received.values()) <= {1} and sum(received.values()) == counts.get("sent", 0)
    cancelled = await ctx.store.deliveries.find(
        {"notification_id": notification["_id"], "status": "cancelled"}
    ).to_list(None)
    assert not {f"{d['user_id']}@example.com" for d in cancelled} & set(received)

    async def finished():
        stored = await ctx.store.notifications.find_one({"_id": notification["_id"]})
        return not in_progress(stored) and stored

    done = await eventually(finished, message="fan-out recorded as done")
    assert done["materialized"] == N
