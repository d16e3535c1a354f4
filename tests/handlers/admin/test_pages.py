"""Every admin page and form, through HTTP like a browser without JavaScript."""

from __future__ import annotations

import re

import pytest
from bson import ObjectId

from ...support import TEST_ADMIN
from .conftest import field_errors, text


@pytest.mark.gen_test
async def test_dashboard_shows_queues_consumers_counts_and_failures(logged_in, ctx):
    await ctx.users.bulk_upsert(TEST_ADMIN, [{"user_id": "a", "email": "a@example.com"}])
    await ctx.store.deliveries.insert_one(
        {
            "notification_id": ObjectId(),
            "user_id": "z",
            "channel": "email",
            "status": "failed",
            "reason": "rejected",
            "last_error": "SMTP 550: nope",
            "occurrence": "",
            "updated_at": ctx.clock.now(),
            "attempts": 1,
        }
    )
    page = text(await logged_in.get("/admin/"))
    for expected in (
        "regular",
        "express",
        "parked",
        "delay.regular.5000",
        "Deliveries, last hour",
        "failed",
        "SMTP 550: nope",
        "min 1, max 4",
    ):
        assert expected in page, expected


@pytest.mark.gen_test
async def test_create_a_notification_from_pasted_ids_and_a_csv(logged_in, ctx):
    response = await logged_in.post(
        "/admin/notifications/new",
        {"title": "Hello {{ name }}", "text": "Body", "channel": "email", "recipients": "ann, bob\ncid"},
        files={"recipients_csv": ("users.csv", b"user_id,email\ndan,d@x\nann,a@x\n")},
    )
    assert response.status == 302
    path = response.headers["Location"]
    detail = await logged_in.get(path)
    html = text(detail)
    assert "Notification created for 4 recipients." in html
    assert "4 recipients" in html
    deliveries = await ctx.store.deliveries.distinct("user_id", {})
    assert sorted(deliveries) == ["ann", "bob", "cid", "dan"]


@pytest.mark.gen_test
async def test_form_errors_show_beside_their_field_and_keep_what_was_typed(logged_in, ctx):
    response = await logged_in.post(
        "/admin/notifications/new",
        {"title": "", "text": "Typed text {{ nope }}", "channel": "email", "recipients": "ok bad!id"},
    )
    assert response.status == 400
    assert field_errors(response, "title") == ["Length must be between 1 and 200."]
    assert any("must be 1-128 characters" in e for e in field_errors(response, "recipients"))
    assert "Typed text {{ nope }}" in text(response) and "ok bad!id" in text(response)
    assert await ctx.store.notifications.count_documents({}) == 0


@pytest.mark.gen_test
async def test_user_text_is_escaped(logged_in, ctx, admin):
    await logged_in.post(
        "/admin/notifications/new",
        {"title": "<script>alert(1)</script>", "text": "<b>x</b>", "channel": "inbox", "recipients": "u1"},
    )
    listing = text(await logged_in.get("/admin/notifications"))
    assert "<script>alert(1)</script>" not in listing and "&lt;script&gt;alert(1)&lt;/script&gt;" in listing
    notification = await ctx.store.notifications.find_one({})
    detail = text(await logged_in.get(f"/admin/notifications/{notification['_id']}"))
    assert "<b>x</b>" not in detail and "&lt;b&gt;x&lt;/b&gt;" in detail


@pytest.mark.gen_test
async def test_notification_list_filters_and_add_recipients(logged_in, ctx):
    await logged_in.post(
        "/admin/notifications/new", {"title": "Weekly", "text": "t", "channel": "email", "recipients": "a"}
    )
    await logged_in.post(
        "/admin/notifications/new",
        {"title": "Alarm", "text": "t", "channel": "telegram", "is_express": "on", "recipients": "b"},
    )
    assert "Alarm" in text(await logged_in.get("/admin/notifications?channel=telegram"))
    assert "Weekly" not in text(await logged_in.get("/admin/notifications?channel=telegram"))
    assert "Weekly" in text(await logged_in.get("/admin/notifications?q=week"))
    assert "No notifications match" in text(await logged_in.get("/admin/notifications?created_after=2100-01-01"))
    weekly = await ctx.store.notifications.find_one({"title": "Weekly"})
    added = await logged_in.post(f"/admin/notifications/{weekly['_id']}/recipients", {"recipients": "a b c"})
    assert added.status == 302
    assert "2 recipients added; 1 were already there." in text(await logged_in.get(added.headers["Location"]))
    bad = await logged_in.post(f"/admin/notifications/{weekly['_id']}/recipients", {"recipients": ""})
    assert bad.status == 400 and field_errors(bad, "recipients")


