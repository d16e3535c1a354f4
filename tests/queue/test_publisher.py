"""The publisher: confirmed deliveries are marked queued once each, in few writes; express has windows of its own."""

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

    async def counted(notifications, now, due=None):
        marked.append(list(notifications))
        await real(notifications, now, due)

    monkeypatch.setattr(ctx.publisher.deliveries, "mark_queued", counted)
    await asyncio.gather(ctx.publisher.mark_confirmed(), ctx.publisher.mark_confirmed())
    every = [delivery_id for chunk in marked for delivery_id in chunk]
    assert sorted(every) == sorted(ids)
    assert len(marked) <= 10, f"{len(marked)} writes for {len(ids)} deliveries confirmed within seconds"
    queued = await ctx.store.deliveries.count_documents({"status": "queued", "is_sent_to_queue": True})
    assert queued == len(ids)


def _deliveries(count: int, is_express: bool) -> list[dict]:
    from bson import ObjectId

    notification = ObjectId()
    return [
        {
            "_id": ObjectId(),
            "notification_id": notification,
            "user_id": f"u{i}",
            "channel": "inbox",
            "is_express": is_express,
        }
        for i in range(count)
    ]


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("settings_overrides", [{"outbox_grace": 3600, "pacing_batch": 0}])
async def test_an_express_publish_never_waits_for_a_regular_fan_outs_windows(ctx):
    """Six regular publishes of one confirm window each share two windows in flight; an express one made
    once the first is confirmed has windows of its own, so it does not queue behind the other four (the
    channel confirms in order: at most the two in flight finish before it)."""
    from notifier.queue.publisher import CONFIRM_WINDOW

    regular = [asyncio.ensure_future(ctx.publisher.publish(_deliveries(CONFIRM_WINDOW, False))) for _ in range(6)]

    async def first_window_confirmed():
        return len(ctx.publisher._confirmed) >= CONFIRM_WINDOW

    await eventually(first_window_confirmed, timeout=30, message="a regular window confirmed")
    assert await ctx.publisher.publish(_deliveries(1, True)) == 1
    finished = sum(1 for task in regular if task.done())
    assert finished <= 3, f"the express publish waited for {finished} regular windows"
    assert await asyncio.gather(*regular) == [CONFIRM_WINDOW] * 6
