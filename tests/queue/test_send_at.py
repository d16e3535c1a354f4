"""send_at: nothing goes before it, everything goes once after it, also when no server was running at that
instant; a cancel before it means never."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from notifier.domain import DeliveryStatus
from notifier.queue.connection import BrokerConnection
from notifier.queue.publisher import Publisher
from notifier.services.counts import SENDING, WAITING, Tally
from notifier.services.leases import JobLease

from ..support import TEST_ADMIN, eventually
from .conftest import add_users, settled

N = 30
CONTENT = {"title": "t", "text": "x", "channel": "inbox", "is_express": False, "content_id": None, "variables": {}}


async def _passed(ctx, instant: datetime) -> bool:
    return ctx.clock.now() > instant


async def _statuses(ctx, notification_id: str) -> dict:
    return await ctx.deliveries.statuses(ObjectId(notification_id))


async def _create(api, admin, users, send_at: datetime, **fields) -> dict:
    response = await api.post(
        "/api/v1/notifications",
        {"title": "t", "text": "x", "channel": "email", "recipients": users, "send_at": send_at.isoformat(), **fields},
        auth=admin.header,
    )
    assert response.status == 201, response.body
    return response.body


@pytest.mark.gen_test(timeout=90)
async def test_nothing_goes_before_send_at_and_each_recipient_once_after(api, admin, ctx, smtp, workers):
    users = await add_users(ctx, N)
    send_at = ctx.clock.now() + timedelta(seconds=2)
    created = await _create(api, admin, users, send_at)
    assert created["send_at"] is not None
    assert await _statuses(ctx, created["id"]) == {"scheduled": N}
    detail = (await api.get(f"/api/v1/notifications/{created['id']}", auth=admin.header)).body
    assert detail["counts"] == {"scheduled": N}

    assert await settled(ctx, ObjectId(created["id"]), N) == {"sent": N}
    received = smtp.handler.count_by_recipient(created["id"])
    assert received == {f"{u}@example.com": 1 for u in users}
    assert all(r.at >= send_at.timestamp() for r in smtp.received if r.notification_id == created["id"])


@pytest.mark.gen_test(timeout=90)
async def test_deliveries_due_while_no_server_ran_go_once_it_is_back(api, admin, ctx, smtp, settings):
    """No wake-up runs while the send_at passes (the server is down); once the workers start (a restart),
    every delivery goes, once, as soon as possible."""
    users = await add_users(ctx, N)
    send_at = ctx.clock.now() + timedelta(seconds=1)
    created = await _create(api, admin, users, send_at)
    await eventually(lambda: _passed(ctx, send_at + timedelta(seconds=1)), timeout=10, message="send_at passed")
    assert await _statuses(ctx, created["id"]) == {"scheduled": N}
    assert not smtp.received
    await ctx.start_workers()
    try:
        assert await settled(ctx, ObjectId(created["id"]), N) == {"sent": N}
        assert smtp.handler.count_by_recipient(created["id"]) == {f"{u}@example.com": 1 for u in users}
    finally:
        await ctx.stop_workers()


def _other_instance(ctx) -> Publisher:
    lease = JobLease(ctx.store, ctx.clock, "scheduled wake-up", "other-host:8004", seconds=30)
    return Publisher(ctx.broker, ctx.topology, ctx.deliveries, ctx.settings, ctx.clock, lease)


@pytest.mark.gen_test(timeout=90)
async def test_two_instances_wake_ups_at_once_publish_each_delivery_once(api, admin, ctx, smtp, workers):
    """Two instances' wake-ups meeting the same due deliveries: the one holding the lease publishes them all,
    the other none; once the holder stops, the other takes over at once."""
    users = await add_users(ctx, N)
    send_at = ctx.clock.now() + timedelta(seconds=30)
    created = await _create(api, admin, users, send_at)
    await ctx.store.deliveries.update_many(
        {"notification_id": ObjectId(created["id"])}, {"$set": {"available_at": ctx.clock.now()}}
    )
    other = _other_instance(ctx)
    await ctx.jobs.stop()  # the wake-ups of this test only
    first, second = await asyncio.gather(ctx.publisher.publish_scheduled(), other.publish_scheduled())
    assert sorted((first, second)) == [0, N], (first, second)
    assert await settled(ctx, ObjectId(created["id"]), N) == {"sent": N}
    assert smtp.handler.count_by_recipient(created["id"]) == {f"{u}@example.com": 1 for u in users}
    holder, waiting = (ctx.publisher, other) if first else (other, ctx.publisher)
    assert await waiting.wake_lease.take() is False
    await holder.wake_lease.release()
    assert await waiting.wake_lease.take() is True


@pytest.mark.gen_test(timeout=60)
async def test_a_woken_delivery_claimed_before_its_queued_mark_is_sent_once_and_counted(ctx):
    """The wake-up writes nothing before the broker confirms: a consumer may claim the delivery while it is
    still scheduled (its instant come), never before its instant, and never once cancelled."""
    notification, _ = await ctx.notifications.create(
        TEST_ADMIN, {**CONTENT, "recipients": ["a", "b", "c"], "send_at": ctx.clock.now() + timedelta(seconds=30)}
    )
    deliveries = {d["user_id"]: d["_id"] for d in await ctx.store.deliveries.find({}).to_list(None)}
    now = ctx.clock.now()
    assert await ctx.deliveries.claim(list(deliveries.values()), "early.1.1", now, 60, "t0") == []
    await ctx.store.deliveries.update_many({}, {"$set": {"available_at": now}})
    await ctx.deliveries.cancel(notification["_id"], ["c"], now)
    claimed = await ctx.deliveries.claim(list(deliveries.values()), "woken.1.1", ctx.clock.now(), 60, "t1")
    assert sorted(claimed) == sorted([deliveries["a"], deliveries["b"]])
    tally = Tally()
    tally.move(notification["_id"], WAITING, SENDING, len(claimed))
    await ctx.deliveries.counts.apply(tally, ctx.clock.now())
    detail = await ctx.notifications.get(TEST_ADMIN, str(notification["_id"]))
    assert detail["counts"] == {"sending": 2, "cancelled": 1}
    assert detail["counts"] == (await ctx.deliveries.counts.exact(notification["_id"]))[0]
    assert await ctx.deliveries.claim(list(deliveries.values()), "again.1.1", ctx.clock.now(), 60, "t2") == []


class MarkedMeanwhile:
    """The deliveries collection, with the wake-up's queued mark landing just before one of the claim's
    requests (`before`: "read", its read after the missed update; "woken", its claim of what it read asleep)."""

    def __init__(self, collection, mark, before: str):
        self.collection, self.mark, self.before, self.calls = collection, mark, before, 0

    def __getattr__(self, name):
        return getattr(self.collection, name)

    async def _strike(self, kind: str):
        if kind == self.before and self.mark is not None:
            mark, self.mark = self.mark, None
            await mark()

    def find(self, *args, **kwargs):
        outer = self

        class Cursor:
            async def to_list(self, length):
                await outer._strike("read")
                return await outer.collection.find(*args, **kwargs).to_list(length)

        return Cursor()

    async def update_many(self, query, update, **kwargs):
        if isinstance(query.get("status"), str):  # the claim of deliveries read asleep
            await self._strike("woken")
        return await self.collection.update_many(query, update, **kwargs)


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("before", ["read", "woken"])
async def test_a_claim_racing_the_queued_mark_still_takes_the_woken_delivery(ctx, before):
    """The wake-up's queued mark may land between the claim's requests: the delivery is taken all the same
    (a claim that let it go would drop its message: found again only by the lost-message finder)."""
    notification, _ = await ctx.notifications.create(
        TEST_ADMIN, {**CONTENT, "recipients": ["a", "b"], "send_at": ctx.clock.now() + timedelta(seconds=30)}
    )
    await ctx.store.deliveries.update_many({}, {"$set": {"available_at": ctx.clock.now()}})
    docs = await ctx.store.deliveries.find({}, {"notification_id": 1}).to_list(None)
    ids = [doc["_id"] for doc in docs]

    async def mark():
        marks = {doc["_id"]: doc["notification_id"] for doc in docs}
        await ctx.deliveries.mark_queued(marks, ctx.clock.now(), source=DeliveryStatus.SCHEDULED)

    racing = MarkedMeanwhile(ctx.store.deliveries, mark, before)
    ctx.deliveries.collection = racing
    try:
        assert sorted(await ctx.deliveries.claim(ids, "racing.1.1", ctx.clock.now(), 60, "t1")) == sorted(ids)
    finally:
        ctx.deliveries.collection = ctx.store.deliveries
    assert racing.mark is None, "the mark never landed in between"
    assert await _statuses(ctx, str(notification["_id"])) == {"sending": 2}


@pytest.mark.gen_test(timeout=60)
async def test_a_wake_up_cut_off_from_the_broker_leaves_its_lease_to_another_instance(ctx):
    cut_off = BrokerConnection("amqp://guest:guest@127.0.0.1:1/", "cut-off")  # never connects
    lease = JobLease(ctx.store, ctx.clock, "scheduled wake-up", "cut-off:1", seconds=30)
    alone = Publisher(cut_off, ctx.topology, ctx.deliveries, ctx.settings, ctx.clock, lease)
    other = _other_instance(ctx)
    assert await other.wake_lease.take() is True
    await other.wake_lease.release()
    assert await lease.take() is True  # it held the lease, then lost the broker
    assert await alone.publish_scheduled() == 0
    assert await other.wake_lease.take() is True


@pytest.mark.gen_test(timeout=60)
async def test_the_queued_mark_leaves_a_delivery_deferred_again_since_the_wake_up_read_it(ctx):
    """Woken at the end of quiet hours, claimed before its mark and deferred again (the window moved): the
    wake-up's mark must not make it queued, with no message left to send it."""
    notification, _ = await ctx.notifications.create(TEST_ADMIN, {**CONTENT, "recipients": ["a"]})
    now = ctx.clock.now()
    await ctx.store.deliveries.update_many({}, {"$set": {"status": "deferred", "available_at": now}})
    read_at = ctx.clock.now()
    (delivery,) = await ctx.deliveries.due_to_wake(read_at, 10)
    later = read_at + timedelta(hours=2)
    await ctx.store.deliveries.update_one({"_id": delivery["_id"]}, {"$set": {"available_at": later}})
    marks = {delivery["_id"]: notification["_id"]}
    await ctx.deliveries.mark_queued(marks, ctx.clock.now(), source=DeliveryStatus.DEFERRED, woken_by=read_at)
    assert await _statuses(ctx, str(notification["_id"])) == {"deferred": 1}


