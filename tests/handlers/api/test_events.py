"""Status events through the API against the real services: a client application's endpoint receives one signed
POST per state change of its own notifications (checked with an HMAC written here, not the service's), the feed
lists the same events with the same ids, a replay sends them again, a failing receiver is retried and then
disabled, and another caller sees none of it."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from notifier.metrics import EVENT_POSTS

from ...queue.conftest import consumer, pipeline_settings, smtp  # noqa: F401  (shared pipeline fixtures)
from ...support import eventually

NOTE = {"title": "Hello", "text": "Your order shipped", "channel": "email"}


@pytest.fixture
def settings_overrides(pipeline_settings):  # noqa: F811
    return {
        **pipeline_settings,
        "outbound_allow": ("127.0.0.1",),
        "event_late_window": 0.5,
        "event_retry_first": 0.1,
        "event_retry_max": 0.2,
    }


def verify(header: str, body: bytes, secret: str, tolerance: float = 300) -> bool:
    """A receiver's check of `Notifier-Signature`, written from the README, independent of the service."""
    parts = [part.split("=", 1) for part in header.split(",")]
    timestamps = [value for key, value in parts if key == "t"]
    signatures = [value for key, value in parts if key == "v1"]
    if len(timestamps) != 1 or abs(time.time() - int(timestamps[0])) > tolerance:
        return False
    expected = hmac.new(secret.encode(), timestamps[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, signature) for signature in signatures)


async def pump(ctx, rounds: int = 1) -> None:
    """What the server's jobs do each tick: publish recorded changes, then send them."""
    for _ in range(rounds):
        await ctx.event_log.collect()
        await ctx.event_sender.run()
        for task in list(ctx.event_sender._tasks.values()):
            await task


async def add_endpoint(api, caller, url: str, **fields) -> dict:
    response = await api.post("/api/v1/event-endpoints", {"url": url, **fields}, auth=caller.header)
    assert response.status == 201, response.body
    return response.body


async def users(ctx, *ids: str) -> None:
    from notifier.access import Principal, Role

    await ctx.users.bulk_upsert(
        Principal(Role.ADMIN, "test", "test"), [{"user_id": uid, "email": f"{uid}@example.com"} for uid in ids]
    )


@pytest.mark.gen_test(timeout=90)
async def test_each_state_change_reaches_the_endpoint_once_signed_and_the_feed_lists_the_same_ids(
    api, ctx, client_app, consumer, peer
):
    await users(ctx, "ann", "bob")
    posted_before = EVENT_POSTS.labels("acknowledged")._value.get()
    endpoint = await add_endpoint(api, client_app, peer.url + "/hooks")
    assert endpoint["secret"].startswith("whsec_") and endpoint["enabled"] is True
    created = await api.post(
        "/api/v1/notifications", {**NOTE, "recipients": ["ann", "bob", "nobody"]}, auth=client_app.header
    )
    assert created.status == 201, created.body
    notification_id = created.body["id"]

    async def all_arrived():
        await pump(ctx)
        types = sorted(request.json["type"] for request in peer.requests)
        return types if "notification.completed" in types else None

    types = await eventually(all_arrived, timeout=40, message="three delivery events and the completion")
    assert types == ["delivery.sent", "delivery.sent", "delivery.skipped", "notification.completed"]
    ids = sorted(request.json["id"] for request in peer.requests)  # a batch's POSTs go at once, in any order
    assert len(set(ids)) == 4
    for request in peer.requests:
        assert request.path == "/hooks"
        assert request.headers["Idempotency-Key"] == request.json["id"]
        assert verify(request.headers["Notifier-Signature"], request.body, endpoint["secret"])
        assert not verify(request.headers["Notifier-Signature"], request.body, "whsec_someone-else")
        assert request.json["data"]["notification_id"] == notification_id
    completed = next(r.json for r in peer.requests if r.json["type"] == "notification.completed")
    assert completed["data"]["counts"] == {"sent": 2, "skipped": 1}
    assert completed["id"] == ids[-1]  # after every delivery's event, in id order
    skipped = next(r.json for r in peer.requests if r.json["type"] == "delivery.skipped")
    assert skipped["data"]["user_id"] == "nobody" and skipped["data"]["reason"] == "no_contact"

    feed = await api.get("/api/v1/events", auth=client_app.header)
    assert feed.status == 200, feed.body
    assert [item["id"] for item in feed.body["items"]] == ids
    assert feed.body["next_after"] == ids[-1]
    later = await api.get(f"/api/v1/events?after={ids[1]}&types=notification.completed", auth=client_app.header)
    assert [item["id"] for item in later.body["items"]] == [ids[-1]]

    await pump(ctx, 3)  # nothing more: each change once
    assert len(peer.requests) == 4
    assert EVENT_POSTS.labels("acknowledged")._value.get() - posted_before == 4


