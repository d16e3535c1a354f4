"""/api/v1/schedules: create, read, change, enable/disable, preview, delete; live without restart."""

from __future__ import annotations

import pytest
from bson import ObjectId

from ...support import eventually

CONTENT = {"title": "Standup", "text": "Time for standup, {{ name }}", "channel": "inbox"}
DAILY = {"notification": CONTENT, "user_ids": ["ann", "bob"], "cron": "30 9 * * 1-5", "timezone": "Europe/Berlin"}


@pytest.mark.gen_test
async def test_create_get_list_and_preview(api, admin):
    created = await api.post("/api/v1/schedules", DAILY, auth=admin.header)
    assert created.status == 201, created.body
    schedule = created.body
    assert created.headers["Location"] == f"/api/v1/schedules/{schedule['id']}"
    assert schedule["enabled"] is True and schedule["misfire_policy"] == "run_once"
    assert schedule["next_run_at"] is not None
    fetched = await api.get(f"/api/v1/schedules/{schedule['id']}", auth=admin.header)
    assert fetched.body == schedule
    listed = await api.get("/api/v1/schedules", auth=admin.header)
    assert [s["id"] for s in listed.body["items"]] == [schedule["id"]]
    preview = await api.get(f"/api/v1/schedules/{schedule['id']}/preview?n=3", auth=admin.header)
    assert len(preview.body["items"]) == 3
    for item in preview.body["items"]:
        assert item["at"].endswith(("+01:00", "+02:00")) and "T09:30:00" in item["at"]
        assert item["utc"].endswith("Z") and item["utc_offset"] in ("+0100", "+0200")
    assert (await api.get(f"/api/v1/schedules/{schedule['id']}/preview?n=0", auth=admin.header)).status == 400


@pytest.mark.gen_test
async def test_schedule_an_existing_notification(api, admin):
    notification = (await api.post("/api/v1/notifications", {**CONTENT, "recipients": ["x"]}, auth=admin.header)).body
    created = await api.post(
        "/api/v1/schedules",
        {"notification_id": notification["id"], "user_ids": ["y"], "interval_seconds": 3600},
        auth=admin.header,
    )
    assert created.status == 201 and created.body["notification_id"] == notification["id"]
    missing = await api.post(
        "/api/v1/schedules",
        {"notification_id": str(ObjectId()), "user_ids": ["y"], "interval_seconds": 60},
        auth=admin.header,
    )
    assert missing.status == 404


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "changes, field, reason",
    [
        ({"cron": "99 * * * *"}, "cron", "not a valid cron expression"),
        ({"timezone": "Europe/Atlantis"}, "timezone", "not an IANA time zone"),
        ({"cron": None, "interval_seconds": 0}, "interval_seconds", "greater than or equal to 1"),
        ({"cron": None}, "cron", "either cron or interval_seconds"),
        ({"interval_seconds": 60}, "cron", "either cron or interval_seconds"),
        ({"user_ids": []}, "user_ids", "Shorter than minimum"),
        ({"misfire_policy": "later"}, "misfire_policy", "Must be one of"),
        ({"notification_id": "abc"}, "notification_id", "either notification_id or notification"),
        ({"start_at": "2026-01-02T00:00:00Z", "end_at": "2026-01-01T00:00:00Z"}, "end_at", "after start_at"),
        ({"notification": {**CONTENT, "text": "{{ unknown }}"}}, "text", "unknown placeholder"),
    ],
)
async def test_invalid_schedules_are_400_naming_field_and_reason(api, admin, ctx, changes, field, reason):
    response = await api.post("/api/v1/schedules", {**DAILY, **changes}, auth=admin.header)
    assert response.status == 400, response.body
    messages = response.body["errors"][field]
    assert any(reason in message for message in messages), messages
    assert await ctx.store.schedules.count_documents({}) == 0


@pytest.mark.gen_test
async def test_patch_enable_disable_delete(api, admin):
    schedule = (await api.post("/api/v1/schedules", DAILY, auth=admin.header)).body
    path = f"/api/v1/schedules/{schedule['id']}"
    changed = await api.call("PATCH", path, {"cron": "0 18 * * *", "timezone": "America/New_York"}, auth=admin.header)
    assert changed.status == 200
    assert changed.body["cron"] == "0 18 * * *" and changed.body["next_run_at"] != schedule["next_run_at"]
    bad = await api.call("PATCH", path, {"timezone": "Nowhere/Else"}, auth=admin.header)
    assert bad.status == 400 and "timezone" in bad.body["errors"]
    disabled = await api.post(f"{path}/disable", auth=admin.header, headers={"Content-Type": "application/json"})
    assert disabled.body["enabled"] is False and disabled.body["next_run_at"] is None
    enabled = await api.post(f"{path}/enable", auth=admin.header, headers={"Content-Type": "application/json"})
    assert enabled.body["enabled"] is True and enabled.body["next_run_at"] is not None
    assert (await api.delete(path, auth=admin.header, headers={"Content-Type": "application/json"})).status == 204
    assert (await api.get(path, auth=admin.header)).status == 404


