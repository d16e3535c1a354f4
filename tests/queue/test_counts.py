"""Maintained counts through the real pipeline: a fan-out with every kind of outcome, counted by the
consumers' batch increments, equals a recount from the deliveries."""

from __future__ import annotations

import pytest
from bson import ObjectId

from ..support import TEST_ADMIN
from .conftest import add_users, settled


@pytest.mark.gen_test(timeout=90)
async def test_counts_of_a_fan_out_with_mixed_outcomes_equal_a_recount(api, admin, ctx, smtp, workers):
    users = await add_users(ctx, 30)
    await add_users(ctx, 3, prefix="opted-out", unsubscribed_channels=["email"])
    await ctx.users.bulk_upsert(TEST_ADMIN, [{"user_id": "bad-address", "email": "not an email"}])
    smtp.behaviour.tempfail_next = 3  # three retries, then sent
    smtp.behaviour.always_tempfail = {"u0@example.com"}  # retried until its attempts run out
    smtp.behaviour.reject = {"u1@example.com", "u2@example.com"}
    recipients = [*users, "opted-out0", "opted-out1", "opted-out2", "bad-address", "stranger"]
    response = await api.post(
        "/api/v1/notifications",
        {"title": "Hello", "text": "News.", "channel": "email", "recipients": recipients},
        auth=admin.header,
    )
    assert response.status == 201, response.body
    notification = ObjectId(response.body["id"])
    assert await settled(ctx, notification, len(recipients)) == {"sent": 27, "skipped": 5, "failed": 3}
    detail = (await api.get(f"/api/v1/notifications/{notification}", auth=admin.header)).body
    expected = (
        {"sent": 27, "skipped": 5, "failed": 3},
        {"unsubscribed": 3, "invalid_contact": 1, "no_contact": 1, "attempts_exhausted": 1, "rejected": 2},
    )
    assert (detail["counts"], detail["reasons"]) == expected
    assert expected == await ctx.deliveries.counts.exact(notification)
    assert smtp.handler.refused >= 3
    # Nothing was lost, so the counts reconciler finds nothing to repair.
    assert await ctx.deliveries.counts.reconcile(ctx.clock.now(), quiet=0, recheck=0, limit=10) == 0
