"""RabbitMQ names and declarations: a work exchange, regular and express queues, delay tiers, a parking queue.

The broker has no delayed-message plugin, and a per-message TTL only expires at the queue head, so every
delay is its own queue with a queue-wide `x-message-ttl` that dead-letters back to the work exchange.
Every argument follows from the queue's name, so a changed setting never redeclares a queue differently:
quorum queues (QUEUE_TYPE, for a RabbitMQ cluster) have names of their own. They take no x-max-priority
(express has its own queue anyway), and their delay tiers dead-letter at least once instead of at most once.
"""

from __future__ import annotations

import time

import aiormq

from ..services.outcomes import delays_ms

EXPRESS, REGULAR = "express", "regular"
MAX_PRIORITY = 10
PRIORITY = {EXPRESS: 9, REGULAR: 1}
PACE_QUEUE_IDLE_MS = 5 * 60 * 1000
PACE_REDECLARE_SECONDS = 60.0
PARKED_TTL_MS = 7 * 24 * 3600 * 1000


CLASSIC, QUORUM = "classic", "quorum"


class Topology:
    def __init__(self, prefix: str, retry_delays: tuple[float, ...], queue_type: str = CLASSIC):
        self.queue_type = queue_type
        # The exchange is renamed too: one exchange bound to both kinds of queue would deliver everything twice.
        self.prefix = prefix if queue_type == CLASSIC else f"{prefix}{queue_type}."
        self.exchange = self.prefix + "work"
        self.queues = {EXPRESS: self.prefix + EXPRESS, REGULAR: self.prefix + REGULAR}
        self.parked = self.prefix + "parked"
        # Inbox events for every server's streams: each server binds a queue of its own that goes away with it.
        self.inbox_exchange = self.prefix + "inbox"
        self.retry_delays_ms = tuple(sorted(set(delays_ms(retry_delays))))  # one delay tier per distinct delay
        self.pace_declared: dict[int, float] = {}

    @classmethod
    def from_settings(cls, settings) -> Topology:
        return cls(settings.queue_prefix, settings.retry_delays, settings.queue_type)

    def _arguments(self, classic: dict, quorum: dict) -> dict:
        return classic if self.queue_type == CLASSIC else {"x-queue-type": QUORUM, **quorum}

    def retry_queue(self, target: str, delay_ms: int) -> str:
        return f"{self.prefix}delay.{target}.{delay_ms}"

    def pace_queue(self, delay_ms: int) -> str:
        return f"{self.prefix}pace.{delay_ms}"

    def pace_queues_for(self, recipients: int, batch: int, interval: float) -> list[str]:
        """Every pace tier a fan-out of `recipients` could use (for cleaning up after tests)."""
        batches = -(-recipients // batch) if batch else 0
        return [self.pace_queue(round(k * interval * 1000)) for k in range(1, batches)]

    def exchanges(self) -> list[str]:
        return [self.exchange, self.inbox_exchange]

    def all_queues(self) -> list[str]:
        """Every queue declared at startup (pace queues come and go with use)."""
        return [
            *self.queues.values(),
            self.parked,
            *(self.retry_queue(t, ms) for t in (EXPRESS, REGULAR) for ms in self.retry_delays_ms),
        ]

    async def declare(self, channel: aiormq.abc.AbstractChannel) -> None:
        await channel.exchange_declare(exchange=self.exchange, exchange_type="direct", durable=True)
        await channel.exchange_declare(exchange=self.inbox_exchange, exchange_type="fanout", durable=True)
        for target, queue in self.queues.items():
            arguments = self._arguments({"x-max-priority": MAX_PRIORITY}, {})
            await channel.queue_declare(queue, durable=True, arguments=arguments)
            await channel.queue_bind(queue, exchange=self.exchange, routing_key=target)
        parked = {"x-message-ttl": PARKED_TTL_MS}
        await channel.queue_declare(self.parked, durable=True, arguments=self._arguments(parked, parked))
        for target in (EXPRESS, REGULAR):
            for delay_ms in self.retry_delays_ms:
                await self._declare_delay(channel, self.retry_queue(target, delay_ms), target, delay_ms)
        self.pace_declared.clear()

    async def _declare_delay(self, channel, queue: str, target: str, delay_ms: int, idle_ms: int = 0) -> None:
        arguments = {
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": self.exchange,
            "x-dead-letter-routing-key": target,
        }
        if idle_ms:
            arguments["x-expires"] = delay_ms + idle_ms
        # At-least-once dead-lettering needs reject-publish overflow; the lost-message finder stays for classic.
        at_least_once = {**arguments, "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
        await channel.queue_declare(queue, durable=True, arguments=self._arguments(arguments, at_least_once))

    async def ensure_pace_queue(self, channel, delay_ms: int) -> str:
        """Declare the pace tier for this delay when it was not declared lately.

        Pace tiers delete themselves when idle (x-expires), and only a declare counts as use, so they are
        declared again well before a message published now could outlive them.
        """
        queue = self.pace_queue(delay_ms)
        now = time.monotonic()
        if now - self.pace_declared.get(delay_ms, -PACE_REDECLARE_SECONDS) >= PACE_REDECLARE_SECONDS:
            await self._declare_delay(channel, queue, REGULAR, delay_ms, idle_ms=PACE_QUEUE_IDLE_MS)
            self.pace_declared[delay_ms] = now
        return queue