@pytest.mark.gen_test
async def test_clients_see_only_their_schedules(api, client_app, other_client_app):
    mine = (await api.post("/api/v1/schedules", DAILY, auth=client_app.header)).body
    assert (await api.get(f"/api/v1/schedules/{mine['id']}", auth=other_client_app.header)).status == 404
    assert (await api.get("/api/v1/schedules", auth=other_client_app.header)).body["items"] == []


@pytest.fixture
def settings_overrides():
    return {"scheduler_tick": 0.2, "schedule_min_interval": 1}


@pytest.mark.gen_test(timeout=60)
async def test_a_new_schedule_fires_on_the_next_tick(api, admin, ctx, end_user):
    await ctx.start_workers(consumers=False)
    try:
        schedule = (
            await api.post("/api/v1/schedules", {**DAILY, "cron": None, "interval_seconds": 1}, auth=admin.header)
        ).body

        async def two_finished_runs():
            runs = await api.get(f"/api/v1/schedules/{schedule['id']}/runs", auth=admin.header)
            done = [r for r in runs.body["items"] if r["status"] == "done"]
            return len(done) >= 2 and done

        # A third firing may be under way when we look; only finished ones are checked.
        runs = await eventually(two_finished_runs, timeout=20, message="two finished firings")
        assert all(r["recipients"] == 2 for r in runs)
        occurrences = await ctx.store.deliveries.distinct("occurrence", {"user_id": "ann"})
        assert len(occurrences) >= 2
    finally:
        await ctx.stop_workers()


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "changes, field",
    [
        ({"cron": None, "interval_seconds": 1.5}, "interval_seconds"),
        ({"cron": None, "interval_seconds": "60"}, "interval_seconds"),
        ({"cron": None, "interval_seconds": True}, "interval_seconds"),
        ({"misfire_grace_seconds": 10.5}, "misfire_grace_seconds"),
        ({"cron": "*/5 * * * * *"}, "cron"),
        ({"cron": "0 0 1 1 * 2027"}, "cron"),
        ({"cron": "0 0 0 1 1 * 2027"}, "cron"),
        ({"cron": "@hourly"}, "cron"),
        ({"cron": "0 0 31 2 *"}, "cron"),
        ({"timezone": "America"}, "timezone"),
        ({"timezone": "A" * 300}, "timezone"),
        ({"timezone": "../../../etc/passwd"}, "timezone"),
        ({"start_at": "9999-12-31T23:59:59-12:00"}, "start_at"),
        ({"start_at": "0001-01-01T00:00:00+01:00"}, "start_at"),
        ({"end_at": "1900-01-01T00:00:00Z"}, "end_at"),
    ],
)
async def test_hostile_periodicities_are_400_on_create_and_patch(api, admin, ctx, changes, field):
    response = await api.post("/api/v1/schedules", {**DAILY, **changes}, auth=admin.header)
    assert response.status == 400 and field in response.body["errors"], response.body
    assert await ctx.store.schedules.count_documents({}) == 0
    assert await ctx.store.notifications.count_documents({}) == 0
    schedule = (await api.post("/api/v1/schedules", DAILY, auth=admin.header)).body
    patched = await api.call("PATCH", f"/api/v1/schedules/{schedule['id']}", changes, auth=admin.header)
    assert patched.status == 400 and field in patched.body["errors"], patched.body


@pytest.mark.gen_test
async def test_a_disabled_schedule_says_so_and_cannot_be_enabled_if_it_never_fires(api, admin):
    never = (
        await api.post("/api/v1/schedules", {**DAILY, "cron": "0 0 31 2 *", "enabled": False}, auth=admin.header)
    ).body
    path = f"/api/v1/schedules/{never['id']}"
    enabled = await api.post(f"{path}/enable", auth=admin.header, headers={"Content-Type": "application/json"})
    assert enabled.status == 400 and "cron" in enabled.body["errors"]
    preview = await api.get(f"{path}/preview", auth=admin.header)
    assert preview.status == 200 and preview.body["enabled"] is False and preview.body["items"] == []
    daily = (await api.post("/api/v1/schedules", DAILY, auth=admin.header)).body
    active = (await api.get(f"/api/v1/schedules/{daily['id']}/preview?n=2", auth=admin.header)).body
    assert active["enabled"] is True and active["note"] is None and len(active["items"]) == 2
    await api.post(
        f"/api/v1/schedules/{daily['id']}/disable", auth=admin.header, headers={"Content-Type": "application/json"}
    )
    paused = (await api.get(f"/api/v1/schedules/{daily['id']}/preview?n=2", auth=admin.header)).body
    assert paused["enabled"] is False and "disabled" in paused["note"] and paused["items"] == active["items"]
