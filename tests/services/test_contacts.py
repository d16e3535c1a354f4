"""Contacts from the external user service when none are stored; its outage delays, never drops."""

from __future__ import annotations

import pytest
from bson import ObjectId

from ..queue.conftest import settled
from ..support import eventually


def directory(request):
    known = {"ext-1": {"user_id": "ext-1", "email": "one@example.com", "display_name": "One"}}
    return 200, {"users": [known[i] for i in request.json["ids"] if i in known]}


@pytest.mark.gen_test(timeout=60)
async def test_contacts_come_from_the_user_service(api, admin, ctx, smtp, users_service, workers):
    users_service.answers = [directory]
    response = await api.post(
        "/api/v1/notifications",
        {"title": "Hi {{ name }}", "text": "x", "channel": "email", "recipients": ["ext-1", "ext-unknown"]},
        auth=admin.header,
    )
    assert await settled(ctx, ObjectId(response.body["id"]), 2) == {"sent": 1, "skipped": 1}
    assert [(r.recipient, r.subject) for r in smtp.received] == [("one@example.com", "Hi One")]
    request = users_service.requests[0]
    assert request.path == "/users-info" and request.headers["Authorization"] == "Token abc"
    assert sorted(request.json["ids"]) == ["ext-1", "ext-unknown"]
    skipped = await ctx.store.deliveries.find_one({"user_id": "ext-unknown"})
    assert skipped["reason"] == "no_contact"


@pytest.mark.gen_test(timeout=90)
async def test_user_service_outage_delays_the_delivery_without_using_attempts(
    api, admin, ctx, smtp, users_service, workers
):
    users_service.answers = [(503, {})] * 4 + [directory]
    response = await api.post(
        "/api/v1/notifications",
        {"title": "x", "text": "y", "channel": "email", "recipients": ["ext-1"]},
        auth=admin.header,
    )

    async def waiting():
        delivery = await ctx.store.deliveries.find_one({"user_id": "ext-1"})
        return delivery if delivery.get("deferrals") else None

    waiting_delivery = await eventually(waiting, message="a deferred delivery")
    assert waiting_delivery["status"] in ("pending", "queued", "sending")
    assert await settled(ctx, ObjectId(response.body["id"]), 1) == {"sent": 1}
    delivery = await ctx.store.deliveries.find_one({"user_id": "ext-1"})
    assert delivery["attempts"] == 1 and delivery["deferrals"] == 4
    assert len(smtp.received) == 1
