"""Quiet hours through the pipeline: a delivery due inside the recipient's window is deferred to its end, never
dropped, then sent once; express goes through unless its sender asks otherwise; an expiry inside the window
expires it."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from bson import ObjectId

from ..support import TEST_ADMIN, eventually
from .conftest import settled


async def _quiet_user(ctx, user_id: str, seconds_left: int):
    """A user whose quiet hours (UTC) began a minute ago and end `seconds_left` seconds from now (whole
    seconds); returns the end."""
    now = ctx.clock.now()
    end = (now + timedelta(seconds=seconds_left)).replace(microsecond=0)
    window = {"start": (now - timedelta(minutes=1)).strftime("%H:%M:%S"), "end": end.strftime("%H:%M:%S")}
    await ctx.users.bulk_upsert(TEST_ADMIN, [{"user_id": user_id, "email": f"{user_id}@example.com"}])
    await ctx.users.set_preferences(user_id, {"quiet_hours": window})
    return end


async def _create(api, admin, recipients, **fields) -> str:
    body = {"title": "t", "text": "x", "channel": "email", "recipients": recipients, **fields}
    response = await api.post("/api/v1/notifications", body, auth=admin.header)
    assert response.status == 201, response.body
    return response.body["id"]


async def _delivery(ctx, notification_id, user_id):
    return await ctx.store.deliveries.find_one({"notification_id": ObjectId(notification_id), "user_id": user_id})


async def _status(ctx, notification_id, user_id, status):
    delivery = await _delivery(ctx, notification_id, user_id)
    return delivery if delivery["status"] == status else None


@pytest.mark.gen_test(timeout=90)
async def test_a_delivery_inside_quiet_hours_waits_for_their_end_then_goes_once(api, admin, ctx, smtp, workers):
    end = await _quiet_user(ctx, "night", seconds_left=6)
    await ctx.users.bulk_upsert(TEST_ADMIN, [{"user_id": "day", "email": "day@example.com"}])
    regular = await _create(api, admin, ["night", "day"])
    express = await _create(api, admin, ["night"], is_express=True)
    respectful = await _create(api, admin, ["night"], is_express=True, respect_quiet_hours=True)

    deferred = await eventually(lambda: _status(ctx, regular, "night", "deferred"), message="deferred")
    assert deferred["deferred_until"] == end and deferred["reason"] == "quiet_hours"
    assert (await eventually(lambda: _status(ctx, respectful, "night", "deferred"), message="respected"))[
        "deferred_until"
    ] == end
    sent_express = await eventually(lambda: _status(ctx, express, "night", "sent"), message="express sent")
    assert sent_express["sent_at"] < end and "deferred_until" not in sent_express
    assert (await eventually(lambda: _status(ctx, regular, "day", "sent"), message="day sent"))["sent_at"] < end

    for notification_id, total in ((regular, 2), (respectful, 1)):
        assert await settled(ctx, ObjectId(notification_id), total) == {"sent": total}
    night = await _delivery(ctx, regular, "night")
    assert night["sent_at"] >= end and night["attempts"] == 1  # the deferral gave its attempt back
    received = [r for r in smtp.received if r.recipient == "night@example.com"]
    assert len(received) == 3 and len({r.delivery_id for r in received}) == 3
    assert sorted(r.notification_id for r in received if r.at < end.timestamp()) == [express]
    assert all(r.at >= math.floor(end.timestamp()) for r in received if r.notification_id != express)


@pytest.mark.gen_test(timeout=60)
async def test_an_expiry_inside_quiet_hours_expires_the_delivery(api, admin, ctx, smtp, workers):
    await _quiet_user(ctx, "night", seconds_left=30)
    notification_id = await _create(
        api, admin, ["night"], expires_at=(ctx.clock.now() + timedelta(seconds=10)).isoformat()
    )
    assert await settled(ctx, ObjectId(notification_id), 1) == {"expired": 1}
    assert (await _delivery(ctx, notification_id, "night"))["reason"] == "expired_in_quiet_hours"
    assert not smtp.received
