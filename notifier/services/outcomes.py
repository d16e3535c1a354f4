"""What happens to a delivery after an attempt, in one table: `decide` maps an outcome and the delivery's
counters to its next status, the fields written with it, and where its message goes again (if anywhere).

The consumer's batch (queue/batch.py) and recovery (queue/recovery.py) only apply these decisions:
publish where `route` says, then write `update()` under their claim guard.

| outcome      | status                     | message goes to                   | attempts        |
|--------------|----------------------------|-----------------------------------|-----------------|
| sent         | sent                       | -                                 | kept            |
| skipped      | skipped (reason)           | -                                 | kept            |
| retry        | queued (pending unpublished) | delay tier for retry `attempts` | kept (counted at the claim) |
| retry, attempts exhausted | failed (attempts_exhausted) | parking queue            | kept            |
| defer        | queued (pending unpublished) | delay tier for deferral n       | given back      |
| failed       | failed (reason)            | parking queue                     | kept            |
| abandoned    | pending, unsent            | - (the outbox sweep publishes it) | given back      |
| interrupted  | failed (interrupted)       | -                                 | kept            |
| released     | pending, unsent            | work queue                        | kept            |
| cancelled    | cancelled                  | -                                 | kept            |
| expired      | expired (reason)           | -                                 | kept            |
| retry or defer ending after expires_at | expired (expired_before_retry) | -   | kept            |
| quiet        | deferred (quiet_hours) until the window ends | - (the scheduled wake-up) | given back |
| quiet, ending after expires_at | expired (expired_in_quiet_hours) | -           | kept            |

A delivery the sender cancelled while a consumer held it (`cancel_requested`) ends as `cancelled` instead of
being retried or deferred; one released or abandoned meanwhile is cancelled by the next claim of its message
(services/deliveries.py: Deliveries.claim).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..domain import DeliveryStatus
from .events import EVENT_OF_STATUS, recording

EXHAUSTED = "attempts_exhausted"
EXPIRED_BEFORE_SEND = "expired_before_send"
EXPIRED_BEFORE_RETRY = "expired_before_retry"
EXPIRED_IN_QUIET_HOURS = "expired_in_quiet_hours"
QUIET_HOURS = "quiet_hours"
INTERRUPTED_ERROR = (
    "the consumer stopped during the send; it may or may not have arrived, so it is not sent "
    "again (redrive to send anyway)"
)
ANSWER_LOST_ERROR = (
    "the receiver's answer was lost after the message went out; it may or may not have arrived, so it is "
    "not sent again (redrive to send anyway)"
)
PARKED_ERROR_LENGTH = 500


class OutcomeKind(enum.StrEnum):
    SENT = "sent"
    SKIPPED = "skipped"
    RETRY = "retry"  # a temporary failure of the channel
    DEFER = "defer"  # not the channel's fault (the user service could not say): again, without using an attempt
    FAILED = "failed"  # a permanent failure
    ABANDONED = "abandoned"  # not sent: the claim's lease ran too short to finish safely
    INTERRUPTED = "interrupted"  # begun where a repeat would show, its end unknown (a dead consumer, a lost answer)
    RELEASED = "released"  # journal replay or lease reconciler: the claim is taken back
    CANCELLED = "cancelled"  # the sender cancelled it before it went out
    EXPIRED = "expired"  # its notification's expires_at passed before it went
    QUIET = "quiet"  # due inside the recipient's quiet hours: deferred to their end


class Route(enum.StrEnum):
    """Where a decision sends the delivery's message (queue/publisher.py picks the queue)."""

    WORK = "work"  # the work queue of its lane
    RETRY = "retry"  # the delay tier of `delay_ms`, which dead-letters back to the work queue
    PARKED = "parked"  # a copy in the parking queue, for operators


def delays_ms(retry_delays: Iterable[float]) -> tuple[int, ...]:
    """RETRY_DELAYS (seconds) as the delay tiers' milliseconds."""
    return tuple(max(1, round(seconds * 1000)) for seconds in retry_delays)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    delays_ms: tuple[int, ...]

    @classmethod
    def of(cls, max_attempts: int, retry_delays: Iterable[float]) -> RetryPolicy:
        return cls(max_attempts, delays_ms(retry_delays))

    def delay_ms(self, number: int) -> int:
        """Delay before retry (or deferral) number `number` (1-based); the last tier repeats."""
        return self.delays_ms[min(max(number, 1), len(self.delays_ms)) - 1]


@dataclass(frozen=True)
class Decision:
    status: DeliveryStatus
    at: datetime
    fields: dict = field(default_factory=dict)  # set with the status
    inc: dict = field(default_factory=dict)
    route: Route | None = None
    delay_ms: int = 0
    headers: dict | None = None  # carried by a parked copy
    counted_as: str = ""  # the status label of notifier_deliveries_total

    def update(self, published: bool = True, tracked: bool = False) -> dict:
        """The database update, which ends the claim; a retry whose delayed message the broker did not
        confirm waits pending, unsent, for the outbox sweep. A `tracked` delivery's records its status
        event in the same write (services/events.py)."""
        fields = {"status": self.status, **self.fields, "updated_at": self.at, "lease_until": None}
        if self.route is Route.RETRY and not published:
            fields.update(status=DeliveryStatus.PENDING, is_sent_to_queue=False)
        update: dict = {"$set": fields}
        if self.inc:
            update["$inc"] = dict(self.inc)
        event_type = EVENT_OF_STATUS.get(fields["status"])
        if tracked and event_type is not None:
            update = recording(update, event_type, self.at, fields.get("reason"))
        return update


