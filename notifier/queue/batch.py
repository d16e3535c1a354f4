"""One batch of a consumer, from its messages to their ack: claim the deliveries in the database, send what
was claimed, decide each outcome (services/outcomes.py), apply the decisions (publish retries and parked
copies, write every outcome), and only then ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiormq.abc import DeliveredMessage
from bson import ObjectId
from bson.errors import InvalidId
from pymongo.errors import PyMongoError

from ..clock import Clock
from ..domain import DeliveryStatus
from ..services.deliveries import Deliveries, new_claim_token
from ..services.outcomes import Decision, OutcomeKind, RetryPolicy, decide
from ..services.sending import Outcome, Sender
from ..settings import Settings
from .journal import Journal
from .metrics import DELIVERIES, SEND_SECONDS
from .publisher import Publisher

log = logging.getLogger(__name__)

# A batch starts no send after this share of its lease: the rest is for writing the outcomes before
# any lease reconciler could take the claim back (a slow database must not turn into a second send).
LEASE_SHARE_FOR_SENDING = 0.5
DATABASE_RETRY_SECONDS = 600.0
DATABASE_RETRY_WHILE_STOPPING = 10.0
AGAIN = (OutcomeKind.RETRY, OutcomeKind.DEFER)

T = TypeVar("T")


class Batches:
    """Runs a consumer's batches; `stopping` is set when a claimed batch cannot finish (the pool then
    settles it from the journal)."""

    def __init__(self, consumer_id: str, settings: Settings, clock: Clock, deliveries: Deliveries, sender: Sender,
                 publisher: Publisher, journal: Journal, stopping: asyncio.Event):
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
        # Regular batches take turns for the database: it answers one request at a time, so a queue of
        # regular writes would hold up every express claim.
        self.regular_turn = asyncio.Semaphore(1)

    async def regular(self, batch: list[DeliveredMessage]) -> None:
        await self.run(batch, self.regular_turn)

    async def express(self, batch: list[DeliveredMessage]) -> None:
        await self.run(batch)

    async def run(self, batch: list[DeliveredMessage], turn: asyncio.Semaphore | None = None) -> None:
        """Claim, send, decide and apply, ack."""
        database_turn: contextlib.AbstractAsyncContextManager[Any] = turn or contextlib.nullcontext()
        self.active += 1
        try:
            messages, payloads = await _by_delivery(batch)
            if not messages:
                return
            token = new_claim_token()
            send_before = time.monotonic() + self.settings.lease_seconds * LEASE_SHARE_FOR_SENDING
            async with database_turn:
                claimed_ids = await self._database(
                    lambda: self.deliveries.claim(list(messages), self.consumer_id, self.clock.now(),
                                                  self.settings.lease_seconds, token))
            if claimed_ids:
                claimed = [payloads[i] for i in claimed_ids]
                try:
                    looked_up = await self._database(lambda: self.sender.look_up(claimed))
                    outcomes = await self.sender.attempt(claimed, looked_up, token, send_before)
                    async with database_turn:
                        await self._settle(token, outcomes)
                except Exception:
                    # The claims are ours until we write their outcomes, and nobody else takes a live
                    # consumer's claims: stop, so the pool's journal replay settles them.
                    log.critical("cannot finish a claimed batch; stopping for the pool to recover it", exc_info=True)
                    self.journal_pending = True
                    self.stopping.set()
                    return
            for delivery_messages in messages.values():
                for message in delivery_messages:
                    await _ack(message)
        finally:
            self.active -= 1
            if not self.active and not self.journal_pending:
                self.journal.truncate()

    async def _settle(self, token: str, outcomes: list[Outcome]) -> None:
        """Decide every outcome, publish what goes to a delay tier or the parking queue, write them all."""
        now = self.clock.now()
        again = [o.delivery["_id"] for o in outcomes if o.kind in AGAIN]
        counters = await self._database(lambda: self.deliveries.counters(again)) if again else {}
        sent: list[ObjectId] = []
        changes: list[tuple[ObjectId, dict]] = []
        decisions: list[tuple[Outcome, Decision]] = []
        for outcome in outcomes:
            delivery = outcome.delivery
            counted = counters.get(delivery["_id"], {})
            decision = decide(outcome.kind, now, self.policy, attempts=counted.get("attempts", 1),
                              deferrals=counted.get("deferrals", 0), reason=outcome.reason, error=outcome.error)
            decisions.append((outcome, decision))
            if decision.status is DeliveryStatus.SENT:
                sent.append(delivery["_id"])
                continue
            published = True
            if decision.route is not None:
                published = await self.publisher.route(delivery, decision.route, decision.delay_ms, decision.headers)
            changes.append((delivery["_id"], decision.update(published)))
        await self._database(lambda: self.deliveries.finish(token, now, sent, changes))
        for outcome, decision in decisions:
            channel = outcome.delivery["channel"]
            DELIVERIES.labels(channel, decision.counted_as).inc()
            if outcome.seconds is not None:
                SEND_SECONDS.labels(channel).observe(outcome.seconds)

    async def _database(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await retry_database(operation, self.stopping)


async def _by_delivery(batch: list[DeliveredMessage]) -> tuple[dict[ObjectId, list[DeliveredMessage]],
                                                                 dict[ObjectId, dict]]:
    """The batch's messages by the delivery they name (a redelivered one may come twice); a message that
    names none is acked and dropped."""
    messages: dict[ObjectId, list[DeliveredMessage]] = {}
    payloads: dict[ObjectId, dict] = {}
    for message in batch:
        payload = _payload(message)
        if payload is None:
            log.error("dropping a message that names no delivery: %r", message.body[:200])
            await _ack(message)
            continue
        messages.setdefault(payload["_id"], []).append(message)
        payloads[payload["_id"]] = payload
    return messages, payloads


def _payload(message: DeliveredMessage) -> dict | None:
    """The delivery a message is about, as the publisher described it (see publisher.message_body)."""
    try:
        body = json.loads(message.body)
        return {"_id": ObjectId(body["delivery_id"]), "notification_id": ObjectId(body["notification_id"]),
                "user_id": str(body["user_id"]), "channel": str(body["channel"]),
                "is_express": bool(body["is_express"])}
    except (ValueError, KeyError, TypeError, InvalidId):
        return None


async def _ack(message: DeliveredMessage) -> None:
    try:
        await message.channel.basic_ack(_tag(message), wait=False)
    except Exception:  # a closed channel: the broker redelivers, and the claim makes that harmless
        pass


async def nack(message: DeliveredMessage) -> None:
    """Give a message back to its queue (one never started, at shutdown)."""
    try:
        await message.channel.basic_nack(_tag(message), requeue=True)
    except Exception:  # the channel is gone: the broker requeues it anyway
        pass


def _tag(message: DeliveredMessage) -> int:
    tag = message.delivery_tag
    if tag is None:  # only a consumed (Deliver) message is ever in a batch
        raise ValueError("a message without a delivery tag")
    return tag


async def retry_database(operation: Callable[[], Awaitable[T]], stopping: asyncio.Event,
                         limit: float = DATABASE_RETRY_SECONDS) -> T:
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
