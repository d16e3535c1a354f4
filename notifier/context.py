"""The services and clients of one server process, created once at startup and shared by every handler."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from pymongo.errors import ConnectionFailure

from . import metrics
from .authenticator import Authenticator
from .clock import Clock
from .keys import Keys, load_keys
from .links import Links
from .scheduler import Jobs
from .queue.connection import BrokerConnection
from .queue.monitor import queue_depths
from .queue.pool import ConsumerPool
from .queue.publisher import Publisher
from .queue.topology import Topology
from .passwords import KdfPool, Limits, PasswordGuard
from .services.admins import AdminService
from .services.attempts import AttemptStore
from .services.clients import ClientService
from .services.deliveries import Deliveries, Parked
from .services.notifications import NotificationService
from .services.schedules import ScheduleService
from .services.stats import DashboardStats
from .services.users import UserService
from .settings import Settings
from .store import Store, connect

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
    deliveries: Deliveries
    admins: AdminService
    clients: ClientService
    users: UserService
    notifications: NotificationService
    schedules: ScheduleService
    parked: Parked
    stats: DashboardStats
    readiness_checks: dict[str, Callable[[], Awaitable[None]]] = field(default_factory=dict)
    pool: ConsumerPool | None = None
    jobs: Jobs = field(default_factory=Jobs)

    async def start_workers(self, consumers: bool = True) -> None:
        """The periodic jobs and, with `consumers`, the consumer pool."""
        settings = self.settings
        if consumers:
            self.pool = ConsumerPool(settings, self.broker, self.topology, self.deliveries, self.publisher,
                                     self.clock)
            await self.pool.start()
            self.jobs.add("consumer pool", settings.pool_check_interval, self.pool.check)
        self.jobs.add("schedules", settings.scheduler_tick, self.schedules.fire_due)
        self.jobs.add("outbox sweep", settings.outbox_sweep_interval,
                      lambda: self.publisher.sweep(settings.outbox_grace, limit=20000))
        self.jobs.add("reconciler", settings.reconcile_interval, self.reconcile_leases)
        self.jobs.add("schedule orphans", settings.reconcile_interval, self.schedules.reap_orphans)
        self.jobs.start()

    async def redrive(self, actor: str, **selection) -> int:
        """Send failed deliveries again (all, by reason/notification, or by id), with an audit entry."""
        chosen = await self.parked.redrive(actor, self.clock.now(), **selection)
        if chosen:
            self.publisher.submit({}, chosen)
        return len(chosen)

    async def reconcile_leases(self) -> int:
        """Claims whose consumer vanished, and queued messages the broker lost, go out again."""
        # This server's own consumers write their outcomes however slow the database is, and if one dies
        # its journal settles its claims. Lease expiry is for consumers of instances that vanished.
        owners = self.pool.claim_owners() if self.pool is not None else []
        released = await self.deliveries.release_expired(self.clock.now(), keep_owners=owners)
        if released:
            log.warning("%d deliveries had an expired lease; publishing them again", len(released))
            await self.publisher.publish(released)
        await self.publisher.recover_lost(after=max(10.0, 4 * self.settings.outbox_grace))
        return len(released)

    async def refresh_metrics(self) -> None:
        """Read the queue depths and the pool's size into the gauges, just before a scrape."""
        if self.pool is not None:
            metrics.CONSUMERS.labels("running").set(len([p for p in self.pool.processes.values() if p.ready]))
        metrics.CONSUMERS.labels("min").set(self.settings.consumers_min)
        metrics.CONSUMERS.labels("max").set(self.settings.consumers_max)
        try:
            depths = await asyncio.wait_for(queue_depths(self.broker, self.topology), 2.0)
        except Exception as exc:  # the broker is away: the gauges keep their last values
            log.info("queue depths unavailable for metrics: %s", exc)
            return
        for row in depths:
            metrics.QUEUE_MESSAGES.labels(row["queue"]).set(row["messages"])

    async def stop_workers(self) -> None:
        await self.jobs.stop()
        if self.pool is not None:
            await self.pool.stop()

    async def close(self) -> None:
        await self.publisher.drain(timeout=5)
        await self.broker.close()
        self.store.close()
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
    topology = Topology(settings.queue_prefix, settings.retry_delays)
    broker = BrokerConnection(settings.amqp_url, "notifier-server", on_channel=topology.declare)
    broker.start()
    deliveries = Deliveries(store)
    publisher = Publisher(broker, topology, deliveries, settings, clock)
    notifications = NotificationService(store, settings, clock, publisher)
    guard = PasswordGuard(AttemptStore(store, clock, settings.login_window),
                          KdfPool(settings.password_workers, settings.password_queue),
                          Limits(settings.login_account_limit, settings.login_address_limit,
                                 settings.login_account_total_limit),
                          keys.derive("password-cache"))
    auth = Authenticator(store, settings, keys, guard)
    return Context(
        settings=settings, clock=clock, store=store, keys=keys, auth=auth,
        links=Links(keys, settings.public_url), topology=topology, broker=broker, publisher=publisher,
        deliveries=deliveries, admins=AdminService(store, clock), clients=ClientService(store, clock),
        users=UserService(store, clock), notifications=notifications,
        schedules=ScheduleService(store, settings, clock, notifications),
        parked=Parked(store), stats=DashboardStats(store, clock),
        readiness_checks={"mongodb": store.ping, "rabbitmq": broker.check},
    )
