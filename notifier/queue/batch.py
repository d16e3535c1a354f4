"""A consumer's batches: a Lane groups the messages of one queue into batches, and Batches.run takes one
batch from its messages to their ack: claim the deliveries in the database, send what was claimed, decide
each outcome (services/outcomes.py), apply the decisions (publish retries and parked copies, write every
outcome), count the batch's moves in its notifications' counts (one increment per notification for the
claim and the outcomes together, services/counts.py), and only then ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar, cast

from aiormq.abc import DeliveredMessage
from bson import ObjectId
from bson.errors import InvalidId
from pymongo.errors import PyMongoError

from ..clock import Clock
from ..metrics import DELIVERIES, SEND_SECONDS
from ..services.counts import SENDING, WAITING, Tally
from ..services.deliveries import Deliveries
from ..services.outcomes import OutcomeKind, RetryPolicy, decide
from ..services.sending import Sender
from ..settings import Settings
from .journal import Journal
from .publisher import Publisher

log = logging.getLogger(__name__)

# A batch starts no send after this share of its lease: the rest is for writing the outcomes before
# any lease reconciler could take the claim back (a slow database must not turn into a second send).
LEASE_SHARE_FOR_SENDING = 0.5
DATABASE_RETRY_SECONDS = 600.0
DATABASE_RETRY_WHILE_STOPPING = 10.0
# Outcomes that leave the delivery to go again later: a cancel that came meanwhile makes them cancelled.
AGAIN = (OutcomeKind.RETRY, OutcomeKind.DEFER, OutcomeKind.QUIET)
EXPRESS_PRECEDENCE_SECONDS = 1.0

T = TypeVar("T")


class Lane:
    """Messages of one queue, grouped into batches; at most `parallel` batches in hand at once."""

    def __init__(
        self,
        name: str,
        batch: int,
        wait: float,
        parallel: int,
        process: Callable[[list[DeliveredMessage]], Coroutine[Any, Any, None]],
    ):
        self.name = name
        self.batch = batch
        self.wait = wait
        self.process = process
        self.buffer: list[DeliveredMessage] = []
        self.arrived = asyncio.Event()
        self.slots = asyncio.Semaphore(parallel)
        self.in_hand: set[asyncio.Task] = set()
        self.open = True

    async def add(self, message: DeliveredMessage) -> None:
        """The consume callback of the lane's queue."""
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
            batch, self.buffer = self.buffer[: self.batch], self.buffer[self.batch :]
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


class Batches:
    """Runs a consumer's batches; `stopping` is set when a claimed batch cannot finish (the pool's journal
    replay then settles it)."""

    def __init__(
        self,
        consumer_id: str,
        settings: Settings,
        clock: Clock,
        deliveries: Deliveries,
        sender: Sender,
        publisher: Publisher,
        journal: Journal,
        stopping: asyncio.Event,
    ):
        self.consumer_id = consumer_id
        self.settings = settings
        self.clock = clock
        self.deliveries = deliveries
        self.sender = sender
        self.publisher = publisher
        self.journal = journal
        self.stopping = stopping
        self.policy = RetryPolicy.of(settings.max_attempts, settings.retry_delays)
        self.active = 0
        self.journal_pending = False  # a batch stopped half-way: its journal is for the pool's journal replay
        # The database answers one request at a time: a queue of regular writes would hold up every express claim.
        self.turns = DatabaseTurns()

    async def run(self, batch: list[DeliveredMessage], express: bool = False) -> None:
        """Claim, send, decide, apply the decisions, ack: the whole life of one batch."""
        database_turn = self.turns.express if express else self.turns.regular
        if express:
            self.deliveries.express_seen()
        self.active += 1
        try:
            messages, payloads = await _by_delivery(batch)
            if not messages:
                return
            # 1. Claim: only deliveries still waiting become ours (a redelivered message finds nothing).
            token = secrets.token_hex(8)  # the claim's token: only its holder writes the outcomes
            send_before = time.monotonic() + self.settings.lease_seconds * LEASE_SHARE_FOR_SENDING
            async with database_turn():
                # The reads a send needs go to the database beside the claim, so that they wait once in its
                # queue, not three times (they only read: a redelivered batch that claims nothing drops them).
                reading = asyncio.ensure_future(
                    retry_database(lambda: self.sender.look_up(list(payloads.values())), self.stopping)
                )
                try:
                    claimed_ids = await retry_database(
                        lambda: self.deliveries.claim(
                            list(messages), self.consumer_id, self.clock.now(), self.settings.lease_seconds, token
                        ),
                        self.stopping,
                    )
                except BaseException:
                    await _dropped(reading)
                    raise
            if not claimed_ids:
                await _dropped(reading)
            else:
                claimed = [payloads[i] for i in claimed_ids]
                tally = Tally()
                for delivery in claimed:
                    tally.move(delivery["notification_id"], WAITING, SENDING)
                try:
                    # 2. Send: read what the batch needs (an outage is waited out), then try each delivery.
                    looked_up = await reading
                    outcomes = await asyncio.gather(
                        *(
                            self.sender.attempt(delivery, looked_up, token, send_before, self.clock.now())
                            for delivery in claimed
                        )
                    )
                    if express:  # its send may have outlasted the window: regular writes stay short until it is written
                        self.deliveries.express_seen()
                    async with database_turn():
                        # 3. Decide each outcome (services/outcomes.py) and apply it: publish where the decision
                        # routes the delivery, then write every outcome of the claim at once.
                        now = self.clock.now()
                        again = [o.delivery["_id"] for o in outcomes if o.kind in AGAIN]
                        counters = (
                            await retry_database(lambda: self.deliveries.counters(again), self.stopping)
                            if again
                            else {}
                        )
                        changes: list[tuple[ObjectId, dict]] = []
                        counted_as: list[str] = []
                        for outcome in outcomes:
                            delivery = outcome.delivery
                            counted = counters.get(delivery["_id"], {})
                            decision = decide(
                                OutcomeKind.CANCELLED if counted.get("cancel_requested") else outcome.kind,
                                now,
                                self.policy,
                                attempts=counted.get("attempts", 1),
                                deferrals=counted.get("deferrals", 0),
                                reason=outcome.reason,
                                error=outcome.error,
                                expires_at=looked_up.expires_at(delivery),
                                until=outcome.until,
                            )
                            published = True
                            if decision.route is not None:
                                published = await self.publisher.route(
                                    delivery, decision.route, decision.delay_ms, decision.headers
                                )
                            changes.append((delivery["_id"], decision.update(published, looked_up.tracked(delivery))))
                            counted_as.append(decision.counted_as)
                        written = await retry_database(lambda: self.deliveries.finish(token, changes), self.stopping)
                        for delivery_id, status, reason in written:
                            tally.move(payloads[delivery_id]["notification_id"], SENDING, status, target_reason=reason)
                        await self.deliveries.counts.apply_safely(tally, now)
                except Exception:
                    # The claims are ours until we write their outcomes, and nobody else takes a live
                    # consumer's claims: stop, so the pool's journal replay settles them (and counts that).
                    log.critical("cannot finish a claimed batch; stopping for the pool to recover it", exc_info=True)
                    self.journal_pending = True
                    self.stopping.set()
                    await self.deliveries.counts.apply_safely(tally, self.clock.now())
                    return
                for outcome, status in zip(outcomes, counted_as, strict=True):
                    DELIVERIES.labels(outcome.delivery["channel"], status).inc()
                    if outcome.seconds is not None:
                        SEND_SECONDS.labels(outcome.delivery["channel"]).observe(outcome.seconds)
            # 4. Ack, only now that every outcome is written.
            for delivery_messages in messages.values():
                for message in delivery_messages:
                    await _ack(message)
        finally:
            self.active -= 1
            if not self.active and not self.journal_pending:
                self.journal.truncate()


