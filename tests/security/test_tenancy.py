"""Tenant isolation: client application B tries every read and write of application A's notifications,
schedules, deliveries and runs, with every filter the API accepts, and gets 404 or an empty page; the
contacts directory is read and written only with the permission an admin granted."""

from __future__ import annotations

import pytest
from bson import ObjectId

NOTE = {
    "title": "Invoice {{ number }}",
    "text": "Your invoice is ready.",
    "channel": "inbox",
    "variables": {"number": "7"},
    "recipients": ["alice", "bob"],
}
DAILY = {
    "notification": {"title": "Digest", "text": "Daily digest", "channel": "inbox"},
    "user_ids": ["alice"],
    "interval_seconds": 3600,
}


async def a_objects(api, ctx, a):
    """A's notification (with deliveries), its schedule (fired once, so it has a run)."""
    notification = (
        await api.post("/api/v1/notifications", NOTE, auth=a.header, headers={"Idempotency-Key": "invoice-7"})
    ).body
    schedule = (await api.post("/api/v1/schedules", DAILY, auth=a.header)).body
    await ctx.store.schedules.update_one({"_id": ObjectId(schedule["id"])}, {"$set": {"next_run_at": ctx.clock.now()}})
    assert await ctx.schedules.fire_due() == 1
    runs = await api.get(f"/api/v1/schedules/{schedule['id']}/runs", auth=a.header)
    assert len(runs.body["items"]) == 1
    return notification, schedule


@pytest.mark.gen_test
async def test_another_application_cannot_list_notifications_with_any_filter(
    api, ctx, client_app, other_client_app, admin
):
    a, b = client_app, other_client_app
    notification, _ = await a_objects(api, ctx, a)
    own = await api.get("/api/v1/notifications", auth=a.header)
    assert notification["id"] in [n["id"] for n in own.body["items"]]
    a_cursor = (await api.get("/api/v1/notifications?limit=1", auth=a.header)).body["next_cursor"]
    filters = [
        f"author={a.id}",
        f"author={a.id}&channel=inbox",
        "channel=inbox",
        "is_express=false",
        "q=Invoice",
        "created_after=2000-01-01T00:00:00Z",
        "created_before=2100-01-01T00:00:00Z",
        "limit=200",
        f"cursor={a_cursor}",
        f"author={b.id}",
        f"author={admin.id}",
        "author=client",
    ]
    for query in filters:
        response = await api.get(f"/api/v1/notifications?{query}", auth=b.header)
        assert response.status == 200, (query, response.body)
        assert response.body["items"] == [], query
    # An admin filtering by author still finds A's notifications.
    by_author = await api.get(f"/api/v1/notifications?author={a.id}", auth=admin.header)
    assert {n["id"] for n in by_author.body["items"]} >= {notification["id"]}


@pytest.mark.gen_test
async def test_another_application_cannot_reach_a_notification_or_its_deliveries(
    api, ctx, client_app, other_client_app
):
    a, b = client_app, other_client_app
    notification, _ = await a_objects(api, ctx, a)
    path = f"/api/v1/notifications/{notification['id']}"
    assert (await api.get(path, auth=b.header)).status == 404
    for query in ("", "?status=pending", "?status=queued", "?user_id=alice", "?limit=1", "?limit=200"):
        assert (await api.get(f"{path}/deliveries{query}", auth=b.header)).status == 404, query
    added = await api.post(f"{path}/recipients", {"recipients": ["mallory"]}, auth=b.header)
    assert added.status == 404
    assert await ctx.store.deliveries.count_documents({"user_id": "mallory"}) == 0
    detail = await api.get(path, auth=a.header)
    assert detail.body["recipient_count"] == 2


@pytest.mark.gen_test
async def test_idempotency_keys_are_per_application(api, ctx, client_app, other_client_app):
    a, b = client_app, other_client_app
    notification, _ = await a_objects(api, ctx, a)
    same = await api.post("/api/v1/notifications", NOTE, auth=b.header, headers={"Idempotency-Key": "invoice-7"})
    assert same.status == 201 and same.body["id"] != notification["id"]
    assert "Idempotent-Replayed" not in same.headers
    assert same.body["author"]["id"] == b.id
    # A different body under A's key is no conflict for B either (nothing tells B the key exists).
    other = await api.post(
        "/api/v1/notifications", {**NOTE, "title": "x"}, auth=b.header, headers={"Idempotency-Key": "invoice-8"}
    )
    assert other.status == 201
    again = await api.post("/api/v1/notifications", NOTE, auth=a.header, headers={"Idempotency-Key": "invoice-7"})
    assert again.body["id"] == notification["id"] and again.headers.get("Idempotent-Replayed") == "true"