@pytest.mark.gen_test(timeout=90)
async def test_a_replay_sends_the_same_ids_again_and_a_rotated_secret_signs_beside_the_old_one(
    api, ctx, client_app, consumer, peer
):
    await users(ctx, "ann")
    endpoint = await add_endpoint(api, client_app, peer.url, types=["delivery.sent"])
    await api.post("/api/v1/notifications", {**NOTE, "recipients": ["ann"]}, auth=client_app.header)

    async def arrived(n):
        await pump(ctx)
        return len(peer.requests) >= n

    await eventually(lambda: arrived(1), timeout=40, message="the sent event")
    first = peer.requests[0].json
    assert first["type"] == "delivery.sent"  # only the type asked for: no completion
    rotated = await api.post(
        f"/api/v1/event-endpoints/{endpoint['id']}/rotate-secret", {"grace_seconds": 60}, auth=client_app.header
    )
    assert rotated.status == 200, rotated.body
    assert rotated.body["secret"] != endpoint["secret"] and len(rotated.body["secrets_in_force"]) == 2
    for _ in range(3):  # rotated again and again: the newest secret and the one before it, no more
        rotated = await api.post(
            f"/api/v1/event-endpoints/{endpoint['id']}/rotate-secret", {"grace_seconds": 60}, auth=client_app.header
        )
    assert len(rotated.body["secrets_in_force"]) == 2
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    replay = await api.post(
        f"/api/v1/event-endpoints/{endpoint['id']}/replay", {"since": since}, auth=client_app.header
    )
    assert replay.status == 200, replay.body
    await eventually(lambda: arrived(2), timeout=20, message="the replayed event")
    again = peer.requests[1]
    assert again.json == first  # same id, same body
    signature = again.headers["Notifier-Signature"]
    assert verify(signature, again.body, rotated.body["secret"]) and signature.count("v1=") == 2
    assert not verify(signature, again.body, endpoint["secret"])  # the first secret ended at the third rotation
    too_soon = await api.post(
        f"/api/v1/event-endpoints/{endpoint['id']}/replay", {"since": since}, auth=client_app.header
    )
    assert too_soon.status == 409 and "since" in too_soon.body["errors"]
    audit = await ctx.store.audit.find_one({"action": "event replay"})
    assert audit is not None and audit["endpoint_id"] == endpoint["id"]


@pytest.mark.gen_test(timeout=90)
async def test_a_receiver_answering_500_gets_the_event_again_until_it_takes_it_then_is_disabled_when_it_never_does(
    api, ctx, client_app, consumer, peer
):
    await users(ctx, "ann", "bob")
    peer.answers = [(500, {"down": True}), (500, {"down": True}), (200, {"ok": True})]
    endpoint = await add_endpoint(api, client_app, peer.url, types=["delivery.sent"])
    await api.post("/api/v1/notifications", {**NOTE, "recipients": ["ann"]}, auth=client_app.header)

    async def taken():
        await pump(ctx)
        return len(peer.requests) >= 3

    await eventually(taken, timeout=40, message="the event taken on the third try")
    assert len({request.json["id"] for request in peer.requests}) == 1
    state = (await api.get(f"/api/v1/event-endpoints/{endpoint['id']}", auth=client_app.header)).body
    assert state["failures"] == 0 and state["enabled"] is True and state["last_success_at"]

    # Now it never answers well: after EVENT_DISABLE_AFTER it is disabled, and what comes meanwhile waits.
    peer.answers = [(503, {"down": True})]
    ctx.event_sender.settings = dataclasses.replace(ctx.settings, event_disable_after=0.5)
    await api.post("/api/v1/notifications", {**NOTE, "recipients": ["bob"]}, auth=client_app.header)

    async def disabled():
        await pump(ctx)
        state = (await api.get(f"/api/v1/event-endpoints/{endpoint['id']}", auth=client_app.header)).body
        return state if not state["enabled"] else None

    state = await eventually(disabled, timeout=40, message="the endpoint disabled")
    assert state["disabled_reason"].startswith("failing since") and state["last_error"] == "HTTP 503"
    tried = len(peer.requests)
    await pump(ctx, 2)
    assert len(peer.requests) == tried  # disabled: no more tries
    attempts = await ctx.event_endpoints.attempts(ObjectId(endpoint["id"]))
    assert any(not attempt["ok"] and attempt["status"] == 503 for attempt in attempts)

    peer.answers = [(200, {"ok": True})]
    enabled = await api.call(
        "PATCH", f"/api/v1/event-endpoints/{endpoint['id']}", {"enabled": True}, auth=client_app.header
    )
    assert enabled.status == 200 and enabled.body["enabled"] is True and enabled.body["failures"] == 0

    async def resumed():
        await pump(ctx)
        return peer.requests[-1].json["data"]["user_id"] == "bob" and peer.requests[-1].json["type"] == "delivery.sent"

    await eventually(resumed, timeout=20, message="bob's event once enabled again")


