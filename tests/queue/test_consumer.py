"""One consumer, in this process, against the real broker, database and SMTP server: what it does with a batch
it has claimed when the database fails under it."""

from __future__ import annotations

import asyncio
import uuid

import aiormq
import pytest
from bson import ObjectId
from pymongo.errors import AutoReconnect

from notifier.access import Principal, Role
from notifier.queue.batch import _ack
from notifier.queue.consumer import Consumer
from notifier.queue.journal import journal_path
from notifier.queue.pool import ConsumerPool
from notifier.services.sending import Sender

from ..support import eventually
from .conftest import add_users, counts, settled

NOTE = {"title": "t", "text": "x", "channel": "email", "is_express": False, "content_id": None}
ADMIN = Principal(Role.ADMIN, "test", "test")


async def notify(ctx, users) -> ObjectId:
    notification, _ = await ctx.notifications.create(ADMIN, {**NOTE, "recipients": users})
    await ctx.publisher.drain(10)
    return notification["_id"]


def failing_look_up(monkeypatch, times: int, error: Exception) -> list[int]:
    """The database fails (`times` times) in the reads of a batch (they go beside its claim)."""
    real = Sender.look_up
    calls: list[int] = []

    async def look_up(self, claimed):
        calls.append(len(claimed))
        if len(calls) <= times:
            raise error
        return await real(self, claimed)

    monkeypatch.setattr(Sender, "look_up", look_up)
    return calls


@pytest.mark.gen_test(timeout=60)
async def test_an_outage_in_the_reads_of_a_claimed_batch_is_waited_out(ctx, smtp, monkeypatch, consumer):
    users = await add_users(ctx, 3)
    calls = failing_look_up(monkeypatch, 2, AutoReconnect("connection closed"))
    notification = await notify(ctx, users)
    assert await settled(ctx, notification, 3) == {"sent": 3}
    assert len(calls) >= 3
    assert smtp.handler.count_by_recipient(str(notification)) == {f"{u}@example.com": 1 for u in users}
    assert not consumer.stopping.is_set()


@pytest.mark.gen_test(timeout=60)
async def test_a_claimed_batch_that_cannot_finish_stops_the_consumer_for_the_pool_to_recover(
    ctx, smtp, monkeypatch, consumer
):
    """Nobody takes a live consumer's claims, so a batch it cannot finish must not leave them behind with a
    consumer that carries on: it stops with its journal, and the pool's recovery sends them."""
    users = await add_users(ctx, 3)
    failing_look_up(monkeypatch, 1000, RuntimeError("a bug after the claim"))
    notification = await notify(ctx, users)
    await eventually(lambda: _is_set(consumer.stopping), timeout=30, message="the consumer stopping")
    assert await counts(ctx, notification) == {"sending": 3}
    assert not smtp.received
    await asyncio.wait_for(consumer.running, 60)
    assert journal_path(ctx.settings.journal_dir, consumer.consumer_id).exists()
    monkeypatch.undo()
    pool = ConsumerPool(ctx.settings, ctx.broker, ctx.topology, ctx.recovery)
    await pool.replay_journal(consumer.consumer_id)
    assert (await counts(ctx, notification)).keys() <= {"pending", "queued"}
    replacement = Consumer(ctx.settings, "test-host.1.2")
    running = asyncio.ensure_future(replacement.run())
    try:
        assert await settled(ctx, notification, 3) == {"sent": 3}
    finally:
        replacement.stopping.set()
        await asyncio.wait_for(running, 60)
    assert smtp.handler.count_by_recipient(str(notification)) == {f"{u}@example.com": 1 for u in users}


async def _is_set(event: asyncio.Event) -> bool:
    return event.is_set()


@pytest.mark.gen_test(timeout=30)
async def test_a_message_of_a_channel_closed_since_is_not_acked_there_and_comes_again(amqp_url):
    """After the broker went away and came back, a batch's messages belong to a dead channel: the ack returns at
    once (one on a channel whose writer had died once waited for ever, and the drill's consumer outlived its
    server), and the broker gives the message again."""
    connection = await aiormq.connect(amqp_url)
    queue = f"test.ack.{uuid.uuid4().hex[:8]}"
    try:
        channel = await connection.channel()
        await channel.queue_declare(queue, auto_delete=False)
        await channel.basic_publish(b"m", routing_key=queue)
        got = await channel.basic_get(queue, no_ack=False)
        await channel.close()
        await asyncio.wait_for(_ack(got), 2)  # returns at once, does not wait on the dead channel
        again = await connection.channel()
        redelivered = await again.basic_get(queue, no_ack=True)
        assert redelivered.body == b"m" and redelivered.delivery.redelivered
        await again.queue_delete(queue)
    finally:
        await connection.close()
