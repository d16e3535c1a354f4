"""Pipeline fixtures: a real SMTP server, fast job intervals, and the real consumer pool (subprocesses)."""

from __future__ import annotations

import asyncio

import pytest

from notifier.domain import FINAL_STATUSES
from notifier.queue.consumer import Consumer

from ..smtp_server import SmtpServer
from ..support import TEST_ADMIN, eventually


@pytest.fixture
def consumer(io_loop, ctx):
    """One consumer run in this process (its log lines reach caplog), stopped and awaited afterwards."""
    consumer = Consumer(ctx.settings, "test-host.1.1")
    consumer.running = asyncio.ensure_future(consumer.run())
    yield consumer
    consumer.stopping.set()
    io_loop.run_sync(lambda: asyncio.wait_for(consumer.running, 60))


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def pipeline_settings(smtp, tmp_path):
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "journal_dir": str(tmp_path / "journal"),
        "retry_delays": (0.2, 0.4),
        "max_attempts": 3,
        "outbox_grace": 0.5,
        "outbox_sweep_interval": 0.3,
        "reconcile_interval": 0.5,
        "pool_check_interval": 0.5,
        "consumers_min": 1,
        "consumers_start": 1,
        "consumers_max": 2,
        "pacing_batch": 0,
        "smtp_timeout": 5,
        "http_timeout": 5,
    }


@pytest.fixture
def settings_overrides(pipeline_settings):
    return pipeline_settings


@pytest.fixture
def workers(io_loop, ctx):
    """The periodic jobs and the consumer pool, as `notifier serve` runs them; ready when consumers are."""
    io_loop.run_sync(ctx.start_workers)

    async def consumers_ready():
        processes = list(ctx.pool.processes.values())
        return len(processes) >= ctx.settings.consumers_start and all(p.ready for p in processes)

    io_loop.run_sync(lambda: eventually(consumers_ready, timeout=30, message="consumers ready"))
    yield ctx
    io_loop.run_sync(ctx.stop_workers)


async def add_users(ctx, count: int, prefix: str = "u", **fields) -> list[str]:
    ids = [f"{prefix}{i}" for i in range(count)]
    for start in range(0, count, 1000):
        await ctx.users.bulk_upsert(
            TEST_ADMIN, [{"user_id": uid, "email": f"{uid}@example.com", **fields} for uid in ids[start : start + 1000]]
        )
    return ids


async def counts(ctx, notification_id) -> dict:
    groups = ctx.store.deliveries.aggregate(
        [{"$match": {"notification_id": notification_id}}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
    )
    return {g["_id"]: g["n"] async for g in groups}


async def settled(ctx, notification_id, total: int, timeout: float = 60) -> dict:
    """Wait until every delivery of the notification has a final status; return the counts."""

    last: dict = {}

    async def done():
        last.clear()
        last.update(await counts(ctx, notification_id))
        finished = sum(last.get(s, 0) for s in FINAL_STATUSES)
        return dict(last) if finished == total else None

    try:
        return await eventually(done, timeout=timeout, interval=0.2, message="all deliveries settled")
    except AssertionError as error:
        raise AssertionError(f"{error}; counts by status: {last}") from None
