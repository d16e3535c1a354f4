"""A consumer process (`python -m notifier.queue`), spawned by the server's pool: its wiring and lifecycle.

It owns its clients (motor, aiormq, SMTP, HTTP), created after it started. Messages of each queue go to a
lane that hands them on in batches (both in queue/batch.py). Express messages arrive on a channel
of their own and are handled at once, never behind the regular backlog. SIGTERM starts the shutdown drain:
stop taking messages, finish what is in hand, exit 0. When the parent dies the consumer drains and exits too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal

import aiormq
from pymongo.errors import PyMongoError
from tornado.httpclient import AsyncHTTPClient

from ..channels.base import Channel
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
from ..services.counts import Counts
from ..services.deliveries import Deliveries
from ..services.inbox import InboxLog
from ..services.sending import Sender
from ..settings import Settings
from ..store import Store, connect
from .batch import Batches, Lane, nack, retry_database
from .connection import BrokerConnection
from .journal import Journal, journal_path
from .publisher import Publisher
from .topology import EXPRESS, REGULAR, Topology

log = logging.getLogger(__name__)

EXPRESS_BATCH = 20
EXPRESS_BATCHES = 4
REGULAR_BATCHES = 4  # batches in hand at once: the database answers one at a time, keep it busy


class Consumer:
    def __init__(self, settings: Settings, consumer_id: str, clock: Clock | None = None):
        self.settings = settings
        self.consumer_id = consumer_id
        self.clock = clock or Clock()
        self.topology = Topology.from_settings(settings)
        self.stopping = asyncio.Event()
        self.ready_announced = False
        self.consume_channels: dict[str, aiormq.abc.AbstractChannel] = {}

    async def start(self) -> None:
        settings = self.settings
        self.store = Store(connect(settings.mongo_url, settings.mongo_timeout_ms), settings.mongo_db)
        keys = await retry_database(lambda: load_keys(self.store, settings), self.stopping)
        self.http = AsyncHTTPClient(max_clients=64)  # operator-set destinations: Telegram, the user service
        self.outbound = OutboundHTTP(Allowlist.parse(settings.outbound_allow))  # destinations clients set
        self.broker = BrokerConnection(
            settings.amqp_url, f"notifier-consumer-{self.consumer_id}", on_channel=self._on_channel
        )
        deliveries = Deliveries(self.store, Counts(self.store, settings.counts_maintained), settings.write_chunk)
        publisher = Publisher(self.broker, self.topology, deliveries, settings, self.clock)
        inbox = InboxLog(self.store, self.clock, settings.inbox_events_days, publisher.announce_inbox)
        self.channels: dict[str, Channel] = {
            "email": EmailChannel(settings),
            "inbox": InboxChannel(inbox.arrive),
            "webhook": WebhookChannel(self.outbound, keys.webhook, settings.http_timeout),
            "telegram": TelegramChannel(
                self.http, settings.telegram_api_url, settings.telegram_bot_token, settings.http_timeout
            ),
        }
        self.journal = Journal(journal_path(settings.journal_dir, self.consumer_id))
        sender = Sender(
            self.store,
            self.channels,
            Contacts(self.store, settings, self.http),
            Links(keys, settings.public_url),
            self.journal,
            settings.default_timezone,
        )
        self.batches = Batches(
            self.consumer_id, settings, self.clock, deliveries, sender, publisher, self.journal, self.stopping
        )
        self.lanes = {
            REGULAR: Lane(
                REGULAR, settings.consumer_batch, settings.consumer_batch_wait, REGULAR_BATCHES, self.batches.run
            ),
            EXPRESS: Lane(
                EXPRESS, EXPRESS_BATCH, 0.0, EXPRESS_BATCHES, functools.partial(self.batches.run, express=True)
            ),
        }
        self.lane_tasks = [asyncio.get_running_loop().create_task(lane.run()) for lane in self.lanes.values()]
        self.broker.start()

    async def _on_channel(self, publish_channel: aiormq.abc.AbstractChannel) -> None:
        await self.topology.declare(publish_channel)
        connection = self.broker.connection  # not yet `connected`: this runs before the broker says so
        assert connection is not None
        self.consume_channels = {}
        for target, prefetch in (
            (REGULAR, self.settings.consumer_batch * REGULAR_BATCHES),
            (EXPRESS, EXPRESS_BATCH * EXPRESS_BATCHES),
        ):
            channel = await connection.channel()
            await channel.basic_qos(prefetch_count=prefetch)
            await channel.basic_consume(
                self.topology.queues[target], self.lanes[target].add, consumer_tag=f"{self.consumer_id}.{target}"
            )
            self.consume_channels[target] = channel
        if not self.ready_announced:
            self.ready_announced = True
            print("ready", flush=True)

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
            except TimeoutError:
                if os.getppid() != parent:
                    log.warning("parent %d is gone; draining", parent)
                    self.stopping.set()
        await self.drain()

    async def drain(self, timeout: float = 60.0) -> None:
        """The shutdown drain: stop consuming, finish the batches in hand, give back the messages never
        started, close every client."""
        for channel in self.consume_channels.values():
            for target in (REGULAR, EXPRESS):
                try:
                    await channel.basic_cancel(f"{self.consumer_id}.{target}")
                except Exception:  # not consuming that queue on this channel, or already closed
                    pass
        for lane in self.lanes.values():
            for message in await lane.drain(timeout):
                await nack(message)
        for task in self.lane_tasks:
            task.cancel()
        await self.broker.close()
        for sending_channel in self.channels.values():
            await sending_channel.close()
        self.http.close()
        self.outbound.close()
        self.journal.close(remove=not self.batches.active and not self.batches.journal_pending)
        self.store.close()


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