@pytest.mark.gen_test(timeout=60)
async def test_the_message_of_a_woken_delivery_cancelled_while_it_was_being_sent_cancels_it(ctx):
    """Cancelled while a consumer held it, then deferred (quiet hours) or left scheduled: when its message
    comes back after its instant, the claim cancels it rather than dropping the message."""
    notification, _ = await ctx.notifications.create(TEST_ADMIN, {**CONTENT, "recipients": ["a", "b"]})
    await ctx.store.deliveries.update_many(
        {}, {"$set": {"status": "deferred", "available_at": ctx.clock.now(), "cancel_requested": True}}
    )
    await ctx.deliveries.counts.recount([notification["_id"]], ctx.clock.now())
    ids = [d["_id"] for d in await ctx.store.deliveries.find({}, {"_id": 1}).to_list(None)]
    assert await ctx.deliveries.claim(ids, "late.1.1", ctx.clock.now(), 60, "t1") == []
    detail = await ctx.notifications.get(TEST_ADMIN, str(notification["_id"]))
    assert detail["counts"] == {"cancelled": 2} == (await ctx.deliveries.counts.exact(notification["_id"]))[0]


@pytest.mark.gen_test(timeout=90)
async def test_a_cancel_before_send_at_means_never(api, admin, ctx, smtp, workers):
    users = await add_users(ctx, N)
    send_at = ctx.clock.now() + timedelta(seconds=2)
    cancelled = await _create(api, admin, users, send_at)
    kept = await _create(api, admin, users, send_at)
    answer = (await api.post(f"/api/v1/notifications/{cancelled['id']}/cancel", {}, auth=admin.header)).body
    assert answer["cancelled"] == N
    # The other notification, due at the same instant, going out shows the wake-up has passed that instant.
    assert await settled(ctx, ObjectId(kept["id"]), N) == {"sent": N}
    assert await _statuses(ctx, cancelled["id"]) == {"cancelled": N}
    assert smtp.handler.count_by_recipient(cancelled["id"]) == {}
    detail = (await api.get(f"/api/v1/notifications/{cancelled['id']}", auth=admin.header)).body
    assert detail["counts"] == {"cancelled": N}


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "send_at",
    [
        "2026-12-24T09:00:00",  # no offset: which zone would it be?
        "tomorrow",
        "in 400 days",
    ],
)
async def test_send_at_must_be_an_instant_with_its_offset_within_a_year(api, admin, ctx, send_at):
    if send_at == "in 400 days":  # computed here: a parameter's value names the test on every xdist worker
        send_at = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    response = await api.post(
        "/api/v1/notifications",
        {"title": "t", "text": "x", "channel": "email", "recipients": ["u1"], "send_at": send_at},
        auth=admin.header,
    )
    assert response.status == 400 and "send_at" in response.body["errors"], response.body
    assert await ctx.store.notifications.count_documents({}) == 0


@pytest.mark.gen_test(timeout=60)
async def test_a_send_at_in_the_past_means_now(api, admin, ctx, smtp, workers):
    users = await add_users(ctx, 3)
    created = await _create(api, admin, users, ctx.clock.now() - timedelta(hours=1))
    assert await settled(ctx, ObjectId(created["id"]), 3) == {"sent": 3}
