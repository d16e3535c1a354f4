"""The publisher's queued marks: confirmed deliveries are marked queued once each, in few writes."""

from __future__ import annotations

import asyncio

import pytest

from notifier.access import Principal, Role

from ..support import eventually

AUTHOR = Principal(Role.ADMIN, "test", "test")


async def _confirmed_deliveries(ctx, count: int) -> list:
    """`count` one-recipient notifications, published one by one (as schedules firing at once are)."""
    for i in range(count):
        await ctx.notifications.create(
            AUTHOR,
            {
                "title": "t",
                "text": "x",
                "channel": "inbox",
                "is_express": False,
                "content_id": None,
                "recipients": [f"u{i}"],
            },
        )

    async def all_confirmed():
        return len(ctx.publisher._confirmed) == count

    await eventually(all_confirmed, timeout=30, message=f"{count} confirms")
    return list(ctx.publisher._confirmed)


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("settings_overrides", [{"outbox_grace": 3600}])  # no timer: the test marks
async def test_confirmed_deliveries_are_marked_once_each_in_a_few_writes(ctx, monkeypatch):
    """Two markings at once (a slow one and the next timer's) never mark the same delivery twice, and the
    deliveries confirmed within one second share a write."""
    ids = await _confirmed_deliveries(ctx, 60)
    marked: list = []
    real = ctx.publisher.deliveries.mark_queued

    async def counted(chunk, now, due=None, **counting):
        marked.append(list(chunk))
        await real(chunk, now, due, **counting)

    monkeypatch.setattr(ctx.publisher.deliveries, "mark_queued", counted)
    await asyncio.gather(ctx.publisher.mark_confirmed(), ctx.publisher.mark_confirmed())
    every = [delivery_id for chunk in marked for delivery_id in chunk]
    assert sorted(every) == sorted(ids)
    assert len(marked) <= 10, f"{len(marked)} writes for {len(ids)} deliveries confirmed within seconds"
    queued = await ctx.store.deliveries.count_documents({"status": "queued", "is_sent_to_queue": True})
    assert queued == len(ids)
