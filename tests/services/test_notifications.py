"""All or nothing: a notification create or an add-recipients call that fails half-way, against the real
database with one store call made to fail (fault injection)."""

from __future__ import annotations

import pytest
from pymongo.errors import AutoReconnect

from notifier.access import Principal, Role
from notifier.services import notifications as module

ADMIN = Principal(Role.ADMIN, "a1", "root")
CONTENT = {"title": "t", "text": "x", "channel": "inbox", "is_express": False, "content_id": None, "variables": {}}


def fail_on_call(collection, name: str, number: int, monkeypatch):
    """Make the `number`-th call of collection.<name> raise as a lost connection would."""
    real = getattr(collection, name)
    calls = []

    async def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == number:
            raise AutoReconnect("injected: connection lost")
        return await real(*args, **kwargs)

    monkeypatch.setattr(collection, name, flaky)


@pytest.mark.gen_test
async def test_a_create_that_fails_half_way_leaves_nothing(ctx, monkeypatch):
    monkeypatch.setattr(module, "INSERT_CHUNK", 10)
    fail_on_call(ctx.store.deliveries, "insert_many", 3, monkeypatch)
    with pytest.raises(AutoReconnect):
        await ctx.notifications.create(ADMIN, {**CONTENT, "recipients": [f"u{i}" for i in range(50)]})
    assert await ctx.store.notifications.count_documents({}) == 0
    assert await ctx.store.deliveries.count_documents({}) == 0


@pytest.mark.gen_test
async def test_a_failed_create_keeps_what_a_consumer_already_took(ctx, monkeypatch):
    """A delivery already claimed cannot be unsent: it stays, and the notification counts only what stayed."""
    monkeypatch.setattr(module, "INSERT_CHUNK", 10)
    real = ctx.store.deliveries.insert_many
    calls = []

    async def claim_then_fail(documents, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            await ctx.store.deliveries.update_one({"user_id": "u0"}, {"$set": {"status": "sending"}})
            raise AutoReconnect("injected: connection lost")
        return await real(documents, *args, **kwargs)

    monkeypatch.setattr(ctx.store.deliveries, "insert_many", claim_then_fail)
    with pytest.raises(AutoReconnect):
        await ctx.notifications.create(ADMIN, {**CONTENT, "recipients": [f"u{i}" for i in range(30)]})
    kept = await ctx.store.notifications.find_one({})
    assert kept["recipient_count"] == 1
    assert await ctx.store.deliveries.distinct("user_id", {}) == ["u0"]


@pytest.mark.gen_test
async def test_with_an_idempotency_key_a_failed_create_is_finished_by_the_retry(ctx, monkeypatch):
    monkeypatch.setattr(module, "INSERT_CHUNK", 10)
    fail_on_call(ctx.store.deliveries, "insert_many", 2, monkeypatch)
    data = {**CONTENT, "recipients": [f"u{i}" for i in range(30)]}
    with pytest.raises(AutoReconnect):
        await ctx.notifications.create(ADMIN, data, "key-1")
    notification, created = await ctx.notifications.create(ADMIN, data, "key-1")
    assert created and notification["complete"]
    assert await ctx.store.deliveries.count_documents({}) == 30


@pytest.mark.gen_test
async def test_add_recipients_that_failed_after_storing_is_counted_by_the_next_call(ctx, monkeypatch):
    notification, _ = await ctx.notifications.create(ADMIN, {**CONTENT, "recipients": ["a"]})
    fail_on_call(ctx.store.notifications, "update_one", 1, monkeypatch)
    with pytest.raises(AutoReconnect):
        await ctx.notifications.add_recipients(ADMIN, str(notification["_id"]), ["b", "c"])
    assert await ctx.notifications.add_recipients(ADMIN, str(notification["_id"]), ["b", "c", "d"]) == (1, 2)
    stored = await ctx.store.notifications.find_one({"_id": notification["_id"]})
    assert stored["recipient_count"] == 4 == await ctx.store.deliveries.count_documents({})
