"""POST/GET /api/v1/notifications and their deliveries and recipients."""

from __future__ import annotations

import asyncio

import pytest
from bson import ObjectId

from ...support import TEST_ADMIN, eventually

NEW = {
    "title": "Hello {{ name }}",
    "text": "Your order {{ order }} shipped.",
    "channel": "email",
    "variables": {"order": "A-1"},
    "recipients": ["u1", "u2", "u1", "u3"],
}


@pytest.mark.gen_test
async def test_create_stores_notification_and_one_delivery_per_distinct_recipient(api, admin, ctx):
    """Duplicated recipient ids are counted and stored once; the answer is 201 with Location."""
    response = await api.post("/api/v1/notifications", NEW, auth=admin.header)
    assert response.status == 201
    assert response.body["recipient_count"] == 3
    assert response.headers["Location"] == f"/api/v1/notifications/{response.body['id']}"
    assert response.body["author"] == {"kind": "admin", "id": admin.id, "name": "root"}
    deliveries = await ctx.store.deliveries.find({"notification_id": ObjectId(response.body["id"])}).to_list(None)
    assert sorted(d["user_id"] for d in deliveries) == ["u1", "u2", "u3"]
    assert all(d["channel"] == "email" and d["attempts"] == 0 for d in deliveries)


@pytest.mark.gen_test
async def test_deliveries_start_unsent_to_queue(ctx, admin):
    """Without a broker confirm nothing is marked is_sent_to_queue (the outbox sweep owns the rest)."""
    await ctx.broker.close()
    notification, _ = await ctx.notifications.create(
        await ctx.auth.authenticate(admin.header),
        {**NEW, "is_express": False, "content_id": None, "recipients": ["a", "b"]},
    )
    deliveries = await ctx.store.deliveries.find({"notification_id": notification["_id"]}).to_list(None)
    assert [d["is_sent_to_queue"] for d in deliveries] == [False, False]
    assert {d["status"] for d in deliveries} == {"pending"}


@pytest.mark.gen_test
async def test_client_application_creates_with_login_password_authorization_form(api, client_app):
    response = await api.post("/api/v1/notifications", NEW, auth=client_app.header)
    assert response.status == 201
    assert response.body["author"]["kind"] == "client"


@pytest.mark.gen_test
async def test_get_shows_counts_by_status(api, admin):
    created = (await api.post("/api/v1/notifications", NEW, auth=admin.header)).body
    response = await api.get(f"/api/v1/notifications/{created['id']}", auth=admin.header)
    assert response.status == 200
    assert sum(response.body["counts"].values()) == 3
    assert set(response.body["counts"]) <= {"pending", "queued"}
    assert response.body["reasons"] == {}


@pytest.mark.gen_test
async def test_unknown_and_malformed_ids_are_404(api, admin):
    for notification_id in (str(ObjectId()), "not-an-id"):
        response = await api.get(f"/api/v1/notifications/{notification_id}", auth=admin.header)
        assert response.status == 404
        assert "not found" in response.body["message"]


@pytest.mark.gen_test
async def test_client_sees_only_its_own_notifications(api, admin, client_app, other_client_app):
    mine = (await api.post("/api/v1/notifications", NEW, auth=client_app.header)).body
    theirs = (await api.post("/api/v1/notifications", NEW, auth=other_client_app.header)).body
    listed = await api.get("/api/v1/notifications", auth=client_app.header)
    assert [n["id"] for n in listed.body["items"]] == [mine["id"]]
    assert (await api.get(f"/api/v1/notifications/{theirs['id']}", auth=client_app.header)).status == 404
    everything = await api.get("/api/v1/notifications", auth=admin.header)
    assert {n["id"] for n in everything.body["items"]} == {mine["id"], theirs["id"]}