@pytest.mark.gen_test
async def test_the_cancel_button_cancels_what_has_not_gone_and_is_audited(logged_in, ctx, admin):
    await logged_in.post(
        "/admin/notifications/new", {"title": "Oops", "text": "t", "channel": "email", "recipients": "a b c"}
    )
    oops = await ctx.store.notifications.find_one({"title": "Oops"})
    page = text(await logged_in.get(f"/admin/notifications/{oops['_id']}"))
    assert "Cancel what has not gone" in page
    cancelled = await logged_in.post(f"/admin/notifications/{oops['_id']}/cancel", {})
    assert cancelled.status == 302
    after = text(await logged_in.get(cancelled.headers["Location"]))
    assert "Cancelled: 3 deliveries will not be sent" in after and "Cancel what has not gone" not in after
    assert await ctx.store.deliveries.count_documents({"notification_id": oops["_id"], "status": "cancelled"}) == 3
    entry = await ctx.store.audit.find_one({"action": "cancel"})
    assert entry["actor"]["id"] == admin.id and entry["count"] == 3


@pytest.mark.gen_test
async def test_schedules_create_preview_edit_toggle_delete(logged_in, ctx):
    bad = await logged_in.post(
        "/admin/schedules/new",
        {
            "title": "Standup",
            "text": "t",
            "channel": "inbox",
            "user_ids": "a",
            "kind": "cron",
            "cron": "99 * * * *",
            "timezone": "Europe/Berlin",
            "enabled": "on",
        },
    )
    assert bad.status == 400 and any("not a valid cron" in e for e in field_errors(bad, "cron"))
    created = await logged_in.post(
        "/admin/schedules/new",
        {
            "title": "Standup",
            "text": "t",
            "channel": "inbox",
            "user_ids": "a\nb",
            "kind": "cron",
            "cron": "30 9 * * 1-5",
            "timezone": "Europe/Berlin",
            "enabled": "on",
            "misfire_policy": "skip",
        },
    )
    assert created.status == 302
    page = text(await logged_in.get(created.headers["Location"]))
    assert "Schedule created." in page
    assert len(re.findall(r"T09:30:00\+0[12]:00", page)) == 10  # the preview of the next ten
    schedule = await ctx.store.schedules.find_one({})
    assert schedule["misfire_policy"] == "skip" and schedule["user_ids"] == ["a", "b"]
    edited = await logged_in.post(
        f"/admin/schedules/{schedule['_id']}",
        {
            "user_ids": "a",
            "kind": "interval",
            "interval_seconds": "900",
            "timezone": "UTC",
            "enabled": "on",
            "misfire_policy": "run_once",
            "misfire_grace_seconds": "60",
        },
    )
    assert edited.status == 302
    schedule = await ctx.store.schedules.find_one({})
    assert schedule["interval_seconds"] == 900 and schedule["cron"] is None
    await logged_in.post(f"/admin/schedules/{schedule['_id']}/toggle")
    assert (await ctx.store.schedules.find_one({}))["enabled"] is False
    assert "disabled" in text(await logged_in.get("/admin/schedules"))
    await logged_in.post(f"/admin/schedules/{schedule['_id']}/delete")
    assert await ctx.store.schedules.count_documents({}) == 0


@pytest.mark.gen_test
async def test_users_create_edit_delete(logged_in, ctx):
    bad = await logged_in.post("/admin/users/new", {"user_id": "ann", "email": "not-an-email"})
    assert bad.status == 400 and field_errors(bad, "email") == ["Not a valid email address."]
    created = await logged_in.post(
        "/admin/users/new",
        {"user_id": "ann", "email": "ann@example.com", "display_name": "Ann", "unsub_telegram": "on"},
    )
    assert created.status == 302
    user = await ctx.users.get("ann")
    assert user["unsubscribed_channels"] == ["telegram"] and user["display_name"] == "Ann"
    assert "ann@example.com" in text(await logged_in.get("/admin/users"))
    assert 'value="ann@example.com"' in text(await logged_in.get("/admin/users/ann"))
    await logged_in.post("/admin/users/ann", {"email": "new@example.com", "unsubscribed_all": "on"})
    user = await ctx.users.get("ann")
    assert user["email"] == "new@example.com" and user["unsubscribed_all"] is True and user["display_name"] is None
    await logged_in.post("/admin/users/ann/delete")
    assert await ctx.store.users.count_documents({}) == 0


