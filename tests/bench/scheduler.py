"""Schedules fired per second when N are due in one tick, beside the bare database work of a firing
(claim the occurrence, store its delivery, advance the schedule) done with motor at the same concurrency."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from bson import ObjectId

from notifier.access import Principal, Role
from notifier.clock import ManualClock
from notifier.context import create_context
from notifier.services.notifications import new_delivery
from notifier.services.schedules import FIRING_AT_ONCE
from notifier.settings import Settings

from .harness import AMQP_URL

START = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
CONTENT = {
    "title": "Digest",
    "text": "Hi {{ name }}",
    "channel": "inbox",
    "is_express": False,
    "content_id": None,
    "variables": {},
}


async def _fire(mongo_url: str, n: int) -> float:
    settings = Settings.from_env(
        {},
        mongo_url=mongo_url,
        mongo_db=f"bench_sched_{uuid.uuid4().hex[:8]}",
        amqp_url=AMQP_URL,
        queue_prefix=f"bench.{uuid.uuid4().hex[:8]}.",
    )
    clock = ManualClock(START)
    ctx = await create_context(settings, mongo_url, clock)
    await ctx.broker.wait_connected(10)
    try:
        admin = Principal(Role.ADMIN, "bench", "bench")
        notification = {**CONTENT, "author": admin.as_author(), "created_at": START, "recipient_count": 0}
        await ctx.store.notifications.insert_one(notification)
        for start in range(0, n, 100):
            await asyncio.gather(
                *(
                    ctx.schedules.create(
                        admin,
                        {"notification_id": str(notification["_id"]), "user_ids": [f"u{i}"], "interval_seconds": 60},
                    )
                    for i in range(start, min(n, start + 100))
                )
            )
        clock.advance(60)
        started = time.perf_counter()
        fired = await ctx.schedules.fire_due()
        elapsed = time.perf_counter() - started
        assert fired == n, f"{fired} of {n} fired"
        await ctx.publisher.drain(60)
        return n / elapsed
    finally:
        await ctx.store.client.drop_database(settings.mongo_db)
        await ctx.close()
        from ..served import delete_queues

        await delete_queues(AMQP_URL, settings.queue_prefix)


async def _bare(mongo_url: str, n: int) -> float:
    from notifier.store import Store, connect

    store = Store(connect(mongo_url, 5000), f"bench_bare_{uuid.uuid4().hex[:8]}")
    await store.ensure_indexes()
    notification = {"_id": ObjectId(), "channel": "inbox", "is_express": False}
    schedules = [{"_id": ObjectId(), "next_run_at": START, "enabled": True} for _ in range(n)]
    await store.schedules.insert_many(schedules)
    slots = asyncio.Semaphore(FIRING_AT_ONCE)

    async def fire(index, schedule):
        async with slots:
            key = f"{schedule['_id']}@x"
            await store.schedule_runs.insert_one({"_id": key, "status": "firing"})
            await store.deliveries.insert_one(new_delivery(notification, f"u{index}", key, START))
            await store.schedules.update_one(
                {"_id": schedule["_id"], "next_run_at": START}, {"$set": {"next_run_at": START + timedelta(minutes=1)}}
            )

    started = time.perf_counter()
    await asyncio.gather(*(fire(i, s) for i, s in enumerate(schedules)))
    elapsed = time.perf_counter() - started
    await store.client.drop_database(store.db.name)
    store.close()
    return n / elapsed


def measure(mongo_url: str, n: int) -> dict[str, float]:
    return {"scheduler": asyncio.run(_fire(mongo_url, n)), "bare": asyncio.run(_bare(mongo_url, n))}