@pytest.mark.gen_test
async def test_list_pages_with_cursor_and_bounds_the_limit(api, admin):
    ids = [
        (await api.post("/api/v1/notifications", {**NEW, "title": f"n{i}"}, auth=admin.header)).body["id"]
        for i in range(5)
    ]
    first = await api.get("/api/v1/notifications?limit=2", auth=admin.header)
    assert [n["id"] for n in first.body["items"]] == ids[::-1][:2]
    second = await api.get(f"/api/v1/notifications?limit=2&cursor={first.body['next_cursor']}", auth=admin.header)
    third = await api.get(f"/api/v1/notifications?limit=2&cursor={second.body['next_cursor']}", auth=admin.header)
    assert [n["id"] for n in second.body["items"] + third.body["items"]] == ids[::-1][2:]
    assert third.body["next_cursor"] is None
    for bad in ("limit=0", "limit=201", "limit=x", "cursor=%%%", "cursor=Zm9v"):
        response = await api.get(f"/api/v1/notifications?{bad}", auth=admin.header)
        assert response.status == 400, bad
        assert set(response.body["errors"]) <= {"limit", "cursor"}


@pytest.mark.gen_test
async def test_list_filters(api, admin):
    await api.post("/api/v1/notifications", {**NEW, "title": "Weekly digest"}, auth=admin.header)
    await api.post(
        "/api/v1/notifications", {**NEW, "title": "Alarm", "channel": "telegram", "is_express": True}, auth=admin.header
    )
    express = await api.get("/api/v1/notifications?is_express=true", auth=admin.header)
    assert [n["title"] for n in express.body["items"]] == ["Alarm"]
    telegram = await api.get("/api/v1/notifications?channel=telegram", auth=admin.header)
    assert [n["title"] for n in telegram.body["items"]] == ["Alarm"]
    search = await api.get("/api/v1/notifications?q=DIGEST", auth=admin.header)
    assert [n["title"] for n in search.body["items"]] == ["Weekly digest"]
    future = await api.get("/api/v1/notifications?created_after=2100-01-01T00:00:00Z", auth=admin.header)
    assert future.body["items"] == []
    bad = await api.get("/api/v1/notifications?channel=sms", auth=admin.header)
    assert bad.status == 400 and "channel" in bad.body["errors"]


@pytest.mark.gen_test
async def test_deliveries_list_filters_and_pages(api, admin):
    created = (
        await api.post("/api/v1/notifications", {**NEW, "recipients": [f"u{i}" for i in range(7)]}, auth=admin.header)
    ).body
    path = f"/api/v1/notifications/{created['id']}/deliveries"
    page = await api.get(f"{path}?limit=5", auth=admin.header)
    rest = await api.get(f"{path}?limit=5&cursor={page.body['next_cursor']}", auth=admin.header)
    users = [d["user_id"] for d in page.body["items"] + rest.body["items"]]
    assert sorted(users) == [f"u{i}" for i in range(7)]
    one = await api.get(f"{path}?user_id=u3", auth=admin.header)
    assert [d["user_id"] for d in one.body["items"]] == ["u3"]
    assert one.body["items"][0]["notification_id"] == created["id"]
    none = await api.get(f"{path}?status=sent", auth=admin.header)
    assert none.body["items"] == []


@pytest.mark.gen_test
async def test_add_recipients_skips_present_ones(api, admin):
    created = (await api.post("/api/v1/notifications", NEW, auth=admin.header)).body
    path = f"/api/v1/notifications/{created['id']}/recipients"
    response = await api.post(path, {"recipients": ["u1", "u4", "u5", "u4"]}, auth=admin.header)
    assert response.status == 200
    assert response.body == {"added": 2, "already_present": 1}
    detail = await api.get(f"/api/v1/notifications/{created['id']}", auth=admin.header)
    assert detail.body["recipient_count"] == 5
    assert sum(detail.body["counts"].values()) == 5