def _failed(reason: str, error: str | None, now: datetime) -> Decision:
    return Decision(
        DeliveryStatus.FAILED,
        now,
        {"reason": reason, "last_error": error},
        route=Route.PARKED,
        headers={"reason": reason, "error": (error or "")[:PARKED_ERROR_LENGTH]},
        counted_as=OutcomeKind.FAILED,
    )


def _expired(reason: str, error: str | None, now: datetime) -> Decision:
    return Decision(
        DeliveryStatus.EXPIRED, now, {"reason": reason, "last_error": error}, counted_as=OutcomeKind.EXPIRED
    )


def _again(delay_ms: int, now: datetime, error: str | None, inc: dict, kind: OutcomeKind) -> Decision:
    return Decision(
        DeliveryStatus.QUEUED,
        now,
        {
            "is_sent_to_queue": True,
            "last_error": error,
            "available_at": now + timedelta(milliseconds=delay_ms),
            "reason": None,
        },
        inc,
        route=Route.RETRY,
        delay_ms=delay_ms,
        counted_as=kind,
    )


def decide(
    kind: OutcomeKind,
    now: datetime,
    policy: RetryPolicy | None = None,
    *,
    attempts: int = 1,
    deferrals: int = 0,
    reason: str | None = None,
    error: str | None = None,
    expires_at: datetime | None = None,
    until: datetime | None = None,
) -> Decision:
    """What follows `kind` for a delivery with `attempts` (this one included, counted at the claim) and
    `deferrals` so far. Retries and deferrals need the `policy`; one that would end after the notification's
    `expires_at` expires the delivery now instead. A quiet-hours deferral waits `until` the window ends."""
    if kind is OutcomeKind.SENT:
        return Decision(DeliveryStatus.SENT, now, {"sent_at": now, "last_error": None, "reason": None}, counted_as=kind)
    if kind is OutcomeKind.SKIPPED:
        return Decision(DeliveryStatus.SKIPPED, now, {"reason": reason}, counted_as=kind)
    if kind is OutcomeKind.FAILED:
        return _failed(reason or "rejected", error, now)
    if kind is OutcomeKind.ABANDONED:
        return Decision(
            DeliveryStatus.PENDING,
            now,
            {"is_sent_to_queue": False, "last_error": error, "reason": None},
            {"attempts": -1},
            counted_as=kind,
        )
    if kind is OutcomeKind.INTERRUPTED:
        return Decision(
            DeliveryStatus.FAILED,
            now,
            {"reason": "interrupted", "last_error": error or INTERRUPTED_ERROR},
            counted_as=OutcomeKind.FAILED,
        )
    if kind is OutcomeKind.EXPIRED:
        return _expired(reason or EXPIRED_BEFORE_SEND, error, now)
    if kind is OutcomeKind.QUIET:
        if until is None:
            raise ValueError("a quiet-hours deferral needs the end of the window")
        if expires_at is not None and until >= expires_at:
            return _expired(EXPIRED_IN_QUIET_HOURS, None, now)
        waiting = {"is_sent_to_queue": None, "available_at": until, "deferred_until": until, "reason": QUIET_HOURS}
        return Decision(DeliveryStatus.DEFERRED, now, waiting, {"attempts": -1}, counted_as=kind)
    if kind is OutcomeKind.CANCELLED:
        return Decision(DeliveryStatus.CANCELLED, now, {"cancelled_at": now, "reason": None}, counted_as=kind)
    if kind is OutcomeKind.RELEASED:
        fields: dict = {"is_sent_to_queue": False, "available_at": now, "claim": None}
        if error:
            fields["last_error"] = error
        return Decision(DeliveryStatus.PENDING, now, fields, route=Route.WORK, counted_as=kind)
    if policy is None:
        raise ValueError(f"deciding on {kind} needs a retry policy")
    if kind is OutcomeKind.RETRY:
        if attempts >= policy.max_attempts:
            return _failed(EXHAUSTED, error, now)
        delay_ms = policy.delay_ms(attempts)
        if expires_at is not None and now + timedelta(milliseconds=delay_ms) >= expires_at:
            return _expired(EXPIRED_BEFORE_RETRY, error, now)
        return _again(delay_ms, now, error, {}, kind)
    if kind is OutcomeKind.DEFER:
        delay_ms = policy.delay_ms(deferrals + 1)
        if expires_at is not None and now + timedelta(milliseconds=delay_ms) >= expires_at:
            return _expired(EXPIRED_BEFORE_RETRY, error, now)
        return _again(delay_ms, now, error, {"attempts": -1, "deferrals": 1}, kind)
    raise ValueError(f"no decision for outcome {kind!r}")
