"""Cancel against live consumers: cancel and claim are the same kind of guarded write, so a delivery reported
cancelled is never sent, whenever the cancel lands and whatever dies meanwhile."""

from __future__ import annotations

import os
import random
import signal
from datetime import timedelta

import pytest
from bson import ObjectId

from ..support import eventually
from .conftest import add_users, settled

N = 200


@pytest.fixture
def settings_overrides(pipeline_settings, request):
    return {**pipeline_settings, "consumers_start": 2, "consumers_min": 2, **getattr(request, "param", {})}


async def _received(smtp, notification_id, count):
    return sum(smtp.handler.count_by_recipient(notification_id).values()) >= count


async def cancel(api, admin, ctx, notification_id: str) -> tuple[dict, dict]:
    """Cancel; then what was being sent right after it (delivery id -> claim token), and what was sent."""
    answer = (await api.post(f"/api/v1/notifications/{notification_id}/cancel", {}, auth=admin.header)).body
    deliveries = await ctx.store.deliveries.find(
        {"notification_id": ObjectId(notification_id), "status": {"$in": ["sending", "sent"]}}
    ).to_list(None)
    return answer, {d["_id"]: d["claim"] if d["status"] == "sending" else "sent" for d in deliveries}


async def assert_never_sent_once_cancelled(ctx, smtp, notification_id: str, answer: dict, at_cancel: dict) -> dict:
    """Every delivery final; the cancelled ones (as many as the answer said, at least) never reached the SMTP
    server; every other one reached it once or failed; the counts add up to the recipients. What was sent
    after the cancel was being sent at that instant, by the claim that held it then (a claim released by a
    dead consumer is never taken again)."""
    counts = await settled(ctx, ObjectId(notification_id), N, timeout=90)
    assert sum(counts.values()) == N and set(counts) <= {"sent", "cancelled", "failed"}, counts
    assert counts.get("cancelled", 0) >= answer["cancelled"], (counts, answer)
    received = smtp.handler.count_by_recipient(notification_id)
    assert set(received.values()) <= {1}, {r: n for r, n in received.items() if n > 1}
    deliveries = await ctx.store.deliveries.find({"notification_id": ObjectId(notification_id)}).to_list(None)
    for delivery in deliveries:
        address = f"{delivery['user_id']}@example.com"
        if delivery["status"] == "cancelled":
            assert address not in received, delivery
        elif delivery["status"] == "sent":
            assert received[address] == 1, delivery
            assert at_cancel.get(delivery["_id"]) in ("sent", delivery["claim"]), (
                delivery,
                at_cancel.get(delivery["_id"]),
            )
        else:
            assert delivery["reason"] == "interrupted", delivery
    return counts


@pytest.mark.gen_test(timeout=300)
@pytest.mark.parametrize("due", ["now", "send_at"])
async def test_cancel_racing_a_live_fanout_never_sends_what_it_reports_cancelled(api, admin, ctx, smtp, workers, due):
    """Five rounds, each cancelling at a different point of a fan-out that two consumers are sending: sent at
    once, or due a moment after the create (woken by the scheduled wake-up, claimed before or after their
    queued mark)."""
    users = await add_users(ctx, N)
    rounds = random.Random(7)
    for round_number in range(5):
        body = {"title": f"round {round_number}", "text": "x", "channel": "email", "recipients": users}
        if due == "send_at":
            body["send_at"] = (ctx.clock.now() + timedelta(seconds=0.5)).isoformat()
        created = (await api.post("/api/v1/notifications", body, auth=admin.header)).body
        after = rounds.randrange(0, N // 2)
        await eventually(
            lambda nid=created["id"], n=after: _received(smtp, nid, n), timeout=60, message=f"{after} received"
        )
        answer, at_cancel = await cancel(api, admin, ctx, created["id"])
        assert answer["cancelled"] + answer["already_sent"] + answer["in_flight"] + answer["already_done"] <= N
        counts = await assert_never_sent_once_cancelled(ctx, smtp, created["id"], answer, at_cancel)
        # Consumers that were sending at the cancel finish that attempt: sent, never cancelled afterwards.
        assert counts.get("cancelled", 0) == answer["cancelled"], (counts, answer)


@pytest.mark.gen_test(timeout=300)
async def test_a_consumer_killed_during_a_cancel_sends_none_of_what_was_cancelled(api, admin, ctx, smtp, workers):
    """A consumer is SIGKILLed just before the cancel: what it held is settled by its journal replay and
    released; released deliveries of a cancelled notification end cancelled when their message comes back."""
    users = await add_users(ctx, N)
    created = (
        await api.post(
            "/api/v1/notifications",
            {"title": "t", "text": "x", "channel": "email", "recipients": users},
            auth=admin.header,
        )
    ).body
    await eventually(lambda: _received(smtp, created["id"], N // 4), timeout=60, message="a quarter received")
    victim = next(p for p in ctx.pool.processes.values() if p.ready and not p.stopping)
    os.kill(victim.pid, signal.SIGKILL)
    answer, at_cancel = await cancel(api, admin, ctx, created["id"])
    counts = await assert_never_sent_once_cancelled(ctx, smtp, created["id"], answer, at_cancel)
    assert counts.get("cancelled", 0) >= 1