@pytest.mark.gen_test
async def test_idempotency_key_replays_instead_of_duplicating(api, admin, ctx):
    headers = {"Idempotency-Key": "order-42"}
    first = await api.post("/api/v1/notifications", NEW, auth=admin.header, headers=headers)
    again = await api.post("/api/v1/notifications", NEW, auth=admin.header, headers=headers)
    assert first.status == again.status == 201
    assert again.body["id"] == first.body["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert await ctx.store.deliveries.count_documents({}) == 3
    different = await api.post("/api/v1/notifications", {**NEW, "title": "other"}, auth=admin.header, headers=headers)
    assert different.status == 409
    assert "Idempotency-Key" in different.body["errors"]


@pytest.mark.gen_test
async def test_idempotent_retry_finishes_an_interrupted_create(ctx, admin):
    """A create that stopped after storing part of its recipients is completed by the retried request."""
    principal = await ctx.auth.authenticate(admin.header)
    data = {**NEW, "is_express": False, "content_id": None, "recipients": ["a", "b", "c"]}
    notification, _ = await ctx.notifications.create(principal, data, "k1")
    # As if the process died after storing the notification and the first recipient only:
    await ctx.store.deliveries.delete_many({"user_id": {"$in": ["b", "c"]}})
    await ctx.store.notifications.update_one({"_id": notification["_id"]}, {"$set": {"complete": False}})
    again, created = await ctx.notifications.create(principal, data, "k1")
    assert again["_id"] == notification["_id"] and created
    deliveries = await ctx.store.deliveries.find({}).to_list(None)
    assert sorted(d["user_id"] for d in deliveries) == ["a", "b", "c"]


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "body, field",
    [
        ({**NEW, "channel": "sms"}, "channel"),
        ({**NEW, "recipients": []}, "recipients"),
        ({**NEW, "recipients": ["has space"]}, "recipients"),
        ({**NEW, "title": ""}, "title"),
        ({**NEW, "title": "x" * 201}, "title"),
        ({**NEW, "is_express": "maybe"}, "is_express"),
        ({**NEW, "unexpected": 1}, "unexpected"),
        ({**NEW, "text": "Hi {{ nickname }}"}, "text"),
        ({k: v for k, v in NEW.items() if k != "text"}, "text"),
    ],
)
async def test_invalid_bodies_are_400_naming_the_field(api, admin, ctx, body, field):
    response = await api.post("/api/v1/notifications", body, auth=admin.header)
    assert response.status == 400
    assert field in response.body["errors"], response.body
    assert await ctx.store.notifications.count_documents({}) == 0


@pytest.mark.gen_test
async def test_body_must_be_a_json_object(api, admin):
    for raw, content_type, status in (
        (b"{nope", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b"", "application/json", 400),
        (b"title=x", "text/plain", 415),
        (b"{}", "application/x-www-form-urlencoded", 415),
    ):
        response = await api.call(
            "POST", "/api/v1/notifications", raw=raw, auth=admin.header, headers={"Content-Type": content_type}
        )
        assert response.status == status, raw
        assert response.body["message"]


@pytest.mark.gen_test
async def test_oversized_body_is_413_json(api, admin, ctx):
    raw = b'{"title": "' + b"x" * (ctx.settings.max_body_bytes + 10) + b'"}'
    response = await api.call(
        "POST", "/api/v1/notifications", raw=raw, auth=admin.header, headers={"Content-Type": "application/json"}
    )
    assert response.status == 413
    assert response.body["errors"] == {"body": [f"must be at most {ctx.settings.max_body_bytes} bytes"]}


@pytest.mark.gen_test
async def test_too_many_recipients_is_400(api, admin, ctx):
    ctx.notifications.settings = ctx.settings.replace(max_recipients=3)
    response = await api.post("/api/v1/notifications", {**NEW, "recipients": ["a", "b", "c", "d"]}, auth=admin.header)
    assert response.status == 400
    assert response.body["errors"] == {"recipients": ["at most 3 per request"]}


