"""The consumer pool: spawned processes (never forked from the running loop), sized within
[CONSUMERS_MIN, CONSUMERS_MAX] counting the consumers other instances already run on the queues.

Home of the pool restarts (see queue/recovery.py for every recovery mechanism); the journal replay of a
consumer that died is triggered here and done by Recovery.replay_journal.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

from ..metrics import ConsumerMetrics
from ..settings import Settings
from .connection import BrokerConnection
from .recovery import Recovery
from .topology import EXPRESS, REGULAR, Topology

log = logging.getLogger(__name__)

QUICK_EXIT_SECONDS = 10.0
MAX_RESPAWN_DELAY = 60.0
IDLE_CHECKS_BEFORE_SHRINKING = 3


@dataclass
class QueueStats:
    messages: dict[str, int]
    consumers: int

    @property
    def backlog(self) -> int:
        return self.messages.get(REGULAR, 0) + self.messages.get(EXPRESS, 0)


@dataclass
class ConsumerProcess:
    id: str
    process: asyncio.subprocess.Process
    started: float = field(default_factory=time.time)
    ready: bool = False
    stopping: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid


class ConsumerPool:
    def __init__(self, settings: Settings, broker: BrokerConnection, topology: Topology, recovery: Recovery):
        self.settings = settings
        self.broker = broker
        self.topology = topology
        self.recovery = recovery
        self.processes: dict[str, ConsumerProcess] = {}
        self.prefix = f"{socket.gethostname()}.{os.getpid()}"
        self._sequence = 0
        self._watchers: set[asyncio.Task] = set()
        self._respawn_delay = 1.0
        self._not_before = 0.0
        self._idle_checks = 0
        self.running = False
        self.launched = False
        self.restarts = 0
        self.last_stats: QueueStats | None = None
        self.metrics = ConsumerMetrics()
        self.unrecovered: set[str] = set()  # dead consumers whose journal replay has not succeeded yet
        self._replayed: dict[str, float] = {}  # dead consumers whose journal was replayed: when

    # --- sizing ---

    async def queue_stats(self) -> QueueStats:
        """Messages waiting and consumers attached, read with passive declares (every instance's count)."""
        channel = await self.broker.new_channel()
        try:
            messages, consumers = {}, 0
            for target, queue in self.topology.queues.items():
                declared = await channel.queue_declare(queue, passive=True)
                messages[target] = declared.message_count or 0
                if target == REGULAR:
                    consumers = declared.consumer_count or 0
            return QueueStats(messages, consumers)
        finally:
            await channel.close()

    def _live(self) -> list[ConsumerProcess]:
        return [p for p in self.processes.values() if not p.stopping]

    def others(self, stats: QueueStats, counting_starting: bool = False) -> int:
        """Consumers on the queues that are not ours (other server instances').

        Ours that are still starting may or may not be attached yet. Left out (the default), the count is
        an upper bound: growth never passes the maximum. With `counting_starting`, a lower bound: the pool
        never stops one of its own starting consumers, taking it for another instance's.
        """
        ours = sum(1 for p in self._live() if p.ready or counting_starting)
        return max(0, stats.consumers - ours)

    async def start(self) -> None:
        """Begin; when the broker or database is away, the first successful check does the launch."""
        self.running = True
        try:
            await self._launch()
        except Exception as exc:
            log.warning("consumer pool start deferred (%s); the pool check retries", exc)

    async def _launch(self) -> None:
        """Replay the journals consumers of an earlier run left behind, then launch CONSUMERS_START, counting
        consumers that already exist, so the total stays within [CONSUMERS_MIN, CONSUMERS_MAX]."""
        await self.replay_orphan_journals()
        stats = await self.queue_stats()
        others = self.others(stats)
        wanted = min(max(self.settings.consumers_start, self.settings.consumers_min), self.settings.consumers_max)
        launch = max(0, min(wanted - others, self.settings.consumers_max - others))
        log.info("consumer pool: %d consumers already on the queues, launching %d", others, launch)
        for _ in range(launch):
            await self.spawn()
        self.launched = True

    async def check(self) -> None:
        """Grow with the backlog, shrink when idle, replace consumers that died: always within [min, max]."""
        if not self.running:
            return
        for consumer_id in list(self.unrecovered):
            await self._replay_quietly(consumer_id)
        if not self.launched:
            await self._launch()
            return
        stats = await self.queue_stats()
        self.last_stats = stats
        live = self._live()
        started = [p for p in live if p.ready]
        total = self.others(stats) + len(live)
        surely_total = self.others(stats, counting_starting=True) + len(live)
        needed = math.ceil(stats.backlog / self.settings.backlog_per_consumer)
        wanted = self._bounded(needed)
        # Shrink only when even twice the backlog would not need this many (no flapping around a border).
        enough = self._bounded(math.ceil(2 * stats.backlog / self.settings.backlog_per_consumer))
        if total < wanted:
            self._idle_checks = 0
            if time.monotonic() < self._not_before:
                return
            for _ in range(wanted - total):
                if not self.running:  # stop() began while this check waited
                    return
                await self.spawn()
        elif started and (surely_total > self.settings.consumers_max or surely_total > enough):
            # A consumer still starting is never the one stopped (its start would be wasted, the pool flap).
            self._idle_checks += 1
            if self._idle_checks >= IDLE_CHECKS_BEFORE_SHRINKING or surely_total > self.settings.consumers_max:
                self._idle_checks = 0
                await self.stop_one(max(started, key=lambda p: p.started))
        else:
            self._idle_checks = 0

    def _bounded(self, count: int) -> int:
        return min(max(count, self.settings.consumers_min), self.settings.consumers_max)

    # --- processes ---

    async def spawn(self) -> ConsumerProcess:
        self._sequence += 1
        consumer_id = f"{self.prefix}.{self._sequence}"
        env = {
            **os.environ,
            **self.settings.to_env(),
            "NOTIFIER_CONSUMER_ID": consumer_id,
            "NOTIFIER_PARENT_PID": str(os.getpid()),
            "PYTHONUNBUFFERED": "1",
            "PROMETHEUS_MULTIPROC_DIR": self.metrics.directory,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "notifier.queue",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
        )
        consumer = ConsumerProcess(consumer_id, process)
        self.processes[consumer_id] = consumer
        watcher = asyncio.get_running_loop().create_task(self._watch(consumer))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        log.info("consumer %s started (pid %d)", consumer_id, process.pid)
        if not self.running:
            # stop() began while it was being created (a pool check in flight): stopped at once, it never
            # lives on beside a stopped pool, attached to its queues.
            await self.stop_one(consumer)
        return consumer

    async def _watch(self, consumer: ConsumerProcess) -> None:
        assert consumer.process.stdout is not None  # spawned with stdout=PIPE
        async for line in consumer.process.stdout:
            if line.strip() == b"ready":
                consumer.ready = True
        code = await consumer.process.wait()
        self.processes.pop(consumer.id, None)
        if consumer.stopping:
            log.info("consumer %s stopped (exit %s)", consumer.id, code)
        else:
            self.restarts += 1
            quick = time.time() - consumer.started < QUICK_EXIT_SECONDS
            self._respawn_delay = min(self._respawn_delay * 2, MAX_RESPAWN_DELAY) if quick else 1.0
            self._not_before = time.monotonic() + (self._respawn_delay if quick else 0.0)
            log.warning("consumer %s died (exit %s); pool restart and journal replay follow", consumer.id, code)
        self.unrecovered.add(consumer.id)
        await self._replay_quietly(consumer.id)
        if not consumer.stopping and self.running:
            asyncio.get_running_loop().call_later(
                max(0.0, self._not_before - time.monotonic()), lambda: asyncio.ensure_future(self._check_quietly())
            )

    async def _replay_quietly(self, consumer_id: str) -> None:
        try:
            await self.replay_journal(consumer_id)
        except Exception as exc:  # the pool check tries again; meanwhile its claims stay with it
            log.warning("journal replay of consumer %s failed (%s); retrying on the next pool check", consumer_id, exc)

    def claim_owners(self) -> list[str]:
        """Consumers whose claims only this pool may settle: the live ones, and the dead ones whose journal
        still has to be replayed (the lease reconciler releasing those would send them twice)."""
        return [*self.processes, *self.unrecovered]

    def replayed(self) -> list[str]:
        """Dead consumers whose journal was replayed less than a lease ago. A claim of theirs found now was
        written after the replay (the database applied it after the consumer died, so it never sent any of
        it): the lease reconciler releases it at once instead of when its lease ends."""
        horizon = time.monotonic() - self.settings.lease_seconds
        for consumer_id, replayed_at in list(self._replayed.items()):
            if replayed_at < horizon:
                del self._replayed[consumer_id]
        return list(self._replayed)

    async def _check_quietly(self) -> None:
        try:
            await self.check()
        except Exception as exc:  # the periodic check tries again
            log.warning("consumer pool check failed: %s", exc)

    async def stop_one(self, consumer: ConsumerProcess) -> None:
        consumer.stopping = True
        if consumer.process.returncode is None:
            consumer.process.send_signal(signal.SIGTERM)

    async def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM every consumer (they finish what they hold), then SIGKILL stragglers."""
        self.running = False
        consumers = list(self.processes.values())
        for consumer in consumers:
            await self.stop_one(consumer)
        waits = [asyncio.ensure_future(c.process.wait()) for c in consumers]
        if waits:
            _, late = await asyncio.wait(waits, timeout=timeout)
            for consumer in consumers:
                if consumer.process.returncode is None:
                    log.warning("consumer %s did not drain in %.0fs; killing it", consumer.id, timeout)
                    consumer.process.kill()
            if late:
                await asyncio.wait(late, timeout=10)
        if self._watchers:
            await asyncio.wait(list(self._watchers), timeout=30)
        self.metrics.close()

    # --- journal replay ---

    async def replay_journal(self, consumer_id: str) -> None:
        """Settle a dead consumer's claims from its journal (Recovery.replay_journal); until that succeeds,
        they stay out of the lease reconciler's reach (claim_owners)."""
        self.unrecovered.add(consumer_id)
        await self.recovery.replay_journal(consumer_id)
        self.unrecovered.discard(consumer_id)
        self._replayed[consumer_id] = time.monotonic()

    async def replay_orphan_journals(self) -> None:
        """Journals of consumers whose server is gone (this host, an earlier run)."""
        for consumer_id in self.recovery.orphan_journals(os.getpid()):
            await self.replay_journal(consumer_id)

    def describe(self) -> dict:
        stats = self.last_stats
        return {
            "min": self.settings.consumers_min,
            "max": self.settings.consumers_max,
            "start": self.settings.consumers_start,
            "restarts": self.restarts,
            "consumers": [
                {
                    "id": p.id,
                    "pid": p.pid,
                    "ready": p.ready,
                    "stopping": p.stopping,
                    "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(p.started)),
                }
                for p in self.processes.values()
            ],
            "others": self.others(stats) if stats else None,
            "queued": stats.messages if stats else None,
        }
