"""A consumer process (`python -m notifier.queue`), spawned by the server's pool.

It owns its clients (motor, aiormq, SMTP, HTTP), created after it started. Messages are taken in batches:
claim the batch in the database, send what was claimed, write the outcomes, publish retries, and only
then ack. Express messages arrive on a channel of their own and are handled at once, never behind the
regular backlog. SIGTERM drains: stop taking messages, finish what is in hand, exit 0. When the parent
dies the consumer drains and exits too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from datetime import timedelta

import aiormq
from aiormq.abc import Basic, DeliveredMessage
from bson import ObjectId
from bson.errors import InvalidId
from pymongo.errors import PyMongoError
from tornado.httpclient import AsyncHTTPClient

from ..channels.email import EmailChannel
from ..channels.inbox import InboxChannel
from ..channels.telegram import TelegramChannel
from ..channels.webhook import WebhookChannel
from ..clock import Clock
from ..keys import load_keys
from ..links import Links
from ..logs import setup_logging
from ..outbound import Allowlist, OutboundHTTP
from ..services.contacts import Contacts
from ..services.deliveries import Deliveries, new_claim_token
from ..services.sending import ABANDONED, DEFER, FAILED, RETRY, SENT, SKIPPED, Outcome, Sender
from ..settings import Settings
from ..store import Store, connect
from .connection import BrokerConnection
from .journal import Journal, journal_path
from .metrics import DELIVERIES, SEND_SECONDS
from .publisher import message_body
from .topology import EXPRESS, PRIORITY, REGULAR, Topology

log = logging.getLogger(__name__)

EXPRESS_BATCH = 20
REGULAR_BATCHES = 4  # batches in hand at once: the database answers one at a time, keep it busy
# A batch starts no send after this share of its lease: the rest is for writing the outcomes before
# any reconciler could take the claim back (a slow database must not turn into a second send).
LEASE_SHARE_FOR_SENDING = 0.5
DATABASE_RETRY_SECONDS = 600.0
DATABASE_RETRY_WHILE_STOPPING = 10.0


class Lane:
    """Messages of one queue, grouped into batches; at most `parallel` batches in hand at once."""

    def __init__(self, name: str, batch: int, wait: float, parallel: int, process):
        self.name = name
        self.batch = batch
        self.wait = wait
        self.process = process
        self.buffer: list[DeliveredMessage] = []
        self.arrived = asyncio.Event()
        self.slots = asyncio.Semaphore(parallel)
        self.in_hand: set[asyncio.Task] = set()
        self.open = True

    def add(self, message: DeliveredMessage) -> None:
        self.buffer.append(message)
        self.arrived.set()

    async def run(self) -> None:
        while self.open:
            await self.arrived.wait()
            if self.wait and len(self.buffer) < self.batch:
                await asyncio.sleep(self.wait)
            await self.slots.acquire()
            if not self.open:
                self.slots.release()
                break
            batch, self.buffer = self.buffer[:self.batch], self.buffer[self.batch:]
            if not self.buffer:
                self.arrived.clear()
            if not batch:
                self.slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self.process(batch))
            self.in_hand.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.in_hand.discard(task)
        self.slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("%s batch failed", self.name, exc_info=task.exception())

    async def drain(self, timeout: float) -> list[DeliveredMessage]:
        """Stop taking batches, wait for the ones in hand; returns the messages never started."""
        self.open = False
        self.arrived.set()
        if self.in_hand:
            await asyncio.wait(list(self.in_hand), timeout=timeout)
        left, self.buffer = self.buffer, []
        return left


class Consumer:
    def __init__(self, settings: Settings, consumer_id: str, clock: Clock | None = None):
        self.settings = settings
        self.consumer_id = consumer_id
        self.clock = clock or Clock()
        self.topology = Topology(settings.queue_prefix, settings.retry_delays)
        self.stopping = asyncio.Event()
        self.ready_announced = False
        self._active_batches = 0
        self.journal_pending = False
        self.regular_turn = asyncio.Semaphore(1)

    async def start(self) -> None:
        settings = self.settings
        self.store = Store(connect(settings.mongo_url, settings.mongo_timeout_ms), settings.mongo_db)
        keys = await _retry_database(lambda: load_keys(self.store, settings), self.stopping)
        self.http = AsyncHTTPClient(max_clients=64)  # operator-set destinations: Telegram, the user service
        self.outbound = OutboundHTTP(Allowlist.parse(settings.outbound_allow))  # destinations clients set
        self.channels = {"email": EmailChannel(settings), "inbox": InboxChannel(),
                         "webhook": WebhookChannel(self.outbound, keys.webhook, settings.http_timeout),
                         "telegram": TelegramChannel(self.http, settings.telegram_api_url, settings.telegram_bot_token,
                                                     settings.http_timeout)}
        self.journal = Journal(journal_path(settings.journal_dir, self.consumer_id))
        self.deliveries = Deliveries(self.store)
        self.sender = Sender(self.store, self.channels, Contacts(self.store, settings, self.http),
                             Links(keys, settings.public_url), self.journal)
        self.lanes = {REGULAR: Lane(REGULAR, settings.consumer_batch, settings.consumer_batch_wait, REGULAR_BATCHES,
                                    self._process_regular),
                      EXPRESS: Lane(EXPRESS, EXPRESS_BATCH, 0.0, 4, self._process)}
        self.lane_tasks = [asyncio.get_running_loop().create_task(lane.run()) for lane in self.lanes.values()]
        self.broker = BrokerConnection(settings.amqp_url, f"notifier-consumer-{self.consumer_id}",
                                       on_channel=self._on_channel)
        self.broker.start()

    async def _on_channel(self, publish_channel: aiormq.abc.AbstractChannel) -> None:
        await self.topology.declare(publish_channel)
        connection = self.broker.connection
        self.consume_channels = {}
        for target, prefetch in ((REGULAR, self.settings.consumer_batch * REGULAR_BATCHES), (EXPRESS, EXPRESS_BATCH * 4)):
            channel = await connection.channel()
            await channel.basic_qos(prefetch_count=prefetch)
            lane = self.lanes[target]
            await channel.basic_consume(self.topology.queues[target], lambda message, lane=lane: lane.add(message),
                                        consumer_tag=f"{self.consumer_id}.{target}")
            self.consume_channels[target] = channel
        if not self.ready_announced:
            self.ready_announced = True
            print("ready", flush=True)

    # --- one batch ---

    async def _process_regular(self, batch: list[DeliveredMessage]) -> None:
        await self._process(batch, self.regular_turn)

    async def _process(self, batch: list[DeliveredMessage], turn: asyncio.Semaphore | None = None) -> None:
        """Claim, send, record, ack. Regular batches take turns for the database (`turn`): the database
        answers one request at a time, so a queue of regular writes would hold up every express claim."""
        turn = turn or contextlib.nullcontext()
        self._active_batches += 1
        try:
            messages: dict[ObjectId, list[DeliveredMessage]] = {}
            payloads: dict[ObjectId, dict] = {}
            for message in batch:
                payload = _payload(message)
                if payload is None:
                    log.error("dropping a message that names no delivery: %r", message.body[:200])
                    await _ack(message)
                    continue
                messages.setdefault(payload["_id"], []).append(message)
                payloads[payload["_id"]] = payload
            if not messages:
                return
            token = new_claim_token()
            send_before = time.monotonic() + self.settings.lease_seconds * LEASE_SHARE_FOR_SENDING
            async with turn:
                claimed_ids = await _retry_database(
                    lambda: self.deliveries.claim(list(messages), self.consumer_id, self.clock.now(),
                                                  self.settings.lease_seconds, token), self.stopping)
            if claimed_ids:
                claimed = [payloads[i] for i in claimed_ids]
                try:
                    looked_up = await _retry_database(lambda: self.sender.look_up(claimed), self.stopping)
                    outcomes = await self.sender.attempt(claimed, looked_up, token, send_before)
                    async with turn:
                        await self._settle(token, outcomes)
                except Exception:
                    # The claims are ours until we write their outcomes, and nobody else takes a live
                    # consumer's claims: stop, so the pool settles them from the journal.
                    log.critical("cannot finish a claimed batch; stopping for the pool to recover it", exc_info=True)
                    self.journal_pending = True
                    self.stopping.set()
                    return
            for delivery_messages in messages.values():
                for message in delivery_messages:
                    await _ack(message)
        finally:
            self._active_batches -= 1
            if not self._active_batches and not self.journal_pending:
                self.journal.truncate()

    async def _settle(self, token: str, outcomes: list[Outcome]) -> None:
        """Publish retries and parked copies, then write every outcome of the batch."""
        now = self.clock.now()
        sent: list[ObjectId] = []
        changes: list[tuple[ObjectId, dict]] = []
        again = [o for o in outcomes if o.kind in (RETRY, DEFER)]
        counters = await _retry_database(lambda: self.deliveries.counters([o.delivery["_id"] for o in again]),
                                         self.stopping) if again else {}
        for outcome in outcomes:
            delivery = outcome.delivery
            counted = counters.get(delivery["_id"], {})
            if outcome.kind == SENT:
                sent.append(delivery["_id"])
            elif outcome.kind == ABANDONED:
                changes.append((delivery["_id"], Deliveries.released(outcome.error)))
            elif outcome.kind == SKIPPED:
                changes.append((delivery["_id"], Deliveries.skipped(outcome.reason)))
            elif outcome.kind == FAILED:
                await self._park(delivery, outcome.reason, outcome.error)
                changes.append((delivery["_id"], Deliveries.failed(outcome.reason, outcome.error)))
            elif outcome.kind == RETRY and counted.get("attempts", 1) >= self.settings.max_attempts:
                await self._park(delivery, "attempts_exhausted", outcome.error)
                changes.append((delivery["_id"], Deliveries.failed("attempts_exhausted", outcome.error)))
            else:
                count = counted.get("attempts", 1) if outcome.kind == RETRY else counted.get("deferrals", 0) + 1
                delay_ms = self.topology.retry_delay_ms(max(count, 1))
                in_queue = await self._publish_retry(delivery, delay_ms)
                changes.append((delivery["_id"], Deliveries.retry(outcome.error, now + timedelta(milliseconds=delay_ms),
                                                                  in_queue, count_attempt=outcome.kind == RETRY)))
        await _retry_database(lambda: self.deliveries.finish(token, now, sent, changes), self.stopping)
        count_outcomes(outcomes, self.settings.max_attempts, counters)

    async def _publish_retry(self, delivery: dict, delay_ms: int) -> bool:
        target = EXPRESS if delivery["is_express"] else REGULAR
        return await self._publish(delivery, "", self.topology.retry_queue(target, delay_ms), target)

    async def _park(self, delivery: dict, reason: str, error: str | None) -> None:
        await self._publish(delivery, "", self.topology.parked, REGULAR, {"reason": reason, "error": (error or "")[:500]})

    async def _publish(self, delivery: dict, exchange: str, routing_key: str, target: str,
                       headers: dict | None = None) -> bool:
        properties = Basic.Properties(delivery_mode=2, priority=PRIORITY[target], content_type="application/json",
                                      message_id=str(delivery["_id"]), headers=headers)
        try:
            channel = await self.broker.channel()
            confirmation = await channel.basic_publish(message_body(delivery), exchange=exchange, routing_key=routing_key,
                                                       properties=properties, mandatory=True,
                                                       timeout=self.settings.publish_timeout)
            return isinstance(confirmation, Basic.Ack)
        except Exception as exc:  # the broker is away: the outbox sweep publishes it later
            log.warning("could not publish delivery %s to %s: %s", delivery["_id"], routing_key, exc)
            return False

    # --- lifecycle ---

    async def run(self) -> None:
        parent = os.getppid()
        try:
            await self.start()
        except PyMongoError:
            if self.stopping.is_set():
                log.warning("stopped before the database answered")
                return
            raise
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), 1.0)
            except asyncio.TimeoutError:
                if os.getppid() != parent:
                    log.warning("parent %d is gone; draining", parent)
                    self.stopping.set()
        await self.drain()

    async def drain(self, timeout: float = 60.0) -> None:
        for channel in getattr(self, "consume_channels", {}).values():
            for target in (REGULAR, EXPRESS):
                try:
                    await channel.basic_cancel(f"{self.consumer_id}.{target}")
                except Exception:  # not consuming that queue on this channel, or already closed
                    pass
        for lane in self.lanes.values():
            for message in await lane.drain(timeout):
                try:
                    await message.channel.basic_nack(message.delivery.delivery_tag, requeue=True)
                except Exception:  # the channel is gone: the broker requeues it anyway
                    pass
        for task in self.lane_tasks:
            task.cancel()
        await self.broker.close()
        for channel in self.channels.values():
            await channel.close()
        self.http.close()
        self.outbound.close()
        self.journal.close(remove=not self._active_batches and not self.journal_pending)
        self.store.close()


def count_outcomes(outcomes: list[Outcome], max_attempts: int, counters: dict) -> None:
    for outcome in outcomes:
        channel = outcome.delivery["channel"]
        status = outcome.kind
        if status == RETRY and counters.get(outcome.delivery["_id"], {}).get("attempts", 1) >= max_attempts:
            status = FAILED
        DELIVERIES.labels(channel, status).inc()
        if outcome.seconds is not None:
            SEND_SECONDS.labels(channel).observe(outcome.seconds)


def _payload(message: DeliveredMessage) -> dict | None:
    """The delivery a message is about, as the publisher described it (see publisher.message_body)."""
    try:
        body = json.loads(message.body)
        return {"_id": ObjectId(body["delivery_id"]), "notification_id": ObjectId(body["notification_id"]),
                "user_id": str(body["user_id"]), "channel": str(body["channel"]),
                "is_express": bool(body["is_express"])}
    except (ValueError, KeyError, TypeError, InvalidId):
        return None


async def _ack(message: DeliveredMessage) -> None:
    try:
        await message.channel.basic_ack(message.delivery.delivery_tag, wait=False)
    except Exception:  # a closed channel: the broker redelivers, and the claim makes that harmless
        pass


async def _retry_database(operation, stopping: asyncio.Event, limit: float = DATABASE_RETRY_SECONDS):
    """Run a database operation, waiting out an outage (a batch in hand must not be lost or half-written).
    While stopping, it waits only briefly: what is left is in the journal for the pool to recover."""
    delay, waited = 0.2, 0.0
    while True:
        try:
            return await operation()
        except PyMongoError as exc:
            if waited >= (min(limit, DATABASE_RETRY_WHILE_STOPPING) if stopping.is_set() else limit):
                raise
            log.warning("database unavailable (%s: %.120s); retrying in %.1fs", type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 5.0)


def main() -> int:
    settings = Settings.from_env()
    consumer_id = os.environ["NOTIFIER_CONSUMER_ID"]
    setup_logging(settings.log_level, settings.log_format, process=f"consumer {consumer_id}")

    async def run() -> None:
        consumer = Consumer(settings, consumer_id)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, consumer.stopping.set)
        await consumer.run()

    asyncio.run(run())
    return 0

