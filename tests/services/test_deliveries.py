"""Deliveries' writes (services/deliveries.py) against the real database: while express deliveries are about,
each takes at most WRITE_CHUNK deliveries, and a claim, its outcomes and the queued marks still take every
delivery they should, once."""

from __future__ import annotations

import secrets

import pytest

from notifier.access import Principal, Role
from notifier.services.outcomes import OutcomeKind, decide

ADMIN = Principal(Role.ADMIN, "a1", "root")
CONTENT = {"title": "t", "text": "x", "channel": "inbox", "is_express": False, "content_id": None, "variables": {}}
CHUNK = 4


class Recorded:
    """The real collection, with the number of deliveries each write named (by `_id`)."""

    def __init__(self, collection):
        self.collection = collection
        self.sizes: list[int] = []

    def __getattr__(self, name):
        return getattr(self.collection, name)

    async def update_many(self, query, update, **kwargs):
        named = query.get("_id", {})
        self.sizes.append(len(named["$in"]) if isinstance(named, dict) and "$in" in named else 1)
        return await self.collection.update_many(query, update, **kwargs)

    async def bulk_write(self, requests, **kwargs):
        self.sizes.append(len(requests))
        return await self.collection.bulk_write(requests, **kwargs)


@pytest.mark.parametrize("settings_overrides", [{"write_chunk": CHUNK}])
@pytest.mark.gen_test
async def test_with_express_deliveries_about_writes_take_write_chunk_deliveries_and_every_one_once(ctx):
    recorded = Recorded(ctx.deliveries.collection)
    ctx.deliveries.collection = recorded
    stored = ctx.store.deliveries

    async def fan_out(is_express: bool) -> list:
        recipients = [f"{'x' if is_express else 'u'}{i}" for i in range(11)]
        notification, _ = await ctx.notifications.create(
            ADMIN, {**CONTENT, "is_express": is_express, "recipients": recipients}
        )
        await ctx.publisher.drain(10)  # published, then marked queued
        query = {"notification_id": notification["_id"], "status": "queued"}
        ids = [d["_id"] for d in await stored.find(query, {"_id": 1}).to_list(None)]
        assert len(ids) == 11
        return ids

    ids = await fan_out(is_express=False)
    assert recorded.sizes == [11]  # no express delivery about: one write
    recorded.sizes = []
    await fan_out(is_express=True)  # its publish tells this process that express deliveries are about
    assert sorted(recorded.sizes) == [3, 4, 4]
    recorded.sizes = []

    ctx.deliveries.express_seen()  # as a consumer's express batch does (and however slow this machine)
    token = secrets.token_hex(8)
    now = ctx.clock.now()
    claimed = await ctx.deliveries.claim(ids, "test.1.1", now, 60, token)
    assert sorted(claimed) == sorted(ids)
    assert await ctx.deliveries.claim(ids, "test.2.1", now, 60, secrets.token_hex(8)) == []  # taken once
    assert sorted(await ctx.deliveries.claim(ids, "test.1.1", now, 60, token)) == sorted(ids)  # a repeat: its own
    sent, skipped = decide(OutcomeKind.SENT, now), decide(OutcomeKind.SKIPPED, now, reason="unsubscribed")
    changes = [(i, (sent if n < 6 else skipped).update()) for n, i in enumerate(ids)]
    written = await ctx.deliveries.finish(token, changes)
    assert sorted(status for _, status, _ in written) == ["sent"] * 6 + ["skipped"] * 5
    assert len(recorded.sizes) >= 3 * 3 + 2 + 2 and max(recorded.sizes) <= CHUNK
    statuses = [d["status"] for d in await stored.find({"_id": {"$in": ids}}, {"status": 1}).to_list(None)]
    assert sorted(statuses) == ["sent"] * 6 + ["skipped"] * 5