@pytest.mark.gen_test(timeout=90)
async def test_a_round_stops_posting_at_its_first_failure_and_resumes_there(api, ctx, client_app, consumer, peer):
    recipients = [f"r{i}" for i in range(12)]
    await users(ctx, *recipients)
    peer.answers = [(503, {"down": True})]
    ctx.event_sender.settings = dataclasses.replace(ctx.settings, event_concurrency=1)
    endpoint = await add_endpoint(api, client_app, peer.url, types=["delivery.sent"])
    await api.post("/api/v1/notifications", {**NOTE, "recipients": recipients}, auth=client_app.header)

    async def all_sent():
        await ctx.event_log.collect()
        return await ctx.store.events.count_documents({"type": "delivery.sent"}) == len(recipients)

    await eventually(all_sent, timeout=40, message="every delivery sent and its event stored")
    await pump(ctx)
    assert len(peer.requests) == 1  # the first failed: the other eleven wait for the next round
    attempts = await ctx.event_endpoints.attempts(ObjectId(endpoint["id"]))
    assert [attempt["ok"] for attempt in attempts] == [False]
    peer.answers = [(200, {"ok": True})]

    async def delivered():
        await pump(ctx)
        return {request.json["data"]["user_id"] for request in peer.requests} == set(recipients)

    await eventually(delivered, timeout=30, message="every event once the receiver takes them")
    ids = [request.json["id"] for request in peer.requests]
    assert len(ids) == len(recipients) + 1 and len(set(ids)) == len(recipients)  # the first one twice


@pytest.mark.gen_test(timeout=60)
async def test_a_client_sees_and_changes_only_its_own_endpoints_and_events(
    api, ctx, client_app, other_client_app, consumer, peer
):
    await users(ctx, "ann")
    mine = await add_endpoint(api, client_app, peer.url)
    await api.post("/api/v1/notifications", {**NOTE, "recipients": ["ann"]}, auth=client_app.header)

    async def recorded():
        await pump(ctx)
        return (await api.get("/api/v1/events", auth=client_app.header)).body["items"]

    await eventually(recorded, timeout=40, message="the client's events")
    theirs = await api.get("/api/v1/events", auth=other_client_app.header)
    assert theirs.status == 200 and theirs.body["items"] == []
    for method, path, body in [
        ("GET", f"/api/v1/event-endpoints/{mine['id']}", None),
        ("PATCH", f"/api/v1/event-endpoints/{mine['id']}", {"description": "mine now"}),
        ("POST", f"/api/v1/event-endpoints/{mine['id']}/replay", {"since": "2026-01-01T00:00:00Z"}),
        ("POST", f"/api/v1/event-endpoints/{mine['id']}/rotate-secret", {}),
        ("DELETE", f"/api/v1/event-endpoints/{mine['id']}", None),
    ]:
        response = await api.call(method, path, body, auth=other_client_app.header)
        assert response.status == 404, (method, path, response.body)
    listed = await api.get("/api/v1/event-endpoints", auth=other_client_app.header)
    assert listed.body["items"] == []
    # Another caller's endpoint hears nothing of this client's notifications.
    other_peer_requests = len(peer.requests)
    await add_endpoint(api, other_client_app, peer.url + "/crm")
    await api.post("/api/v1/notifications", {**NOTE, "recipients": ["ann"]}, auth=client_app.header)

    async def second_sent():
        await pump(ctx)
        return sum(r.json["type"] == "delivery.sent" for r in peer.requests) >= 2

    await eventually(second_sent, timeout=40, message="the second notification's event")
    assert all(r.path != "/crm" for r in peer.requests[other_peer_requests:])


@pytest.mark.gen_test(timeout=30)
async def test_bad_endpoint_input_is_a_400_naming_the_field(api, client_app):
    for body, field in [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "http://user:pw@example.com/"}, "url"),
        ({"url": "https://example.com/", "types": ["delivery.exploded"]}, "types"),
        ({"url": "https://example.com/", "types": []}, "types"),
        ({"url": "https://example.com/", "description": "two\nlines"}, "description"),
        ({}, "url"),
    ]:
        response = await api.post("/api/v1/event-endpoints", body, auth=client_app.header)
        assert response.status == 400 and field in response.body["errors"], (body, response.body)
    for query, field in [("after=nope", "after"), ("types=delivery.sent,bogus", "types"), ("limit=0", "limit")]:
        response = await api.get(f"/api/v1/events?{query}", auth=client_app.header)
        assert response.status == 400 and field in response.body["errors"], (query, response.body)
    created = await add_endpoint(api, client_app, "https://example.com/hooks")
    too_long = await api.post(
        f"/api/v1/event-endpoints/{created['id']}/rotate-secret", {"grace_seconds": 10**9}, auth=client_app.header
    )
    assert too_long.status == 400 and "grace_seconds" in too_long.body["errors"]
    empty = await api.call("PATCH", f"/api/v1/event-endpoints/{created['id']}", {}, auth=client_app.header)
    assert empty.status == 400
    future = await api.post(
        f"/api/v1/event-endpoints/{created['id']}/replay", {"since": "2190-01-01T00:00:00Z"}, auth=client_app.header
    )
    assert future.status == 400 and "since" in future.body["errors"]