@pytest.mark.gen_test
async def test_a_big_create_answers_202_and_its_detail_follows_the_fanout(api, admin, ctx):
    """Past INLINE_RECIPIENTS the answer comes before the deliveries: 202, Location, fanout in_progress."""
    ctx.notifications.settings = ctx.settings.replace(inline_recipients=5)
    gate = asyncio.Event()
    real = ctx.notifications.materializer.add_deliveries

    async def gated(*args):
        await gate.wait()
        return await real(*args)

    ctx.notifications.materializer.add_deliveries = gated
    recipients = [f"u{i}" for i in range(12)]
    response = await api.post("/api/v1/notifications", {**NEW, "recipients": recipients}, auth=admin.header)
    assert response.status == 202
    assert response.headers["Location"] == f"/api/v1/notifications/{response.body['id']}"
    assert (response.body["fanout"], response.body["recipients_stored"], response.body["recipient_count"]) == (
        "in_progress",
        0,
        12,
    )
    assert await ctx.store.deliveries.count_documents({}) == 0
    gate.set()

    async def done():
        detail = await api.get(response.headers["Location"], auth=admin.header)
        return detail.body if detail.body["fanout"] == "done" else None

    detail = await eventually(done, message="fan-out done")
    assert detail["recipients_stored"] == 12 and sum(detail["counts"].values()) == 12
    assert await ctx.store.recipient_chunks.count_documents({}) == 0
    small = await api.post("/api/v1/notifications", {**NEW, "recipients": recipients[:5]}, auth=admin.header)
    assert small.status == 201 and small.body["fanout"] == "done" and small.body["recipients_stored"] == 5


# --- cancel ---


async def _delivery(ctx, notification_id, user_id):
    return await ctx.store.deliveries.find_one({"notification_id": ObjectId(notification_id), "user_id": user_id})


@pytest.mark.gen_test
async def test_cancel_for_some_recipients_says_what_happened_to_each(api, admin, ctx):
    """u1 is being sent, u2 was sent, u3 waits, u4 is not asked about: u3 is cancelled, u1 is marked so that
    it is never claimed again (its message, released by a dead consumer, finds it and cancels it)."""
    from notifier.services.outcomes import OutcomeKind, decide

    created = (
        await api.post("/api/v1/notifications", {**NEW, "recipients": ["u1", "u2", "u3", "u4"]}, auth=admin.header)
    ).body
    nid = created["id"]
    u1, u2 = await _delivery(ctx, nid, "u1"), await _delivery(ctx, nid, "u2")
    now = ctx.clock.now()
    assert await ctx.deliveries.claim([u1["_id"]], "host.9.9", now, lease=300, token="t1") == [u1["_id"]]
    assert await ctx.deliveries.claim([u2["_id"]], "host.9.9", now, lease=300, token="t2") == [u2["_id"]]
    await ctx.deliveries.finish("t2", [(u2["_id"], decide(OutcomeKind.SENT, now).update())])

    response = await api.post(
        f"/api/v1/notifications/{nid}/cancel", {"user_ids": ["u1", "u2", "u3", "nobody"]}, auth=admin.header
    )
    assert response.status == 200, response.body
    assert response.body == {
        "notification_id": nid,
        "cancelled": 1,
        "already_sent": 1,
        "in_flight": 1,
        "already_done": 0,
        "already_cancelled": 0,
    }
    assert (await _delivery(ctx, nid, "u3"))["status"] == "cancelled"
    assert (await _delivery(ctx, nid, "u4"))["status"] in ("pending", "queued")
    assert (await _delivery(ctx, nid, "u1"))["cancel_requested"] is True

    sent, failed, released = await ctx.deliveries.recover("host.9.9", {}, {}, ctx.clock.now())
    assert [d["_id"] for d in released] == [u1["_id"]]
    assert await ctx.deliveries.claim([u1["_id"]], "host.9.8", ctx.clock.now(), lease=300, token="t3") == []
    assert (await _delivery(ctx, nid, "u1"))["status"] == "cancelled"