@pytest.mark.gen_test
async def test_clients_password_shown_once_deactivate_reset_delete(logged_in, ctx, api):
    created = await logged_in.post("/admin/clients", {"login": "shop", "name": "Shop"})
    assert created.status == 200
    password = re.search(r'id="client-password">([^<]+)<', text(created)).group(1)
    assert (await api.get("/api/v1/notifications", auth=f"shop {password}")).status == 200
    assert password not in text(await logged_in.get("/admin/clients"))
    duplicate = await logged_in.post("/admin/clients", {"login": "shop", "name": "Again"})
    assert duplicate.status == 409 and field_errors(duplicate, "login") == ["already exists"]
    client = await ctx.store.clients.find_one({})
    await logged_in.post(f"/admin/clients/{client['_id']}/toggle")
    assert (await api.get("/api/v1/notifications", auth=f"shop {password}")).status == 401
    await logged_in.post(f"/admin/clients/{client['_id']}/toggle")
    reset = await logged_in.post(f"/admin/clients/{client['_id']}/reset")
    new_password = re.search(r'id="client-password">([^<]+)<', text(reset)).group(1)
    assert (await api.get("/api/v1/notifications", auth=f"shop {password}")).status == 401
    assert (await api.get("/api/v1/notifications", auth=f"shop {new_password}")).status == 200
    await logged_in.post(f"/admin/clients/{client['_id']}/delete")
    assert await ctx.store.clients.count_documents({}) == 0


@pytest.mark.gen_test
async def test_clients_permissions_shown_granted_and_revoked_with_checkboxes(logged_in, ctx, api):
    created = await logged_in.post(
        "/admin/clients", [("login", "crm"), ("name", "CRM"), ("permission", "contacts:read")]
    )
    password = re.search(r'id="client-password">([^<]+)<', text(created)).group(1)
    client = await ctx.store.clients.find_one({"login": "crm"})
    assert client["permissions"] == ["contacts:read"]
    page = text(await logged_in.get("/admin/clients"))
    assert 'value="contacts:read" checked' in page and 'value="contacts:write">' in page
    granted = await logged_in.post(
        f"/admin/clients/{client['_id']}/permissions",
        [("permission", "contacts:read"), ("permission", "contacts:write")],
    )
    assert granted.status == 302
    assert (await ctx.store.clients.find_one({"login": "crm"}))["permissions"] == ["contacts:read", "contacts:write"]
    assert (await api.put("/api/v1/users/ann", {"email": "a@example.com"}, auth=f"crm {password}")).status == 201
    await logged_in.post(f"/admin/clients/{client['_id']}/permissions", [])
    assert (await ctx.store.clients.find_one({"login": "crm"}))["permissions"] == []
    assert (await api.get("/api/v1/users/ann", auth=f"crm {password}")).status == 403
    hostile = await logged_in.post(f"/admin/clients/{client['_id']}/permissions", [("permission", "root")])
    assert hostile.status == 302 and (await ctx.store.clients.find_one({"login": "crm"}))["permissions"] == []
    forged = await logged_in.post(
        f"/admin/clients/{client['_id']}/permissions", [("permission", "contacts:read")], xsrf=False
    )
    assert forged.status == 403
    audit = await ctx.store.audit.find({"action": "client_permissions"}).to_list(None)
    assert len(audit) == 2 and all(entry["actor"] == "root" for entry in audit)


@pytest.mark.gen_test
async def test_an_admin_changing_opt_outs_in_the_user_form_is_audited(logged_in, ctx):
    await logged_in.post("/admin/users/new", {"user_id": "ann", "email": "ann@example.com", "unsub_email": "on"})
    await logged_in.post("/admin/users/ann", {"email": "ann@example.com"})
    entries = await ctx.store.audit.find({"action": "user_preferences"}).sort("at", 1).to_list(None)
    assert [
        (e["user_id"], e["before"]["unsubscribed_channels"], e["after"]["unsubscribed_channels"]) for e in entries
    ] == [("ann", [], ["email"]), ("ann", ["email"], [])]
    assert "No redrives yet." in text(await logged_in.get("/admin/parked"))  # other audit entries stay off that page


