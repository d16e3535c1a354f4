"""The consumer pool: sizing within [min, max] counting other instances' consumers, restarts, recovery."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import timedelta

import aiormq
import pytest
from bson import ObjectId

from notifier.queue.journal import journal_path

from ..support import eventually
from .conftest import add_users, settled


def assert_each_exactly_once_or_failed(smtp, deliveries, notification_id):
    received = smtp.handler.count_by_recipient(notification_id)
    assert all(n == 1 for n in received.values()), {r: n for r, n in received.items() if n > 1}
    for delivery in deliveries:
        address = f"{delivery['user_id']}@example.com"
        if delivery["status"] == "sent":
            assert received[address] == 1, delivery
        else:
            assert delivery["status"] == "failed" and delivery["reason"] == "interrupted", delivery
    assert sum(1 for d in deliveries if d["status"] == "sent") == sum(received.values()) - sum(
        received[f"{d['user_id']}@example.com"] for d in deliveries if d["status"] == "failed"
    )


@pytest.fixture
def settings_overrides(pipeline_settings, request):
    return {**pipeline_settings, **getattr(request, "param", {})}


@pytest.mark.gen_test(timeout=180)
@pytest.mark.parametrize("settings_overrides", [{"consumers_start": 2, "consumers_min": 2}], indirect=True)
async def test_kill_9_of_consumers_mid_run_sends_each_message_at_most_once(api, admin, ctx, smtp, workers):
    # 900 recipients and three kills: tests/test_faults.py drills the same guarantee with 1,200 out of process.
    users = await add_users(ctx, 900)
    created = (
        await api.post(
            "/api/v1/notifications",
            {"title": "t", "text": "x", "channel": "email", "recipients": users},
            auth=admin.header,
        )
    ).body
    for kill_after in (150, 400, 650):
        await eventually(lambda count=kill_after: _received(smtp, count), timeout=60, message=f"{kill_after} received")
        # Right after a kill there may be no ready consumer for a moment (CI found none once): wait for one.
        victim = await eventually(lambda: _a_ready_consumer(ctx), timeout=60, message="a ready consumer")
        os.kill(victim.pid, signal.SIGKILL)
    await settled(ctx, ObjectId(created["id"]), 900, timeout=120)
    deliveries = await ctx.store.deliveries.find({"notification_id": ObjectId(created["id"])}).to_list(None)
    assert_each_exactly_once_or_failed(smtp, deliveries, created["id"])
    assert ctx.pool.restarts == 3
    await eventually(lambda: _consumers(ctx, 2), timeout=30, message="pool back to two consumers")


async def _received(smtp, count):
    return len(smtp.received) >= count


async def _a_ready_consumer(ctx):
    return next((p for p in ctx.pool.processes.values() if p.ready and not p.stopping), None)


async def _consumers(ctx, count):
    return sum(1 for p in ctx.pool.processes.values() if p.ready) == count


@pytest.mark.gen_test(timeout=120)
async def test_journal_of_a_dead_consumer_is_recovered(ctx, smtp):
    """What the journal says was sent is recorded; a begun email is failed as interrupted; the rest is requeued."""
    from notifier.queue.journal import Journal
    from notifier.queue.pool import ConsumerPool

    users = await add_users(ctx, 3)
    principal = await _admin_principal(ctx)
    notification, _ = await ctx.notifications.create(
        principal,
        {"title": "t", "text": "x", "channel": "email", "is_express": False, "content_id": None, "recipients": users},
    )
    await ctx.publisher.drain(5)
    ids = [d["_id"] for d in await ctx.store.deliveries.find({}).sort("user_id", 1).to_list(None)]
    token = "t1"
    claimed = await ctx.deliveries.claim(ids, "host.1.1", ctx.clock.now(), lease=300, token=token)
    assert len(claimed) == 3
    journal = Journal(journal_path(ctx.settings.journal_dir, "host.1.1"))
    journal.begin(str(ids[0]), token, False)
    journal.sent(str(ids[0]), token)
    journal.begin(str(ids[1]), token, False)
    journal.close(remove=False)
    pool = ConsumerPool(ctx.settings, ctx.broker, ctx.topology, ctx.recovery)
    await pool.replay_journal("host.1.1")
    await ctx.publisher.drain(5)
    by_user = {d["user_id"]: d for d in await ctx.store.deliveries.find({}).to_list(None)}
    assert by_user["u0"]["status"] == "sent"
    assert (by_user["u1"]["status"], by_user["u1"]["reason"]) == ("failed", "interrupted")
    assert by_user["u2"]["status"] == "queued" and by_user["u2"]["is_sent_to_queue"] is True
    assert not journal_path(ctx.settings.journal_dir, "host.1.1").exists()


async def _admin_principal(ctx):
    from notifier.access import Principal, Role

    return Principal(Role.ADMIN, "test", "test")


@pytest.mark.gen_test(timeout=90)
@pytest.mark.parametrize(
    "settings_overrides", [{"consumers_start": 3, "consumers_min": 1, "consumers_max": 3}], indirect=True
)
async def test_existing_consumers_count_toward_the_maximum(ctx, settings):
    """Two consumers of another instance already on the queue: only one more may start (max 3)."""
    connection = await aiormq.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        await ctx.topology.declare(channel)
        for tag in ("other-1", "other-2"):
            await channel.basic_consume(ctx.topology.queues["regular"], lambda m: None, consumer_tag=tag)
        await ctx.start_workers()
        assert len(ctx.pool.processes) == 1
        ours = next(iter(ctx.pool.processes.values()))

        async def ready_and_kept():
            # Checked as often as can be while it starts: attached but not yet announced ready, it
            # must not be taken for a third foreign consumer and stopped.
            await ctx.pool.check()
            assert not ours.stopping and len(ctx.pool.processes) == 1
            return ours.ready

        await eventually(ready_and_kept, timeout=60, interval=0.01, message="our consumer ready")

        async def two_others_reported():
            # A consumer whose first connection failed while it set up may stay attached on it until that
            # connection's close is through: the count the pool reports settles at the two foreign ones.
            await ctx.pool.check()
            assert len(ctx.pool.processes) == 1
            described = ctx.pool.describe()
            return described["others"] == 2 and described["max"] == 3

        await eventually(two_others_reported, timeout=30, message="two other consumers reported")
    finally:
        await ctx.stop_workers()
        await connection.close()


@pytest.mark.gen_test(timeout=150)
@pytest.mark.parametrize(
    "settings_overrides",
    [{"consumers_start": 1, "consumers_min": 1, "consumers_max": 3, "backlog_per_consumer": 100}],
    indirect=True,
)
async def test_pool_grows_with_backlog_and_shrinks_when_idle(ctx, smtp, workers):
    users = await add_users(ctx, 1000)  # more than the frozen consumer's prefetch: a ready backlog remains
    principal = await _admin_principal(ctx)
    async with _paused(ctx):
        await ctx.notifications.create(
            principal,
            {
                "title": "t",
                "text": "x",
                "channel": "email",
                "is_express": False,
                "content_id": None,
                "recipients": users,
            },
        )
        await ctx.publisher.drain(10)
        try:
            await eventually(lambda: _grown(ctx, 3), timeout=45, message="pool grown to the maximum")
        except AssertionError as error:  # CI once timed out here, unexplained: say what the pool saw
            pool = ctx.pool
            seen = f"{len(pool.processes)} processes, {pool.restarts} restarts, {pool.last_stats}"
            raise AssertionError(f"{error}; {seen}") from None
        assert len(ctx.pool.processes) == 3
    await eventually(lambda: _shrunk(ctx), timeout=60, message="pool back to the minimum")


class _paused:
    """Every consumer, running or spawned while inside, is frozen (SIGSTOP), so the backlog stays put
    whichever pool check (the test's or the periodic one) sees it; beyond the first consumer's prefetch,
    messages wait ready in the queue."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.spawn = ctx.pool.spawn

    async def _spawn_frozen(self):
        consumer = await self.spawn()
        consumer.process.send_signal(signal.SIGSTOP)
        return consumer

    async def __aenter__(self):
        for process in self.ctx.pool.processes.values():
            process.process.send_signal(signal.SIGSTOP)
        self.ctx.pool.spawn = self._spawn_frozen

    async def __aexit__(self, *exc):
        self.ctx.pool.spawn = self.spawn
        for process in self.ctx.pool.processes.values():
            process.process.send_signal(signal.SIGCONT)


async def _stop_began(ctx):
    return not ctx.pool.running


async def _grown(ctx, count):
    await ctx.pool.check()
    return len(ctx.pool.processes) == count


async def _shrunk(ctx):
    await ctx.pool.check()
    return len([p for p in ctx.pool.processes.values() if not p.stopping]) == 1


@pytest.mark.gen_test(timeout=90)
async def test_a_consumer_spawned_while_the_pool_stops_is_stopped_too(ctx):
    """A pool check that was creating a consumer when stop() began: that consumer must not live on, attached
    to the queues, beside the stopped pool (the next test on those queues would count it as another
    instance's)."""
    await ctx.start_workers()
    await ctx.jobs.stop()
    stopping = asyncio.ensure_future(ctx.pool.stop())
    await eventually(lambda: _stop_began(ctx), message="the pool's stop began")  # it has taken its list
    late = await ctx.pool.spawn()
    try:
        assert await asyncio.wait_for(late.process.wait(), 30) is not None
    finally:
        if late.process.returncode is None:
            late.process.kill()
        await stopping
    assert late.stopping and late.id not in ctx.pool.processes


@pytest.mark.gen_test(timeout=60)
async def test_sigterm_drains_and_exits_zero(ctx, workers):
    consumer = next(iter(ctx.pool.processes.values()))
    await ctx.pool.stop_one(consumer)
    assert await asyncio.wait_for(consumer.process.wait(), 30) == 0
    assert not journal_path(ctx.settings.journal_dir, consumer.id).exists()


@pytest.mark.gen_test(timeout=90)
# No periodic pool check: only the test's own check may apply the journal, after the reconciler has run.
@pytest.mark.parametrize("settings_overrides", [{"pool_check_interval": 3600}], indirect=True)
async def test_claims_of_a_dead_consumer_wait_for_its_journal_not_for_lease_expiry(api, admin, ctx, smtp, workers):
    """A consumer died and the database was too slow to apply its journal: until the pool manages to, its
    claims stay put (releasing them on lease expiry would send them twice); the next pool check applies it."""
    users = await add_users(ctx, 1)
    created = (
        await api.post(
            "/api/v1/notifications",
            {"title": "t", "text": "x", "channel": "email", "recipients": users},
            auth=admin.header,
        )
    ).body
    await settled(ctx, ObjectId(created["id"]), 1)
    dead = f"{ctx.pool.prefix}.99"
    ctx.pool.unrecovered.add(dead)  # before its claim exists: the reconciler job runs every 0.5 s meanwhile
    delivery = await ctx.store.deliveries.find_one({})
    await ctx.store.deliveries.update_one(
        {"_id": delivery["_id"]},
        {
            "$set": {
                "status": "sending",
                "claim": "t1",
                "claimed_by": dead,
                "lease_until": ctx.clock.now() - timedelta(seconds=5),
            }
        },
    )
    path = journal_path(ctx.settings.journal_dir, dead)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"B {delivery['_id']} t1 0\nS {delivery['_id']} t1\n")

    assert await ctx.recovery.reconcile_leases() == 0
    assert (await ctx.store.deliveries.find_one({"_id": delivery["_id"]}))["status"] == "sending"
    await ctx.pool.check()
    assert (await ctx.store.deliveries.find_one({"_id": delivery["_id"]}))["status"] == "sent"
    assert dead not in ctx.pool.unrecovered and not path.exists()