@pytest.mark.gen_test
async def test_cancel_of_everything_then_the_detail_counts_it_and_no_recipient_can_be_added(api, admin, ctx):
    created = (await api.post("/api/v1/notifications", NEW, auth=admin.header)).body
    nid = created["id"]
    # An empty body cancels everything (a write with Basic credentials still says it is JSON).
    first = await api.post(
        f"/api/v1/notifications/{nid}/cancel", None, auth=admin.header, headers={"Content-Type": "application/json"}
    )
    assert first.status == 200, first.body
    assert (first.body["cancelled"], first.body["already_sent"], first.body["in_flight"]) == (3, 0, 0)
    again = await api.post(f"/api/v1/notifications/{nid}/cancel", {}, auth=admin.header)
    assert (again.body["cancelled"], again.body["already_cancelled"]) == (0, 3)

    detail = (await api.get(f"/api/v1/notifications/{nid}", auth=admin.header)).body
    assert detail["counts"] == {"cancelled": 3}
    assert detail["cancelled_at"] is not None
    added = await api.post(f"/api/v1/notifications/{nid}/recipients", {"recipients": ["u9"]}, auth=admin.header)
    assert added.status == 409 and "notification_id" in added.body["errors"], added.body
    assert (
        await ctx.store.deliveries.count_documents({"notification_id": ObjectId(nid), "status": {"$ne": "cancelled"}})
        == 0
    )
    entry = await ctx.store.audit.find_one({"action": "cancel"})
    assert entry["notification_ids"] == [nid] and entry["count"] == 3 and entry["actor"]["id"] == admin.id


@pytest.mark.gen_test
async def test_cancel_by_key_takes_only_the_callers_notifications_with_that_key(api, ctx, client_app, other_client_app):
    mine = [
        (await api.post("/api/v1/notifications", {**NEW, "cancellation_key": "order-7"}, auth=client_app.header)).body
        for _ in range(2)
    ]
    unkeyed = (await api.post("/api/v1/notifications", NEW, auth=client_app.header)).body
    theirs = (
        await api.post("/api/v1/notifications", {**NEW, "cancellation_key": "order-7"}, auth=other_client_app.header)
    ).body
    assert mine[0]["cancellation_key"] == "order-7"

    response = await api.post("/api/v1/notifications/cancel", {"cancellation_key": "order-7"}, auth=client_app.header)
    assert response.status == 200, response.body
    assert response.body == {
        "notifications": 2,
        "cancelled": 6,
        "already_sent": 0,
        "in_flight": 0,
        "already_done": 0,
        "more": False,
    }
    for notification, status in ((mine[0], "cancelled"), (mine[1], "cancelled"), (unkeyed, None), (theirs, None)):
        counted = await ctx.deliveries.statuses(ObjectId(notification["id"]))
        assert ("cancelled" in counted) == (status == "cancelled"), (notification["id"], counted)


@pytest.mark.gen_test
async def test_another_application_cannot_cancel_a_notification(api, client_app, other_client_app):
    created = (await api.post("/api/v1/notifications", NEW, auth=client_app.header)).body
    response = await api.post(f"/api/v1/notifications/{created['id']}/cancel", {}, auth=other_client_app.header)
    assert response.status == 404, response.body
    detail = (await api.get(f"/api/v1/notifications/{created['id']}", auth=client_app.header)).body
    assert "cancelled" not in detail["counts"] and detail["cancelled_at"] is None


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("{id}/cancel", {"user_ids": "u1"}, "user_ids"),
        ("{id}/cancel", {"user_ids": []}, "user_ids"),
        ("{id}/cancel", {"user_ids": [""]}, "user_ids"),
        ("{id}/cancel", {"everyone": True}, "everyone"),
        ("cancel", {}, "cancellation_key"),
        ("cancel", {"cancellation_key": ""}, "cancellation_key"),
        ("cancel", {"cancellation_key": "x" * 256}, "cancellation_key"),
    ],
)
async def test_cancel_refuses_bad_input_naming_the_field(api, admin, ctx, path, body, field):
    created = (await api.post("/api/v1/notifications", NEW, auth=admin.header)).body
    response = await api.post(f"/api/v1/notifications/{path.format(id=created['id'])}", body, auth=admin.header)
    assert response.status == 400 and field in response.body["errors"], response.body
    assert await ctx.store.deliveries.count_documents({"status": "cancelled"}) == 0


