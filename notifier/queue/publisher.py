"""Every publish of a delivery's message goes through Publisher: first publishes and recovery republishes
(confirms pipelined in windows, pacing through delay tiers), and a consumer's retries and parked copies.
The choice of exchange and queue for each route (services/outcomes.Route) is made here only.

Deliveries are stored before they are published; only the ones the broker confirmed are marked queued
(`is_sent_to_queue`). Anything else is found by the outbox sweep (queue/recovery.py) and published again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timedelta
from itertools import groupby

import aiormq
from aiormq.abc import Basic

from ..clock import Clock
from ..errors import Unavailable
from ..metrics import PUBLISH_CONFIRM_SECONDS, PUBLISHED
from ..services.deliveries import Deliveries
from ..services.inbox import wire as inbox_wire
from ..services.leases import JobLease
from ..services.outcomes import Route
from ..settings import Settings
from .connection import BrokerConnection
from .topology import EXPRESS, PRIORITY, REGULAR, Topology

log = logging.getLogger(__name__)

CONFIRM_WINDOW = 500
# Windows awaiting their confirms at once, across every publish of the process. Plenty for the broker's
# speed, and it bounds memory: unbounded, a 100,000-recipient notification had all its messages in flight
# at once (each with its future and timer) and the server grew past 500 MB.
WINDOWS_IN_FLIGHT = 2
WAKE_LIMIT = 5000  # scheduled deliveries one wake-up publishes; the next takes the rest


def message_body(delivery: dict) -> bytes:
    """What a consumer needs to claim and send the delivery without reading it first."""
    return json.dumps(
        {
            "delivery_id": str(delivery["_id"]),
            "notification_id": str(delivery["notification_id"]),
            "user_id": delivery["user_id"],
            "channel": delivery["channel"],
            "is_express": delivery["is_express"],
        }
    ).encode()


def _whole_second_after(instant: datetime) -> datetime:
    """Due times in whole seconds, so that the deliveries confirmed in one second share one queued mark
    (one write each otherwise: 500 schedules firing at once took minutes to mark)."""
    whole = instant.replace(microsecond=0)
    return whole if whole == instant else whole + timedelta(seconds=1)


class Publisher:
    """The process's outbox: `submit` publishes in the background; `publish` awaits the confirms; `route`
    sends one delivery to a delay tier or the parking queue (a consumer's retries and failures)."""

    def __init__(
        self,
        broker: BrokerConnection,
        topology: Topology,
        deliveries: Deliveries,
        settings: Settings,
        clock: Clock,
        wake_lease: JobLease | None = None,
    ):
        self.broker = broker
        self.wake_lease = wake_lease  # the server's: one instance at a time runs the scheduled wake-up
        self.topology = topology
        self.deliveries = deliveries
        self.settings = settings
        self.clock = clock
        self._tasks: set[asyncio.Task] = set()
        # Confirmed by the broker, not yet marked queued in the database: id -> (when it reaches the work queue,
        # its notification: the marking counts per notification).
        self._confirmed: dict = {}
        self._being_marked: dict = {}
        self._marking: asyncio.TimerHandle | None = None
        # One set of windows per lane: an express delivery never waits for a regular fan-out's windows.
        self._windows = {EXPRESS: asyncio.Semaphore(WINDOWS_IN_FLIGHT), REGULAR: asyncio.Semaphore(WINDOWS_IN_FLIGHT)}

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

    def submit_task(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._forget)

    async def mark_confirmed(self) -> None:
        if self._marking is not None:
            self._marking.cancel()
            self._marking = None
        # Taken over whole: a marking that outlasts the timer must not be repeated by the next one.
        confirmed, self._confirmed = self._confirmed, {}
        self._being_marked.update(confirmed)
        now = self.clock.now()
        by_due: dict = {}
        for delivery_id, (due, notification_id) in confirmed.items():
            by_due.setdefault(due, {})[delivery_id] = notification_id
        try:
            for due, notifications in by_due.items():
                await self.deliveries.mark_queued(notifications, now, due)
        finally:
            for delivery_id in confirmed:
                self._being_marked.pop(delivery_id, None)

    async def publish_scheduled(self, limit: int = WAKE_LIMIT) -> int:
        """The scheduled wake-up (job "scheduled wake-up", every WAKE_INTERVAL, on the instance holding its
        lease): deliveries whose send_at (or quiet hours' end) came are published now, each notification's as
        one firing (paced past PACING_BATCH), then marked queued; returns how many were confirmed."""
        if not await self._hold_wake_lease():
            return 0
        now = self.clock.now()
        by_notification: dict = {}
        for delivery in await self.deliveries.due_to_wake(now, limit):
            by_notification.setdefault(delivery["notification_id"], []).append(delivery)
        woken = 0
        try:
            for deliveries in by_notification.values():
                if woken and not await self._hold_wake_lease():
                    break  # another instance took over: it finds the rest
                try:
                    confirmed = await self._publish_all(deliveries)
                except aiormq.exceptions.AMQPError as exc:
                    log.warning("scheduled wake-up: publish failed (%s); the next one tries again", exc)
                    continue
                woken += len(confirmed)
                marks: dict = {}
                for delivery, when in confirmed:
                    marks.setdefault((delivery["status"], when), {})[delivery["_id"]] = delivery["notification_id"]
                for (status, when), notifications in marks.items():
                    await self.deliveries.mark_queued(notifications, self.clock.now(), when, status, woken_by=now)
        except BaseException:
            if self.wake_lease is not None:  # for another instance to try at once
                await self.wake_lease.release()
            raise
        return woken

    async def _hold_wake_lease(self) -> bool:
        """Take or renew the wake-up's lease, only while this instance can publish (a holder cut off from the
        broker would hold every instance's wake-up up)."""
        if self.wake_lease is None:
            return True
        if not self.broker.connected:
            await self.wake_lease.release()
            return False
        return await self.wake_lease.take()

    async def publish(self, deliveries: list[dict], position: int = 0) -> int:
        """Publish pending `deliveries` (the ones at `position`... of one firing); returns how many were
        confirmed. They are marked queued a little later, in bulk: by then most are claimed already (the claim
        sets is_sent_to_queue itself), and a delivery that is no longer pending costs no write."""
        confirmed = await self._publish_all(deliveries, position)
        for delivery, when in confirmed:
            self._confirmed[delivery["_id"]] = (when, delivery["notification_id"])
        if confirmed and self._marking is None:
            self._marking = asyncio.get_running_loop().call_later(
                self.settings.outbox_grace / 2, lambda: self.submit_task(self.mark_confirmed())
            )
        return len(confirmed)

    async def _publish_all(self, deliveries: list[dict], position: int = 0) -> list[tuple[dict, datetime]]:
        """Publish in windows; returns the confirmed deliveries, each with when it reaches the work queue."""
        channel = await self.broker.channel()
        confirmed: list[tuple[dict, datetime]] = []
        express = bool(deliveries) and deliveries[0]["is_express"]
        if express:  # first publishes and scheduled wake-ups alike
            self.deliveries.express_seen()
        windows = self._windows[EXPRESS if express else REGULAR]
        for start in range(0, len(deliveries), CONFIRM_WINDOW):
            async with windows:
                confirmed += await self._publish_window(
                    channel, deliveries[start : start + CONFIRM_WINDOW], position + start
                )
        return confirmed

    async def _destination(self, channel, delivery: dict, route: Route, delay_ms: int) -> tuple[str, str, str]:
        """(exchange, routing key, lane) of a message on `route`; a WORK message with a delay is paced."""
        target = EXPRESS if delivery["is_express"] else REGULAR
        if route is Route.RETRY:
            return "", self.topology.retry_queue(target, delay_ms), target
        if route is Route.PARKED:
            return "", self.topology.parked, REGULAR
        if delay_ms:
            return "", await self.topology.ensure_pace_queue(channel, delay_ms), REGULAR
        return self.topology.exchange, target, target

    async def _publish_window(self, channel, window: list[dict], position: int) -> list[tuple[dict, datetime]]:
        """Publish one window (the deliveries at `position`... of one firing); returns the confirmed ones,
        each with when it reaches the work queue."""
        pacing = self.settings.pacing_batch
        plan, delays = [], []
        for index, delivery in enumerate(window, start=position):
            # Pacing, for regular traffic only: each PACING_BATCH of a firing waits one PACING_INTERVAL longer.
            paced = pacing and not delivery["is_express"]
            delay_ms = round(index // pacing * self.settings.pacing_interval * 1000) if paced else 0
            delays.append(delay_ms)
            plan.append((delivery, *await self._destination(channel, delivery, Route.WORK, delay_ms)))
        results = await asyncio.gather(*(self._send(channel, *route) for route in plan), return_exceptions=True)
        now = self.clock.now()
        confirmed = [
            (route[0], _whole_second_after(now + timedelta(milliseconds=delay_ms)))
            for route, delay_ms, result in zip(plan, delays, results, strict=True)
            if isinstance(result, Basic.Ack)
        ]
        if len(confirmed) < len(plan):
            failure = next((r for r in results if not isinstance(r, Basic.Ack)), None)
            log.warning(
                "broker did not confirm %d of %d messages (%r); they are published again later",
                len(plan) - len(confirmed),
                len(plan),
                failure,
            )
        return confirmed

    async def _send(
        self,
        channel,
        delivery: dict,
        exchange: str,
        routing_key: str,
        target: str,
        headers: dict | None = None,
        observed: bool = True,
    ):
        """The one basic_publish of a delivery's message; `observed` counts it in the server's metrics
        (first publishes and republishes, not a consumer's retries and parked copies)."""
        started = time.monotonic()
        properties = Basic.Properties(
            delivery_mode=2,
            priority=PRIORITY[target],
            content_type="application/json",
            message_id=str(delivery["_id"]),
            headers=headers,
        )
        result = await channel.basic_publish(
            message_body(delivery),
            exchange=exchange,
            routing_key=routing_key,
            properties=properties,
            mandatory=True,
            timeout=self.settings.publish_timeout,
        )
        if observed:
            lane = target if exchange else "paced"
            PUBLISH_CONFIRM_SECONDS.labels(lane).observe(time.monotonic() - started)
            if isinstance(result, Basic.Ack):
                PUBLISHED.labels(lane).inc()
        return result

    async def route(self, delivery: dict, route: Route, delay_ms: int = 0, headers: dict | None = None) -> bool:
        """Publish one delivery on `route` (a delay tier, the parking queue); True when the broker confirmed.
        A failure is logged, not raised: the outbox sweep publishes the delivery later."""
        routing_key = route.value
        try:
            channel = await self.broker.channel()
            exchange, routing_key, target = await self._destination(channel, delivery, route, delay_ms)
            confirmation = await self._send(channel, delivery, exchange, routing_key, target, headers, observed=False)
            return isinstance(confirmation, Basic.Ack)
        except Exception as exc:  # the broker is away
            log.warning("could not publish delivery %s to %s: %s", delivery["_id"], routing_key, exc)
            return False

    async def announce_inbox(self, events: list[dict]) -> None:
        """Tell every server's streams of inbox events (services/inbox.py stored them first)."""
        channel = await self.broker.channel()
        await channel.basic_publish(
            inbox_wire(events),
            exchange=self.topology.inbox_exchange,
            routing_key="",
            properties=Basic.Properties(content_type="application/json"),
            timeout=self.settings.publish_timeout,
        )

    def unconfirmed(self, deliveries: list[dict]) -> list[dict]:
        """Those of `deliveries` this publisher has no confirm for (a confirmed one's mark is on its way)."""
        return [d for d in deliveries if d["_id"] not in self._confirmed and d["_id"] not in self._being_marked]

    async def republish(self, due: list[dict]) -> int:
        """Publish again, notification by notification (recovery); returns how many were confirmed."""
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
                log.warning("republish failed (%s); the outbox sweep retries", exc)
        return published