@pytest.mark.gen_test(timeout=90)
# The lease reconciler runs only when the test calls it: a run of its own between the test's writes once
# released a claim before the test had set up who holds it.
@pytest.mark.parametrize(
    "settings_overrides", [{"pool_check_interval": 3600, "reconcile_interval": 3600}], indirect=True
)
async def test_a_claim_written_after_a_dead_consumers_replay_is_released_at_once(api, admin, ctx, smtp, workers):
    """A consumer was killed while its claim waited in the database; the pool replayed its journal (nothing to
    settle yet), then the database applied the claim. The consumer never saw that claim, so nothing of it was
    sent: the next lease reconciler run releases it, though its lease has minutes left, and it is delivered."""
    users = await add_users(ctx, 3)
    created = (
        await api.post(
            "/api/v1/notifications",
            {"title": "t", "text": "x", "channel": "inbox", "recipients": users},
            auth=admin.header,
        )
    ).body
    await settled(ctx, ObjectId(created["id"]), 3)
    dead = f"{ctx.pool.prefix}.98"
    await ctx.pool.replay_journal(dead)
    await ctx.store.deliveries.update_many(
        {"notification_id": ObjectId(created["id"])}, {"$set": {"status": "queued", "is_sent_to_queue": True}}
    )
    ids = [
        d["_id"] for d in await ctx.store.deliveries.find({"notification_id": ObjectId(created["id"])}).to_list(None)
    ]
    assert len(await ctx.deliveries.claim(ids, dead, ctx.clock.now(), lease=300, token="late")) == 3
    # Another live consumer's claim, and a claim of a consumer replayed a lease ago, stay put.
    live = next(iter(ctx.pool.processes))
    await ctx.store.deliveries.update_one({"_id": ids[0]}, {"$set": {"claimed_by": live}})
    ctx.pool._replayed[f"{ctx.pool.prefix}.97"] = 0.0
    await ctx.store.deliveries.update_one({"_id": ids[1]}, {"$set": {"claimed_by": f"{ctx.pool.prefix}.97"}})

    assert await ctx.recovery.reconcile_leases() == 1
    assert f"{ctx.pool.prefix}.97" not in ctx.pool.replayed()
    await eventually(lambda: _status(ctx, ids[2], "sent"), timeout=30, message="the released delivery sent again")
    for kept in ids[:2]:
        assert (await ctx.store.deliveries.find_one({"_id": kept}))["status"] == "sending"


async def _status(ctx, delivery_id, status):
    return (await ctx.store.deliveries.find_one({"_id": delivery_id}))["status"] == status