@pytest.mark.gen_test
async def test_a_cancellation_key_is_checked_at_create(api, admin):
    response = await api.post("/api/v1/notifications", {**NEW, "cancellation_key": "a\nb"}, auth=admin.header)
    assert response.status == 400 and "cancellation_key" in response.body["errors"], response.body


# --- delivery at the recipient's local time ---


@pytest.mark.gen_test
async def test_deliver_at_local_resolves_each_recipients_zone_with_the_default_for_the_rest(api, admin, ctx):
    from datetime import date, time, timedelta

    from notifier.recurrence import local_instant

    await ctx.users.bulk_upsert(
        TEST_ADMIN,
        [
            {"user_id": "tokyo", "email": "t@example.com", "timezone": "Asia/Tokyo"},
            {"user_id": "ny", "email": "n@example.com", "timezone": "America/New_York"},
            {"user_id": "nozone", "email": "z@example.com"},
        ],
    )
    day = (ctx.clock.now() + timedelta(days=10)).date()
    body = {
        **NEW,
        "recipients": ["tokyo", "ny", "nozone", "unknown"],
        "deliver_at_local": {"date": day.isoformat(), "time": "09:00"},
    }
    created = await api.post("/api/v1/notifications", body, auth=admin.header)
    assert created.status == 201, created.body
    assert created.body["deliver_at_local"] == {"date": day.isoformat(), "time": "09:00"}
    deliveries = {
        d["user_id"]: d
        for d in await ctx.store.deliveries.find({"notification_id": ObjectId(created.body["id"])}).to_list(None)
    }
    expected_zone = {"tokyo": "Asia/Tokyo", "ny": "America/New_York", "nozone": "UTC", "unknown": "UTC"}
    for user_id, zone in expected_zone.items():
        instant, _ = local_instant(date.fromisoformat(day.isoformat()), time(9, 0), zone, ctx.clock.now())
        delivery = deliveries[user_id]
        assert (delivery["status"], delivery["available_at"], delivery["local_time"]["zone"]) == (
            "scheduled",
            instant,
            zone,
        )
    assert deliveries["tokyo"]["available_at"] < deliveries["nozone"]["available_at"] < deliveries["ny"]["available_at"]

    next_nine = await api.post(
        "/api/v1/notifications", {**body, "deliver_at_local": {"time": "09:00"}}, auth=admin.header
    )
    soon = await ctx.store.deliveries.find({"notification_id": ObjectId(next_nine.body["id"])}).to_list(None)
    assert all(ctx.clock.now() < d["available_at"] <= ctx.clock.now() + timedelta(hours=24) for d in soon)


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "extra",
    [
        {"deliver_at_local": {"time": "25:00"}},
        {"deliver_at_local": {"date": "2026-02-30", "time": "09:00"}},
        {"deliver_at_local": {"date": "2020-01-01", "time": "09:00"}},
        {"deliver_at_local": {"date": "2999-01-01", "time": "09:00"}},
        {"deliver_at_local": {"date": "2026-12-24"}},
        {"deliver_at_local": {"time": "09:00"}, "send_at": "2027-01-01T00:00:00+00:00"},
    ],
)
async def test_deliver_at_local_refuses_what_names_no_local_time(api, admin, ctx, extra):
    response = await api.post("/api/v1/notifications", {**NEW, **extra}, auth=admin.header)
    assert response.status == 400 and "deliver_at_local" in response.body["errors"], response.body
    assert await ctx.store.notifications.count_documents({}) == 0
