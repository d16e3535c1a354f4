"""The outcome table: what follows each outcome of an attempt, for a delivery's counters and the retry policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notifier.domain import DeliveryStatus
from notifier.services.outcomes import EXHAUSTED, OutcomeKind, RetryPolicy, Route, decide, delays_ms

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
POLICY = RetryPolicy.of(max_attempts=3, retry_delays=(0.2, 0.4))
K = OutcomeKind
S = DeliveryStatus


@pytest.mark.parametrize(
    "kind, attempts, deferrals, status, route, delay_ms, inc, counted_as",
    [
        (K.SENT, 1, 0, S.SENT, None, 0, {}, "sent"),
        (K.SKIPPED, 1, 0, S.SKIPPED, None, 0, {}, "skipped"),
        (K.RETRY, 1, 0, S.QUEUED, Route.RETRY, 200, {}, "retry"),
        (K.RETRY, 2, 0, S.QUEUED, Route.RETRY, 400, {}, "retry"),
        (K.RETRY, 3, 0, S.FAILED, Route.PARKED, 0, {}, "failed"),  # attempts exhausted
        (K.RETRY, 7, 0, S.FAILED, Route.PARKED, 0, {}, "failed"),
        (K.DEFER, 1, 0, S.QUEUED, Route.RETRY, 200, {"attempts": -1, "deferrals": 1}, "defer"),
        (K.DEFER, 3, 5, S.QUEUED, Route.RETRY, 400, {"attempts": -1, "deferrals": 1}, "defer"),  # never exhausted
        (K.FAILED, 1, 0, S.FAILED, Route.PARKED, 0, {}, "failed"),
        (K.ABANDONED, 1, 0, S.PENDING, None, 0, {"attempts": -1}, "abandoned"),
        (K.INTERRUPTED, 1, 0, S.FAILED, None, 0, {}, "failed"),
        (K.RELEASED, 1, 0, S.PENDING, Route.WORK, 0, {}, "released"),
        (K.CANCELLED, 1, 0, S.CANCELLED, None, 0, {}, "cancelled"),  # cancelled while being sent: not again
        (K.EXPIRED, 1, 0, S.EXPIRED, None, 0, {}, "expired"),
    ],
)
def test_each_outcome_has_one_next_step(kind, attempts, deferrals, status, route, delay_ms, inc, counted_as):
    """Status, route, delay, counter changes and metric label, row by row."""
    decision = decide(kind, NOW, POLICY, attempts=attempts, deferrals=deferrals, reason="rejected", error="e")
    assert (decision.status, decision.route, decision.delay_ms, decision.inc, decision.counted_as) == (
        status,
        route,
        delay_ms,
        inc,
        counted_as,
    )
    update = decision.update()
    assert update["$set"]["status"] == status
    assert update.get("$inc", {}) == inc


@pytest.mark.parametrize(
    "kind, reason, error, fields",
    [
        (K.SENT, None, None, {"sent_at": NOW, "last_error": None, "reason": None}),
        (K.SKIPPED, "unsubscribed", None, {"reason": "unsubscribed"}),
        (
            K.FAILED,
            "invalid_contact",
            "invalid address",
            {"reason": "invalid_contact", "last_error": "invalid address"},
        ),
        (K.ABANDONED, None, "ran short", {"is_sent_to_queue": False, "last_error": "ran short", "reason": None}),
        (K.RELEASED, None, None, {"is_sent_to_queue": False, "available_at": NOW, "claim": None}),
        (
            K.RELEASED,
            None,
            "lease expired",
            {"is_sent_to_queue": False, "available_at": NOW, "claim": None, "last_error": "lease expired"},
        ),
    ],
)
def test_fields_written_with_the_status(kind, reason, error, fields):
    assert decide(kind, NOW, POLICY, reason=reason, error=error).fields == fields


def test_exhausted_retries_fail_with_their_reason_and_park_with_headers():
    decision = decide(K.RETRY, NOW, POLICY, attempts=3, error="SMTP 451 from the mail server" + "x" * 600)
    assert decision.fields["reason"] == EXHAUSTED
    assert decision.headers == {"reason": EXHAUSTED, "error": decision.fields["last_error"][:500]}


@pytest.mark.parametrize("published, status, in_queue", [(True, S.QUEUED, True), (False, S.PENDING, False)])
def test_a_retry_waits_queued_when_its_delayed_message_went_else_pending_for_the_sweep(published, status, in_queue):
    update = decide(K.RETRY, NOW, POLICY, attempts=1, error="busy").update(published)["$set"]
    assert (update["status"], update["is_sent_to_queue"]) == (status, in_queue)
    assert update["available_at"] == NOW + timedelta(milliseconds=200)
    assert (update["last_error"], update["reason"]) == ("busy", None)


@pytest.mark.parametrize("kind", [K.SENT, K.SKIPPED, K.FAILED, K.ABANDONED])
def test_only_a_retry_depends_on_the_publish(kind):
    decision = decide(kind, NOW, POLICY, reason="r", error="e")
    assert decision.update(published=False) == decision.update(published=True)


@pytest.mark.parametrize("kind", [K.RETRY, K.DEFER])
def test_retries_need_the_policy(kind):
    with pytest.raises(ValueError):
        decide(kind, NOW)


@pytest.mark.parametrize("number, expected", [(0, 5000), (1, 5000), (2, 30000), (4, 600000), (9, 600000)])
def test_the_last_delay_repeats(number, expected):
    assert RetryPolicy.of(5, (5, 30, 120, 600)).delay_ms(number) == expected


def test_delays_are_whole_milliseconds_of_at_least_one():
    assert delays_ms((0.0001, 0.2, 1.5)) == (1, 200, 1500)


@pytest.mark.parametrize("kind", list(OutcomeKind))
def test_every_decision_ends_the_claim(kind):
    """Whoever writes it (a batch, journal replay, the lease reconciler), the update stamps it and ends the lease."""
    update = decide(kind, NOW, POLICY, reason="r", error="e", until=NOW + timedelta(hours=1)).update()["$set"]
    assert (update["updated_at"], update["lease_until"]) == (NOW, None)


@pytest.mark.parametrize(
    "kind, attempts, deferrals, expires_in, status, reason",
    [
        (K.RETRY, 1, 0, timedelta(seconds=1), S.QUEUED, None),  # the retry (0.2 s) comes before expiry
        (K.RETRY, 1, 0, timedelta(milliseconds=100), S.EXPIRED, "expired_before_retry"),
        (K.RETRY, 2, 0, timedelta(milliseconds=400), S.EXPIRED, "expired_before_retry"),  # 0.4 s: at expiry
        (K.RETRY, 3, 0, timedelta(milliseconds=100), S.FAILED, EXHAUSTED),  # no retry left: failed
        (K.DEFER, 1, 0, timedelta(milliseconds=100), S.EXPIRED, "expired_before_retry"),
        (K.DEFER, 1, 0, timedelta(seconds=1), S.QUEUED, None),
    ],
)
def test_a_retry_or_deferral_ending_after_expires_at_expires_now(kind, attempts, deferrals, expires_in, status, reason):
    decision = decide(kind, NOW, POLICY, attempts=attempts, deferrals=deferrals, expires_at=NOW + expires_in)
    assert (decision.status, decision.fields.get("reason")) == (status, reason)
