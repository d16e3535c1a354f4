"""The plan and the dry run (services/plans.py): per recipient what will happen, why and when; a dry run's
decisions are those of the real run on the same data."""

from __future__ import annotations

from datetime import timedelta

import pytest
from bson import ObjectId

from ..support import TEST_ADMIN, eventually


@pytest.fixture
def settings_overrides(pipeline_settings):
    return {**pipeline_settings, "default_timezone": "Europe/Berlin"}


async def people(ctx) -> list[str]:
    """One recipient for each decision a plan can make before anything is sent."""
    now = ctx.clock.now()
    await ctx.users.bulk_upsert(
        TEST_ADMIN,
        [
            {"user_id": "ok", "email": "ok@example.com", "display_name": "Ok", "timezone": "Asia/Tokyo"},
            {"user_id": "left", "email": "left@example.com"},
            {"user_id": "nomail", "telegram_chat_id": "12345"},
            {"user_id": "bad", "email": "not an address"},
            {"user_id": "night", "email": "night@example.com", "timezone": "UTC"},
        ],
    )
    await ctx.users.set_preferences("left", {"unsubscribed_channels": ["email"]})
    end = (now + timedelta(seconds=20)).replace(microsecond=0)
    window = {"start": (now - timedelta(minutes=1)).strftime("%H:%M:%S"), "end": end.strftime("%H:%M:%S")}
    await ctx.users.set_preferences("night", {"quiet_hours": window})
    return ["ok", "left", "nomail", "bad", "night", "stranger"]


EXPECTED = {
    "ok": ("send", "now"),
    "left": ("skip", "unsubscribed"),
    "nomail": ("skip", "no_contact"),
    "bad": ("skip", "invalid_contact"),
    "night": ("defer", "quiet_hours"),
    "stranger": ("skip", "no_contact"),  # no user at all
}
# What the real run's delivery shows for each decision.
STATUS_OF = {"send": "sent", "skip": "skipped", "defer": "deferred", "expire": "expired"}


@pytest.mark.gen_test(timeout=90)
async def test_a_dry_run_decides_as_the_real_run_and_stores_nothing(api, admin, ctx, smtp, workers):
    recipients = await people(ctx)
    body = {"title": "Hi {{ name }}", "text": "x", "channel": "email", "recipients": recipients}
    dry = await api.post("/api/v1/notifications?dry_run=true", body, auth=admin.header)
    assert dry.status == 200, dry.body
    assert dry.body["dry_run"] is True and dry.body["recipient_count"] == len(recipients)
    planned = {item["user_id"]: item for item in dry.body["items"]}
    assert {u: (i["decision"], i["reason"]) for u, i in planned.items()} == EXPECTED
    assert dry.body["summary"] == {
        "send:now": 1,
        "skip:unsubscribed": 1,
        "skip:no_contact": 2,
        "skip:invalid_contact": 1,
        "defer:quiet_hours": 1,
    }
    assert planned["ok"]["zone"] == "Asia/Tokyo" and planned["ok"]["local"].endswith("+09:00")
    assert planned["left"]["zone"] == "Europe/Berlin"  # DEFAULT_TIMEZONE
    assert dry.body["sample"][0] == {"user_id": "ok", "title": "Hi Ok", "text": "x"}
    assert await ctx.store.notifications.count_documents({}) == 0
    assert await ctx.store.deliveries.count_documents({}) == 0
    assert not smtp.received

    created = (await api.post("/api/v1/notifications", body, auth=admin.header)).body

    async def real():
        found = await ctx.store.deliveries.find({"notification_id": ObjectId(created["id"])}).to_list(None)
        done = all(d["status"] not in ("pending", "queued", "sending") for d in found)
        return done and {d["user_id"]: d for d in found}

    deliveries = await eventually(real, timeout=30, message="every delivery decided")
    for user_id, (decision, reason) in EXPECTED.items():
        delivery = deliveries[user_id]
        # A sent delivery keeps no reason; the plan's says why it goes when it does.
        expected = (STATUS_OF[decision], None if decision == "send" else reason)
        assert (delivery["status"], delivery["reason"]) == expected, delivery
    assert deliveries["night"]["deferred_until"].isoformat() == planned["night"]["at"].replace("Z", "+00:00")


@pytest.mark.gen_test(timeout=60)
async def test_the_plan_of_a_stored_notification_says_when_each_goes_in_its_zone(api, admin, ctx):
    await people(ctx)
    day = (ctx.clock.now() + timedelta(days=10)).date().isoformat()
    created = (
        await api.post(
            "/api/v1/notifications",
            {
                "title": "t",
                "text": "x",
                "channel": "email",
                "recipients": ["ok", "left"],
                "deliver_at_local": {"date": day, "time": "09:00"},
            },
            auth=admin.header,
        )
    ).body
    plan = await api.get(f"/api/v1/notifications/{created['id']}/plan", auth=admin.header)
    assert plan.status == 200, plan.body
    items = {item["user_id"]: item for item in plan.body["items"]}
    assert (items["ok"]["decision"], items["ok"]["reason"], items["ok"]["status"]) == (
        "send",
        "local_time",
        "scheduled",
    )
    assert items["ok"]["local"] == f"{day}T09:00:00+09:00"
    assert items["left"]["decision"] == "skip" and items["left"]["local"].startswith(f"{day}T09:00:00+01:00")


@pytest.mark.gen_test
async def test_a_plan_is_the_callers_own_and_a_dry_run_checks_like_a_create(api, ctx, client_app, other_client_app):
    created = (
        await api.post(
            "/api/v1/notifications",
            {"title": "t", "text": "x", "channel": "email", "recipients": ["a"]},
            auth=client_app.header,
        )
    ).body
    assert (await api.get(f"/api/v1/notifications/{created['id']}/plan", auth=other_client_app.header)).status == 404
    bad = await api.post(
        "/api/v1/notifications?dry_run=true",
        {"title": "{{ nope }}", "text": "x", "channel": "email", "recipients": ["a"]},
        auth=client_app.header,
    )
    assert bad.status == 400 and "title" in bad.body["errors"], bad.body
    flag = await api.post(
        "/api/v1/notifications?dry_run=maybe",
        {"title": "t", "text": "x", "channel": "email", "recipients": ["a"]},
        auth=client_app.header,
    )
    assert flag.status == 400 and "dry_run" in flag.body["errors"], flag.body
    assert await ctx.store.notifications.count_documents({}) == 1


@pytest.mark.gen_test
async def test_a_recipients_zone_shows_only_to_callers_who_may_read_contacts(api, ctx, client_app, contacts_app):
    """A time zone is contact data: a client application without `contacts:read` sees the plan in UTC only."""
    await people(ctx)
    body = {"title": "t", "text": "x", "channel": "email", "recipients": ["ok"]}
    plain = await api.post("/api/v1/notifications?dry_run=true", body, auth=client_app.header)
    [item] = plain.body["items"]
    assert (item["decision"], item["zone"], item["local"]) == ("send", None, None) and item["at"]
    granted = await api.post("/api/v1/notifications?dry_run=true", body, auth=contacts_app.header)
    [item] = granted.body["items"]
    assert item["zone"] == "Asia/Tokyo" and item["local"].endswith("+09:00")