@pytest.mark.gen_test
async def test_another_application_cannot_read_or_change_a_schedule(api, ctx, client_app, other_client_app):
    a, b = client_app, other_client_app
    notification, schedule = await a_objects(api, ctx, a)
    path = f"/api/v1/schedules/{schedule['id']}"
    before = (await api.get(path, auth=a.header)).body
    for query in (
        "",
        "?enabled=true",
        f"?notification_id={schedule['notification_id']}",
        f"?notification_id={notification['id']}",
        "?limit=200",
    ):
        listed = await api.get(f"/api/v1/schedules{query}", auth=b.header)
        assert listed.status == 200 and listed.body["items"] == [], query
    assert (await api.get(path, auth=b.header)).status == 404
    assert (await api.get(f"{path}/preview?n=3", auth=b.header)).status == 404
    for query in ("", "?limit=1"):
        assert (await api.get(f"{path}/runs{query}", auth=b.header)).status == 404
    assert (await api.call("PATCH", path, {"user_ids": ["mallory"]}, auth=b.header)).status == 404
    assert (await api.post(f"{path}/disable", auth=b.header)).status == 404
    assert (await api.post(f"{path}/enable", auth=b.header)).status == 404
    assert (await api.delete(path, auth=b.header)).status == 404
    assert (await api.get(path, auth=a.header)).body == before


@pytest.mark.gen_test
async def test_another_application_cannot_schedule_someone_elses_notification(api, ctx, client_app, other_client_app):
    a, b = client_app, other_client_app
    notification, _ = await a_objects(api, ctx, a)
    response = await api.post(
        "/api/v1/schedules",
        {"notification_id": notification["id"], "user_ids": ["mallory"], "interval_seconds": 60},
        auth=b.header,
    )
    assert response.status == 404
    assert await ctx.store.schedules.count_documents({"user_ids": "mallory"}) == 0


@pytest.mark.gen_test
async def test_the_contacts_directory_needs_a_granted_permission(api, ctx, client_app, admin):
    await api.put("/api/v1/users/alice", {"email": "alice@example.com"}, auth=admin.header)
    attempts = [
        ("GET", "/api/v1/users", None),
        ("GET", "/api/v1/users/alice", None),
        ("PUT", "/api/v1/users/alice", {"email": "mallory@example.com"}),
        ("PUT", "/api/v1/users/carol", {"email": "carol@example.com"}),
        ("POST", "/api/v1/users/bulk", {"users": [{"user_id": "alice", "email": "mallory@example.com"}]}),
        ("DELETE", "/api/v1/users/alice", None),
    ]
    for method, path, body in attempts:
        response = await api.call(method, path, body, auth=client_app.header)
        assert response.status == 403, (method, path, response.status)
        assert "contacts:" in response.body["message"]
    alice = await ctx.users.get("alice")
    assert alice["email"] == "alice@example.com"
    assert await ctx.store.users.count_documents({"user_id": "carol"}) == 0
    # Naming recipients needs no permission: that is what the directory is for.
    sent = await api.post("/api/v1/notifications", NOTE, auth=client_app.header)
    assert sent.status == 201


@pytest.mark.gen_test
async def test_read_permission_does_not_allow_writes(api, ctx, client_app, admin):
    await api.put("/api/v1/users/alice", {"email": "alice@example.com"}, auth=admin.header)
    granted = await api.put(
        f"/api/v1/clients/{client_app.id}/permissions", {"permissions": ["contacts:read"]}, auth=admin.header
    )
    assert granted.status == 200 and granted.body["permissions"] == ["contacts:read"]
    assert (await api.get("/api/v1/users/alice", auth=client_app.header)).status == 200
    assert (await api.get("/api/v1/users", auth=client_app.header)).status == 200
    assert (await api.put("/api/v1/users/alice", {"email": "m@example.com"}, auth=client_app.header)).status == 403
    assert (await api.delete("/api/v1/users/alice", auth=client_app.header)).status == 403
    # A revoked permission is gone with the next request (no cached grant).
    revoked = await api.put(f"/api/v1/clients/{client_app.id}/permissions", {"permissions": []}, auth=admin.header)
    assert revoked.status == 200
    assert (await api.get("/api/v1/users/alice", auth=client_app.header)).status == 403
    assert (await ctx.users.get("alice"))["email"] == "alice@example.com"
