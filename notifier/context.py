"""The services and clients of one server process: a typed container, built once by create_context and shared
by every handler. Besides building it, only the start and stop wiring lives here; the work is the services'."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

from pymongo.errors import ConnectionFailure
from tornado.httpclient import AsyncHTTPClient

from .authenticator import Authenticator
from .clock import Clock
from .keys import Keys, load_keys
from .links import Links
from .outbound import Allowlist, OutboundHTTP
from .passwords import AttemptCounters, KdfPool, Limits, PasswordGuard
from .periodic import Jobs
from .queue.connection import BrokerConnection
from .queue.inbox_feed import InboxFeed
from .queue.pool import ConsumerPool
from .queue.publisher import Publisher
from .queue.recovery import Recovery
from .queue.topology import Topology
from .services.admins import AdminService
from .services.attempts import AttemptStore
from .services.clients import ClientService
from .services.contacts import Contacts
from .services.counts import Counts
from .services.deliveries import Deliveries, Parked
from .services.event_endpoints import MAX_ANSWER_BYTES, EventEndpoints, EventSender
from .services.events import EventLog
from .services.inbox import Inbox, InboxLog
from .services.leases import JobLease
from .services.notifications import NotificationService
from .services.plans import Planner
from .services.retention import Retention
from .services.schedules import ScheduleService
from .services.stats import DashboardStats
from .services.users import UserService
from .settings import Settings
from .store import Store, connect
from .streams import StreamHub

log = logging.getLogger(__name__)


@dataclass
class Context:
    settings: Settings
    clock: Clock
    store: Store
    keys: Keys
    auth: Authenticator
    links: Links
    topology: Topology
    broker: BrokerConnection
    publisher: Publisher
    recovery: Recovery
    deliveries: Deliveries
    admins: AdminService
    clients: ClientService
    users: UserService
    inbox: Inbox
    streams: StreamHub
    notifications: NotificationService
    plans: Planner
    schedules: ScheduleService
    parked: Parked
    stats: DashboardStats
    retention: Retention
    event_log: EventLog
    event_endpoints: EventEndpoints
    event_sender: EventSender
    readiness_checks: dict[str, Callable[[], Awaitable[None]]] = field(default_factory=dict)
    pool: ConsumerPool | None = None
    jobs: Jobs = field(default_factory=Jobs)

    async def start_workers(self, consumers: bool = True) -> None:
        """The periodic jobs and, with `consumers`, the consumer pool."""
        settings = self.settings
        if consumers:
            self.pool = ConsumerPool(settings, self.broker, self.topology, self.recovery)
            self.recovery.claim_owners = self.pool.claim_owners
            self.recovery.replayed = self.pool.replayed
            await self.pool.start()
            self.jobs.add("pool check", settings.pool_check_interval, self.pool.check)
        self.jobs.add("schedules", settings.scheduler_tick, self.schedules.fire_due)
        self.jobs.add("outbox sweep", settings.outbox_sweep_interval, self.recovery.sweep_outbox)
        self.jobs.add("scheduled wake-up", settings.wake_interval, self.publisher.publish_scheduled)
        self.jobs.add("fan-out resume", settings.materialize_interval, self.notifications.materializer.resume)
        self.jobs.add("lease reconciler", settings.reconcile_interval, self.recovery.reconcile_leases)
        self.jobs.add("schedule orphans", settings.reconcile_interval, self.schedules.reap_orphans)
        self.jobs.add("retention", settings.retention_interval, self.retention.run)
        self.jobs.add("event log", settings.event_log_interval, self.event_log.collect)
        self.jobs.add("event sender", settings.event_send_interval, self.event_sender.run)
        if settings.counts_maintained:
            self.jobs.add("counts reconciler", settings.counts_reconcile_interval, self.reconcile_counts)
        self.jobs.start()
        self.notifications.materializer.kick()  # what a stopped or killed server left unfinished

    async def reconcile_counts(self) -> int:
        """One run of the counts reconciler (services/counts.py)."""
        settings = self.settings
        return await self.deliveries.counts.reconcile(
            self.clock.now(), settings.counts_quiet, settings.counts_recheck, settings.counts_reconcile_batch
        )

    async def stop_workers(self) -> None:
        await self.jobs.stop()
        await self.event_sender.stop()
        for lease in (self.publisher.wake_lease, self.event_log.lease, self.event_sender.lease):
            if lease is not None:
                await lease.release()
        await self.notifications.materializer.stop()
        if self.pool is not None:
            await self.pool.stop()

    async def close(self) -> None:
        await self.streams.close_all()
        await self.notifications.materializer.stop()
        await self.publisher.drain(timeout=5)
        await self.broker.close()
        self.event_sender.http.close()
        self.store.close()
        if self.auth.guard is not None:
            self.auth.guard.kdf.close()


async def open_store(settings: Settings, mongo_url: str, wait: float = 30.0) -> Store:
    """Connect and create the indexes, waiting up to `wait` seconds for the database to come up."""
    store = Store(connect(mongo_url, settings.mongo_timeout_ms), settings.mongo_db)
    deadline = time.monotonic() + wait
    while True:
        try:
            await store.ensure_indexes()
            return store
        except ConnectionFailure as exc:
            if time.monotonic() > deadline:
                store.close()
                raise
            log.warning("MongoDB not reachable yet (%s); retrying", exc)
            await asyncio.sleep(1)


async def create_context(settings: Settings, mongo_url: str, clock: Clock | None = None) -> Context:
    clock = clock or Clock()
    store = await open_store(settings, mongo_url)
    keys = await load_keys(store, settings)
    topology = Topology.from_settings(settings)
    inbox_log = InboxLog(store, clock, settings.inbox_events_days)
    streams = StreamHub(inbox_log, settings.stream_heartbeat, settings.stream_limit_per_user, settings.stream_limit)
    feed = InboxFeed(topology, streams.deliver, streams.catch_up)

    async def on_channel(channel) -> None:
        await topology.declare(channel)
        await feed.subscribe(channel)

    broker = BrokerConnection(settings.amqp_url, "notifier-server", on_channel=on_channel)
    broker.start()
    counts = Counts(store, settings.counts_maintained)
    deliveries = Deliveries(store, counts, settings.write_chunk)
    # Renewed before each notification a wake-up publishes, and long enough for the slowest of them (5,000
    # deliveries' publish and marks on a busy database).
    wake_lease = JobLease(
        store, clock, "scheduled wake-up", JobLease.holder_for(settings.http_port), max(30 * settings.wake_interval, 15)
    )
    publisher = Publisher(broker, topology, deliveries, settings, clock, wake_lease)
    inbox_log.publish = publisher.announce_inbox
    notifications = NotificationService(store, settings, clock, publisher, counts)
    holder = JobLease.holder_for(settings.http_port)
    event_log = EventLog(
        store,
        clock,
        settings.events_days,
        settings.event_late_window,
        JobLease(store, clock, "event log", holder, max(20 * settings.event_log_interval, 15)),
    )
    notifications.event_log = event_log
    event_endpoints = EventEndpoints(store, settings, clock, keys.derive("event-endpoint-secret"))
    event_sender = EventSender(
        event_endpoints,
        event_log,
        # Endpoints are URLs callers choose; each author has EVENT_CONCURRENCY requests at a time of the pool.
        OutboundHTTP(Allowlist.parse(settings.outbound_allow), max_clients=256, max_body_size=MAX_ANSWER_BYTES),
        settings,
        clock,
        JobLease(store, clock, "event sender", holder, max(20 * settings.event_send_interval, 15)),
    )
    # AttemptStore is the AttemptCounters the guard wants; the Protocol's Reservation is typed apart (passwords.py).
    guard = PasswordGuard(
        cast(AttemptCounters, AttemptStore(store, clock, settings.login_window)),
        KdfPool(settings.password_workers, settings.password_queue),
        Limits(settings.login_account_limit, settings.login_address_limit, settings.login_account_total_limit),
        keys.derive("password-cache"),
    )
    auth = Authenticator(store, settings, keys, guard)
    return Context(
        settings=settings,
        clock=clock,
        store=store,
        keys=keys,
        auth=auth,
        links=Links(keys, settings.public_url),
        topology=topology,
        broker=broker,
        publisher=publisher,
        recovery=Recovery(settings, broker, topology, deliveries, publisher, clock),
        deliveries=deliveries,
        admins=AdminService(store, clock),
        clients=ClientService(store, clock),
        users=UserService(store, clock),
        inbox=Inbox(store, clock, inbox_log),
        streams=streams,
        notifications=notifications,
        # The plan reads contacts as a consumer does (the user service too: operator-set, not caller-aimed).
        plans=Planner(settings, clock, Contacts(store, settings, AsyncHTTPClient()), notifications),
        schedules=ScheduleService(store, settings, clock, notifications),
        parked=Parked(store, clock, publisher, deliveries),
        stats=DashboardStats(store, clock),
        retention=Retention(store, settings, clock, inbox_log),
        event_log=event_log,
        event_endpoints=event_endpoints,
        event_sender=event_sender,
        readiness_checks={"mongodb": store.ping, "rabbitmq": broker.check},
    )