@pytest.mark.gen_test
async def test_admins_create_deactivate_and_change_password(logged_in, ctx, admin, browser):
    short = await logged_in.post("/admin/admins", {"username": "ops", "password": "short"})
    assert short.status == 400 and "at least 12 characters" in text(short)
    assert (await logged_in.post("/admin/admins", {"username": "ops", "password": "teal-harbor-lantern"})).status == 302
    ops = await ctx.store.admins.find_one({"username": "ops"})
    await logged_in.post(f"/admin/admins/{ops['_id']}/password", {"password": "ops-password-2"})
    await logged_in.post(f"/admin/admins/{ops['_id']}/toggle")
    assert (await ctx.store.admins.find_one({"_id": ops["_id"]}))["active"] is False
    self_toggle = await logged_in.post(f"/admin/admins/{admin.id}/toggle")
    assert "cannot deactivate yourself" in text(await logged_in.get(self_toggle.headers["Location"]))
    await logged_in.post(f"/admin/admins/{admin.id}/password", {"password": "root-password-2"})
    assert (await logged_in.get("/admin/")).status == 200  # still logged in after changing one's own password


@pytest.mark.gen_test
async def test_parked_list_and_audited_redrive(logged_in, ctx, admin):
    notification = ObjectId()
    docs = [
        {
            "notification_id": notification,
            "user_id": f"u{i}",
            "channel": "email",
            "is_express": False,
            "status": "failed",
            "reason": reason,
            "attempts": 5,
            "last_error": "SMTP 451",
            "occurrence": "",
            "updated_at": ctx.clock.now(),
        }
        for i, reason in enumerate(("attempts_exhausted", "rejected", "attempts_exhausted"))
    ]
    await ctx.store.deliveries.insert_many(docs)
    page = text(await logged_in.get("/admin/parked?reason=attempts_exhausted"))
    assert page.count('name="delivery_id"') == 2
    one = await logged_in.post("/admin/parked/redrive", [("scope", "selected"), ("delivery_id", str(docs[1]["_id"]))])
    assert "1 deliveries sent again." in text(await logged_in.get(one.headers["Location"]))
    matching = await logged_in.post("/admin/parked/redrive", {"scope": "matching", "reason": "attempts_exhausted"})
    assert "2 deliveries sent again." in text(await logged_in.get(matching.headers["Location"]))
    redriven = await ctx.store.deliveries.find({}).to_list(None)
    assert {(d["status"], d["attempts"]) for d in redriven} <= {("pending", 0), ("queued", 0), ("sent", 1)}
    history = text(await logged_in.get("/admin/parked"))
    assert history.count("<td>root</td>") == 2 and "reason=attempts_exhausted" in history


@pytest.mark.gen_test
async def test_event_endpoints_pages_show_state_and_attempts_and_replay_and_toggle(logged_in, ctx, admin):
    from notifier.access import Principal, Role

    shop = Principal(Role.CLIENT, "c1", "Shop")
    endpoint, _ = await ctx.event_endpoints.create(shop, {"url": "https://shop.example.com/events"})
    now = ctx.clock.now()
    await ctx.store.event_attempts.insert_many(
        [
            {
                "endpoint_id": endpoint["_id"],
                "at": now,
                "ok": False,
                "event_id": "e1",
                "type": "delivery.sent",
                "status": 503,
                "error": "HTTP 503: Service Unavailable",
                "seconds": 0.1,
            },
            {
                "endpoint_id": endpoint["_id"],
                "at": now,
                "ok": True,
                "events": 12,
                "first_event_id": "e2",
                "last_event_id": "e13",
            },
        ]
    )
    listing = text(await logged_in.get("/admin/event-endpoints"))
    assert "https://shop.example.com/events" in listing and "enabled" in listing and "Shop" in listing
    page = text(await logged_in.get(f"/admin/event-endpoints/{endpoint['_id']}"))
    assert "HTTP 503: Service Unavailable" in page and "12 delivered" in page
    bad = await logged_in.post(f"/admin/event-endpoints/{endpoint['_id']}/replay", {"since": "yesterday"})
    assert bad.status == 400
    replayed = await logged_in.post(f"/admin/event-endpoints/{endpoint['_id']}/replay", {"since": "2026-12-01T09:00"})
    assert "are sent again" in text(await logged_in.get(replayed.headers["Location"]))
    assert (await ctx.store.audit.find_one({"action": "event replay"}))["actor"]["id"] == admin.id
    toggled = await logged_in.post(f"/admin/event-endpoints/{endpoint['_id']}/toggle", {})
    assert "Endpoint disabled." in text(await logged_in.get(toggled.headers["Location"]))
    assert (await ctx.store.event_endpoints.find_one({"_id": endpoint["_id"]}))["enabled"] is False
    missing = await logged_in.get(f"/admin/event-endpoints/{ObjectId()}")
    assert missing.status == 404
