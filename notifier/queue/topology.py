"""RabbitMQ names and declarations: a work exchange, regular and express queues, delay tiers, a parking queue.

The broker has no delayed-message plugin, and a per-message TTL only expires at the queue head, so every
delay is its own queue with a queue-wide `x-message-ttl` that dead-letters back to the work exchange.
Every argument follows from the queue's name, so a changed setting never redeclares a queue differently.
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


class Topology:
    def __init__(self, prefix: str, retry_delays: tuple[float, ...]):
        self.prefix = prefix
        self.exchange = prefix + "work"
        self.queues = {EXPRESS: prefix + EXPRESS, REGULAR: prefix + REGULAR}
        self.parked = prefix + "parked"
        self.retry_delays_ms = tuple(sorted(set(delays_ms(retry_delays))))  # one delay tier per distinct delay
        self.pace_declared: dict[int, float] = {}

    def retry_queue(self, target: str, delay_ms: int) -> str:
        return f"{self.prefix}delay.{target}.{delay_ms}"

    def pace_queue(self, delay_ms: int) -> str:
        return f"{self.prefix}pace.{delay_ms}"

    def pace_queues_for(self, recipients: int, batch: int, interval: float) -> list[str]:
        """Every pace tier a fan-out of `recipients` could use (for cleaning up after tests)."""
        batches = -(-recipients // batch) if batch else 0
        return [self.pace_queue(round(k * interval * 1000)) for k in range(1, batches)]

    def all_queues(self) -> list[str]:
        """Every queue declared at startup (pace queues come and go with use)."""
        return [
            *self.queues.values(),
            self.parked,
            *(self.retry_queue(t, ms) for t in (EXPRESS, REGULAR) for ms in self.retry_delays_ms),
        ]

    async def declare(self, channel: aiormq.abc.AbstractChannel) -> None:
        await channel.exchange_declare(exchange=self.exchange, exchange_type="direct", durable=True)
        for target, queue in self.queues.items():
            await channel.queue_declare(queue, durable=True, arguments={"x-max-priority": MAX_PRIORITY})
            await channel.queue_bind(queue, exchange=self.exchange, routing_key=target)
        await channel.queue_declare(self.parked, durable=True, arguments={"x-message-ttl": PARKED_TTL_MS})
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
        await channel.queue_declare(queue, durable=True, arguments=arguments)

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
