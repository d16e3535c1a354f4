"""Webhooks: a signed JSON POST to the user's URL; 5xx retries, 4xx fails."""

from __future__ import annotations

import pytest
from bson import ObjectId

from notifier.channels.webhook import signature

from ..queue.conftest import settled
from ..support import TEST_ADMIN


async def _send(api, admin, ctx, peer, users):
    await ctx.users.bulk_upsert(TEST_ADMIN, [{"user_id": u, "webhook_url": f"{peer.url}/hooks/{u}"} for u in users])
    response = await api.post(
        "/api/v1/notifications",
        {"title": "Deploy {{ user_id }}", "text": "done", "channel": "webhook", "recipients": users},
        auth=admin.header,
    )
    return response.body["id"]


@pytest.mark.gen_test(timeout=60)
async def test_signed_post_with_idempotency_key(api, admin, ctx, peer, workers):
    notification_id = await _send(api, admin, ctx, peer, ["w1"])
    assert await settled(ctx, ObjectId(notification_id), 1) == {"sent": 1}
    [request] = peer.requests
    assert request.path == "/hooks/w1"
    assert request.json["title"] == "Deploy w1" and request.json["notification_id"] == notification_id
    timestamp = request.headers["X-Notifier-Timestamp"]
    assert request.headers["X-Notifier-Signature"] == signature(ctx.keys.webhook, timestamp, request.body)
    assert request.headers["Idempotency-Key"] == request.json["delivery_id"]


@pytest.mark.gen_test(timeout=60)
async def test_server_errors_retry_then_succeed(api, admin, ctx, peer, workers):
    peer.answers = [(503, {}), (500, {}), (200, {})]
    notification_id = await _send(api, admin, ctx, peer, ["w2"])
    assert await settled(ctx, ObjectId(notification_id), 1) == {"sent": 1}
    assert len(peer.requests) == 3
    assert len({r.headers["Idempotency-Key"] for r in peer.requests}) == 1


@pytest.mark.gen_test(timeout=60)
async def test_client_errors_fail_without_retry(api, admin, ctx, peer, workers):
    peer.answers = [(410, {"error": "gone"})]
    notification_id = await _send(api, admin, ctx, peer, ["w3"])
    assert await settled(ctx, ObjectId(notification_id), 1) == {"failed": 1}
    delivery = await ctx.store.deliveries.find_one({"user_id": "w3"})
    assert delivery["reason"] == "rejected" and "410" in delivery["last_error"]
    assert len(peer.requests) == 1
