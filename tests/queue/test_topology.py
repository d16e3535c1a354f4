"""Queue declarations: classic queues by default, quorum queues (for a RabbitMQ cluster) with QUEUE_TYPE."""

from __future__ import annotations

import aiormq
import pytest
from bson import ObjectId

from notifier.queue.topology import Topology

from .conftest import add_users, settled


@pytest.fixture
def settings_overrides(pipeline_settings):
    return {**pipeline_settings, "queue_type": "quorum", "pacing_batch": 2, "pacing_interval": 0.2}


def test_quorum_queues_have_names_of_their_own():
    """Switching QUEUE_TYPE never redeclares a queue with other arguments, nor binds both kinds to one exchange."""
    classic, quorum = Topology("p.", (1.0,)), Topology("p.", (1.0,), "quorum")
    assert not set(classic.all_queues()) & set(quorum.all_queues())
    assert classic.exchange != quorum.exchange


@pytest.mark.gen_test(timeout=90)
async def test_with_quorum_queues_retries_pacing_and_express_deliver_once(api, admin, ctx, smtp, workers):
    channel = await ctx.broker.channel()
    for queue in ctx.topology.all_queues():  # the same declaration again is accepted only as a quorum queue
        declared = await channel.queue_declare(queue, passive=True)
        assert declared.queue == queue
    regular_queue = ctx.topology.queues["regular"]
    await channel.queue_declare(regular_queue, durable=True, arguments={"x-queue-type": "quorum"})
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
        await channel.queue_declare(regular_queue, durable=True, arguments={"x-queue-type": "classic"})
    smtp.behaviour.tempfail_next = 2  # two retries through quorum delay tiers (dead-lettered at least once)
    users = await add_users(ctx, 6)
    regular = await api.post(
        "/api/v1/notifications",
        {"title": "t", "text": "x", "channel": "email", "recipients": users},
        auth=admin.header,
    )
    express = await api.post(
        "/api/v1/notifications",
        {"title": "t", "text": "x", "channel": "email", "recipients": users[:2], "is_express": True},
        auth=admin.header,
    )
    assert regular.status == express.status == 201
    assert await settled(ctx, ObjectId(regular.body["id"]), 6) == {"sent": 6}  # three paced batches
    assert await settled(ctx, ObjectId(express.body["id"]), 2) == {"sent": 2}
    assert smtp.handler.refused == 2
    for created in (regular.body, express.body):
        assert set(smtp.handler.count_by_recipient(created["id"]).values()) == {1}