class DatabaseTurns:
    """When a consumer's batches may go to the database: regular batches one at a time and, while an
    express batch has a database step in hand, not at all (for up to EXPRESS_PRECEDENCE_SECONDS, so a
    steady express stream slows regular traffic but never stops it)."""

    def __init__(self) -> None:
        self._regular = asyncio.Semaphore(1)
        self._express = 0
        self._express_idle = asyncio.Event()
        self._express_idle.set()

    @contextlib.asynccontextmanager
    async def express(self) -> AsyncIterator[None]:
        self._express += 1
        self._express_idle.clear()
        try:
            yield
        finally:
            self._express -= 1
            if not self._express:
                self._express_idle.set()

    @contextlib.asynccontextmanager
    async def regular(self) -> AsyncIterator[None]:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._express_idle.wait(), EXPRESS_PRECEDENCE_SECONDS)
        async with self._regular:
            yield


async def _dropped(task: asyncio.Future) -> None:
    """Cancel a read nobody needs any more and wait for it to end. Its own error is dropped with it; a
    cancellation of the batch itself still goes through (asyncio.wait does not swallow it)."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


async def _by_delivery(
    batch: list[DeliveredMessage],
) -> tuple[dict[ObjectId, list[DeliveredMessage]], dict[ObjectId, dict]]:
    """The batch's messages by the delivery they name (a redelivered one may come twice), with the delivery
    as the publisher described it (publisher.message_body); a message that names none is acked and dropped."""
    messages: dict[ObjectId, list[DeliveredMessage]] = {}
    payloads: dict[ObjectId, dict] = {}
    for message in batch:
        try:
            body = json.loads(message.body)
            delivery_id = ObjectId(body["delivery_id"])
            payload = {
                "_id": delivery_id,
                "notification_id": ObjectId(body["notification_id"]),
                "user_id": str(body["user_id"]),
                "channel": str(body["channel"]),
                "is_express": bool(body["is_express"]),
            }
        except (ValueError, KeyError, TypeError, InvalidId):
            log.error("dropping a message that names no delivery: %r", message.body[:200])
            await _ack(message)
            continue
        messages.setdefault(delivery_id, []).append(message)
        payloads[delivery_id] = payload
    return messages, payloads


# A consumed message always carries its delivery tag (only a basic.get answer could lack one).
ACK_SECONDS = 5.0


async def _ack(message: DeliveredMessage) -> None:
    # A message of a channel closed since (the broker went away and came back) is redelivered by the broker,
    # and the claim makes that harmless; acking it there would wait for ever on the dead channel's writer.
    if message.channel.is_closed:
        return
    try:
        await asyncio.wait_for(message.channel.basic_ack(cast(int, message.delivery_tag), wait=False), ACK_SECONDS)
    except Exception:  # a channel closing meanwhile: the same
        pass


async def nack(message: DeliveredMessage) -> None:
    """Give a message back to its queue (one never started, at shutdown)."""
    if message.channel.is_closed:
        return  # the broker requeued it when the channel closed
    try:
        await asyncio.wait_for(message.channel.basic_nack(cast(int, message.delivery_tag), requeue=True), ACK_SECONDS)
    except Exception:  # the channel is gone: the broker requeues it anyway
        pass


async def retry_database(
    operation: Callable[[], Awaitable[T]], stopping: asyncio.Event, limit: float = DATABASE_RETRY_SECONDS
) -> T:
    """Run a database operation, waiting out an outage (a batch in hand must not be lost or half-written).
    While stopping, it waits only briefly: what is left is in the journal for the pool's journal replay."""
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
