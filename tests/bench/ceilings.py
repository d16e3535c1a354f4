"""The ceilings: the bare cost of what one delivery cannot avoid, measured on the same servers.

broker: publish N messages (pipelined confirms, windows of 500) to a durable queue, then consume them with ack.
smtp:   send N pre-built messages over a few reused aiosmtplib connections to the same sink.
db:     insert N deliveries into a collection with the service's own indexes, then one claim update and one
        status update each, in batches of 100 (update_many over ids, as the service does), 4 batches at once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import aiormq
import aiosmtplib
from aiormq.abc import Basic
from bson import ObjectId

from notifier.channels.base import Message
from notifier.channels.email import EmailChannel
from notifier.queue.publisher import message_body
from notifier.services.notifications import new_delivery
from notifier.settings import Settings
from notifier.store import Store, connect

from .harness import AMQP_URL

WINDOW = 500
SMTP_CONNECTIONS = 8


async def broker(n: int) -> float:
    connection = await aiormq.connect(AMQP_URL)
    channel = await connection.channel(publisher_confirms=True)
    queue = f"bench.ceiling.{uuid.uuid4().hex[:8]}"
    await channel.queue_declare(queue, durable=True, arguments={"x-max-priority": 10})
    delivery = {
        "_id": ObjectId(),
        "notification_id": ObjectId(),
        "user_id": "u12345",
        "channel": "email",
        "is_express": False,
    }
    body = message_body(delivery)
    properties = Basic.Properties(delivery_mode=2, priority=1, content_type="application/json")
    started = time.perf_counter()
    for start in range(0, n, WINDOW):
        await asyncio.gather(
            *(
                channel.basic_publish(body, routing_key=queue, properties=properties)
                for _ in range(min(WINDOW, n - start))
            )
        )
    consumer = await connection.channel()
    await consumer.basic_qos(prefetch_count=400)
    done = asyncio.Event()
    received = 0

    async def on_message(message):
        nonlocal received
        await message.channel.basic_ack(message.delivery.delivery_tag)
        received += 1
        if received == n:
            done.set()

    consuming = await consumer.basic_consume(queue, on_message)
    await done.wait()
    elapsed = time.perf_counter() - started
    await consumer.basic_cancel(consuming.consumer_tag)
    await channel.queue_delete(queue)
    await connection.close()
    return n / elapsed


async def smtp(n: int, port: int) -> float:
    channel = EmailChannel(Settings.from_env({}))
    messages = [
        channel.build(
            Message(
                delivery_id=str(ObjectId()),
                notification_id="ceiling",
                user_id=f"u{i}",
                address=f"u{i}@example.com",
                title=f"Hello User u{i}",
                text="Hello",
                display_name=f"User u{i}",
                unsubscribe_url="http://x/unsubscribe/abc",
                is_express=False,
            )
        )
        for i in range(n)
    ]
    clients = [aiosmtplib.SMTP(hostname="127.0.0.1", port=port) for _ in range(SMTP_CONNECTIONS)]
    await asyncio.gather(*(client.connect() for client in clients))
    started = time.perf_counter()

    async def send(client, index):
        for i in range(index, n, SMTP_CONNECTIONS):
            recipient, raw = messages[i]
            await client.sendmail("bench@localhost", [recipient], raw)

    await asyncio.gather(*(send(client, index) for index, client in enumerate(clients)))
    elapsed = time.perf_counter() - started
    for client in clients:
        await client.quit()
    return n / elapsed


async def database(n: int, mongo_url: str) -> float:
    store = Store(connect(mongo_url, 5000), f"ceiling_{uuid.uuid4().hex[:8]}")
    await store.ensure_indexes()
    now = datetime.now(UTC)
    notification = {"_id": ObjectId(), "channel": "email", "is_express": False}
    deliveries = [{"_id": ObjectId(), **new_delivery(notification, f"u{i}", "", now)} for i in range(n)]
    batches = [deliveries[i : i + 100] for i in range(0, n, 100)]

    async def worker(mine):
        for batch in mine:
            ids = [d["_id"] for d in batch]
            await store.deliveries.insert_many(batch)
            await store.deliveries.update_many(
                {"_id": {"$in": ids}, "status": "pending"},
                {"$set": {"status": "sending", "claim": "c", "lease_until": now}, "$inc": {"attempts": 1}},
            )
            await store.deliveries.update_many(
                {"_id": {"$in": ids}, "claim": "c", "status": "sending"},
                {"$set": {"status": "sent", "sent_at": now, "lease_until": None}},
            )

    started = time.perf_counter()
    await asyncio.gather(*(worker(batches[k::4]) for k in range(4)))
    elapsed = time.perf_counter() - started
    await store.client.drop_database(store.db.name)
    store.close()
    return n / elapsed


def measure(n: int, mongo_url: str, smtp_port: int) -> dict[str, float]:
    return {
        "broker": asyncio.run(broker(n)),
        "smtp": asyncio.run(smtp(n, smtp_port)),
        "database": asyncio.run(database(n, mongo_url)),
    }
