"""Publishing deliveries from the Tornado process: confirms pipelined in windows, pacing through delay tiers.

Deliveries are stored before they are published; only the ones the broker confirmed are marked queued
(`is_sent_to_queue`). Anything else is found by the outbox sweep and published again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from itertools import groupby

import aiormq
from aiormq.abc import Basic

from ..clock import Clock
from ..errors import Unavailable
from ..services.deliveries import Deliveries
from ..settings import Settings
from .connection import BrokerConnection
from .topology import EXPRESS, PRIORITY, REGULAR, Topology

log = logging.getLogger(__name__)

CONFIRM_WINDOW = 500


def message_body(delivery: dict) -> bytes:
    """What a consumer needs to claim and send the delivery without reading it first."""
    return json.dumps({"delivery_id": str(delivery["_id"]), "notification_id": str(delivery["notification_id"]),
                       "user_id": delivery["user_id"], "channel": delivery["channel"],
                       "is_express": delivery["is_express"]}).encode()


def properties(delivery: dict, target: str) -> Basic.Properties:
    return Basic.Properties(delivery_mode=2, priority=PRIORITY[target], content_type="application/json",
                            message_id=str(delivery["_id"]))


class Publisher:
    """The process's outbox: `submit` publishes in the background; `publish` awaits the confirms."""

    def __init__(self, broker: BrokerConnection, topology: Topology, deliveries: Deliveries,
                 settings: Settings, clock: Clock):
        self.broker = broker
        self.topology = topology
        self.deliveries = deliveries
        self.settings = settings
        self.clock = clock
        self._tasks: set[asyncio.Task] = set()
        self._confirmed: set = set()  # confirmed by the broker, not yet marked queued in the database
        self._marking: asyncio.TimerHandle | None = None

    def submit(self, notification: dict, deliveries: list[dict], position: int = 0) -> None:
        self.submit_task(self.publish(deliveries, position))

    def _forget(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("publish failed, left for the outbox sweep: %s", task.exception())

    async def drain(self, timeout: float) -> None:
        """Wait for background publishes (at shutdown); what does not finish stays for the sweep."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        await self.mark_confirmed()

    def _confirm(self, ids: list) -> None:
        """Mark confirmed deliveries queued a little later, in bulk: by then most are claimed already (the
        claim sets is_sent_to_queue itself), and a delivery that is no longer pending costs no write."""
        self._confirmed.update(ids)
        if self._marking is None:
            self._marking = asyncio.get_running_loop().call_later(
                self.settings.outbox_grace / 2, lambda: self.submit_task(self.mark_confirmed()))

    def submit_task(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._forget)

    async def mark_confirmed(self) -> None:
        if self._marking is not None:
            self._marking.cancel()
            self._marking = None
        ids = list(self._confirmed)
        if ids:
            try:
                await self.deliveries.mark_queued(ids, self.clock.now())
            finally:
                self._confirmed.difference_update(ids)

    def _delay_ms(self, delivery: dict, index: int) -> int:
        """How long this delivery waits before reaching the work queue: pacing, for regular traffic only."""
        batch = self.settings.pacing_batch
        if delivery["is_express"] or not batch:
            return 0
        return round(index // batch * self.settings.pacing_interval * 1000)

    async def publish(self, deliveries: list[dict], position: int = 0) -> int:
        """Publish `deliveries` (the ones at `position`... of one firing); returns how many were confirmed."""
        channel = await self.broker.channel()
        confirmed = 0
        for start in range(0, len(deliveries), CONFIRM_WINDOW):
            window = deliveries[start:start + CONFIRM_WINDOW]
            plan = []
            for offset, delivery in enumerate(window):
                delay_ms = self._delay_ms(delivery, position + start + offset)
                if delay_ms:
                    queue = await self.topology.ensure_pace_queue(channel, delay_ms)
                    plan.append((delivery, "", queue, REGULAR))
                else:
                    target = EXPRESS if delivery["is_express"] else REGULAR
                    plan.append((delivery, self.topology.exchange, target, target))
            results = await asyncio.gather(*(self._send(channel, *route) for route in plan),
                                           return_exceptions=True)
            acked = [route[0]["_id"] for route, result in zip(plan, results) if isinstance(result, Basic.Ack)]
            if len(acked) < len(plan):
                failure = next((r for r in results if not isinstance(r, Basic.Ack)), None)
                log.warning("broker did not confirm %d of %d messages (%r); the outbox sweep will retry",
                            len(plan) - len(acked), len(plan), failure)
            self._confirm(acked)
            confirmed += len(acked)
        return confirmed

    async def _send(self, channel, delivery: dict, exchange: str, routing_key: str, target: str):
        return await channel.basic_publish(message_body(delivery), exchange=exchange, routing_key=routing_key,
                                           properties=properties(delivery, target), mandatory=True,
                                           timeout=self.settings.publish_timeout)

    async def sweep(self, grace: float, limit: int) -> int:
        """Publish again what was stored but never confirmed; returns how many went this time."""
        due = await self.deliveries.due_for_publishing(self.clock.now(), grace, limit)
        due = [d for d in due if d["_id"] not in self._confirmed]  # in the broker; the mark is on its way
        if not due:
            return 0
        published = 0
        due.sort(key=lambda d: (str(d["notification_id"]), d["_id"]))
        for _, group in groupby(due, key=lambda d: d["notification_id"]):
            try:
                published += await self.publish(list(group))
            except Unavailable:
                break
            except aiormq.exceptions.AMQPError as exc:
                log.warning("outbox sweep: publish failed (%s); next tick retries", exc)
        return published
