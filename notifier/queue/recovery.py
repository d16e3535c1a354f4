"""Recovery: how a delivery that something dropped gets on its way again. Eight mechanisms, each with one name
(used in log lines and job names); all but the last four live here.

- **journal replay** (`Recovery.replay_journal`). Trigger: a consumer process exits (ConsumerPool._watch),
  or a starting pool finds journals of consumers whose server is gone (ConsumerPool.replay_orphan_journals);
  one that fails is tried again on every pool check (POOL_CHECK_INTERVAL). What the consumer's journal says
  was sent is recorded as sent, a send begun on a channel where a repeat would show fails as `interrupted`,
  every other claim it held is released and published again.
- **lease reconciler** (`Recovery.reconcile_leases`, job "lease reconciler"). Every RECONCILE_INTERVAL:
  claims whose lease (LEASE_SECONDS) ran out go back to pending and are published again, except claims of
  this pool's consumers (alive, or dead and awaiting journal replay: only the journal knows what they sent).
  A claim of a consumer whose journal was replayed goes back at once, whatever its lease: the database
  applied it after the consumer died (it was still waiting in the database), so nothing of it was sent.
- **lost-message finder** (`Recovery.find_lost`). At the end of every lease reconciler run
  (RECONCILE_INTERVAL), while the work queues are empty: queued deliveries overdue by max(10 s,
  4 x OUTBOX_GRACE) lost their message in the broker (dead-lettering from a delay tier is at-most-once)
  and are published again.
- **outbox sweep** (`Recovery.sweep_outbox`, job "outbox sweep"). Every OUTBOX_SWEEP_INTERVAL: pending
  deliveries whose message the broker never confirmed, OUTBOX_GRACE after they were due, are published
  again, tick after tick, until they go.
- **pool restarts** (queue/pool.py: ConsumerPool._watch and ConsumerPool.check, job "pool check"). A consumer
  that died unasked is replaced (with a growing delay when it keeps dying at once); every POOL_CHECK_INTERVAL
  the pool is kept within [CONSUMERS_MIN, CONSUMERS_MAX].
- **shutdown drain** (queue/consumer.py: Consumer.drain; queue/pool.py: ConsumerPool.stop; queue/publisher.py:
  Publisher.drain). On SIGTERM, or when its server dies, a consumer stops taking messages, finishes the
  batches in hand, requeues the rest and exits 0; the server waits for its background publishes.
- **fan-out resume** (services/fanout.py: Materializer.resume, job "fan-out resume"). Once at startup and
  every MATERIALIZE_INTERVAL: a big create whose deliveries were still being stored in the background when
  its server stopped or died is taken over, once its claim (renewed at every progress record) is
  MATERIALIZE_LEASE old, from its last progress record; the unique index stores a repeated part once.
- **scheduled wake-up** (queue/publisher.py: Publisher.publish_scheduled, job "scheduled wake-up"). Every
  WAKE_INTERVAL, on the one instance holding its lease (services/leases.py): scheduled and deferred deliveries
  whose instant came are published, then marked queued; nothing is written before the confirm, so what a
  dead wake-up left is found again by the next.

Every mechanism here counts what it moves in the notifications' counts (services/counts.py); the **counts
reconciler** there (job "counts reconciler", every COUNTS_RECONCILE_INTERVAL) repairs an increment lost to a
crash between a delivery write and its increment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from ..clock import Clock
from ..procs import pid_alive
from ..services.deliveries import Deliveries
from ..settings import Settings
from .connection import BrokerConnection
from .journal import journal_path, read_journal
from .publisher import Publisher
from .topology import Topology

log = logging.getLogger(__name__)

SWEEP_LIMIT = 20000
LOST_AFTER_MINIMUM = 10.0


class Recovery:
    def __init__(
        self,
        settings: Settings,
        broker: BrokerConnection,
        topology: Topology,
        deliveries: Deliveries,
        publisher: Publisher,
        clock: Clock,
    ):
        self.settings = settings
        self.broker = broker
        self.topology = topology
        self.deliveries = deliveries
        self.publisher = publisher
        self.clock = clock
        # Consumers whose claims only their pool may settle (ConsumerPool.claim_owners, once there is a pool).
        self.claim_owners: Callable[[], Iterable[str]] = lambda: ()
        # Dead consumers whose journal was replayed (ConsumerPool.replayed): their claims are released at once.
        self.replayed: Callable[[], Iterable[str]] = lambda: ()

    # --- journal replay ---

    async def replay_journal(self, consumer_id: str) -> None:
        """Record what a dead consumer's journal says it sent, and put everything else it held back."""
        path = journal_path(self.settings.journal_dir, consumer_id)
        entries = read_journal(path)
        sent, failed, released = await self.deliveries.recover(
            consumer_id, entries.sent, entries.interrupted, self.clock.now()
        )
        if sent or failed or released:
            log.warning(
                "journal replay of consumer %s: %d sent recorded, %d interrupted, %d released",
                consumer_id,
                sent,
                failed,
                len(released),
            )
        path.unlink(missing_ok=True)
        if released:
            try:
                await self.publisher.publish(released)
            except Exception as exc:  # they are pending: the outbox sweep publishes them
                log.warning(
                    "journal replay: publishing %d released deliveries failed (%s); the outbox sweep will",
                    len(released),
                    exc,
                )

    def orphan_journals(self, server_pid: int) -> list[str]:
        """Consumers with a journal left behind by a server that is gone (this host, an earlier run)."""
        directory = Path(self.settings.journal_dir)
        orphans = []
        for path in sorted(directory.glob("*.journal")) if directory.is_dir() else []:
            consumer_id = path.name[: -len(".journal")]
            parts = consumer_id.split(".")
            owner = int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None
            if owner not in (None, server_pid) and pid_alive(owner):
                continue  # another live instance's consumer
            orphans.append(consumer_id)
        return orphans

    # --- lease reconciler and lost-message finder ---

    async def reconcile_leases(self) -> int:
        """Claims whose consumer vanished go out again, then the lost-message finder runs; returns how many
        claims were released."""
        # This server's own consumers write their outcomes however slow the database is, and if one dies
        # its journal settles its claims. Lease expiry is for consumers of instances that vanished.
        released = await self.deliveries.release_expired(
            self.clock.now(), keep_owners=self.claim_owners(), abandoned_by=self.replayed()
        )
        if released:
            log.warning(
                "lease reconciler: %d deliveries had an expired lease or a dead consumer; publishing them again",
                len(released),
            )
            await self.publisher.publish(released)
        await self.find_lost(after=max(LOST_AFTER_MINIMUM, 4 * self.settings.outbox_grace))
        return len(released)

    async def find_lost(self, after: float, limit: int = 10000) -> int:
        """Publish again queued deliveries whose messages the broker lost (see Deliveries.lost_in_the_broker).
        Looked for only while the work queues are empty, so nothing is still on its way."""
        channel = await self.broker.new_channel()
        try:
            for queue in self.topology.queues.values():
                if (await channel.queue_declare(queue, passive=True)).message_count:
                    return 0
        finally:
            await channel.close()
        lost = await self.deliveries.lost_in_the_broker(self.clock.now(), after, limit)
        if lost:
            log.warning(
                "lost-message finder: %d queued deliveries are missing from the broker; publishing them again",
                len(lost),
            )
        published = await self.publisher.republish(lost)
        if published:
            # The publisher's queued mark takes pending deliveries only (it counts them): these stay queued,
            # due from now, so the next run does not find them lost again.
            await self.deliveries.refresh_queued([doc["_id"] for doc in lost], self.clock.now())
        return published

    # --- outbox sweep ---

    async def sweep_outbox(self, limit: int = SWEEP_LIMIT) -> int:
        """Publish again what was stored but never confirmed; returns how many went this time."""
        due = await self.deliveries.due_for_publishing(self.clock.now(), self.settings.outbox_grace, limit)
        return await self.publisher.republish(self.publisher.unconfirmed(due))
