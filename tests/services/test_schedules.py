"""The scheduler against the real database with a clock the test moves: each occurrence fires exactly once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.errors import DuplicateKeyError

from notifier.access import Principal, Role
from notifier.clock import ManualClock
from notifier.errors import Invalid
from notifier.services.notifications import NotificationService
from notifier.services.schedules import ScheduleService

START = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
ADMIN = Principal(Role.ADMIN, "a1", "root")
CONTENT = {
    "title": "Daily digest",
    "text": "Hi {{ name }}",
    "channel": "inbox",
    "is_express": False,
    "content_id": None,
    "variables": {},
}


@pytest.fixture
def clock():
    return ManualClock(START)


def service(ctx, clock, instance="server") -> ScheduleService:
    notifications = NotificationService(ctx.store, ctx.settings, clock, ctx.publisher)
    return ScheduleService(ctx.store, ctx.settings, clock, notifications, instance)


@pytest.fixture
def schedules(ctx, clock):
    return service(ctx, clock)


async def occurrences(ctx) -> dict[str, int]:
    counted: dict[str, int] = {}
    async for delivery in ctx.store.deliveries.find({}):
        counted[delivery["occurrence"]] = counted.get(delivery["occurrence"], 0) + 1
    return counted


@pytest.mark.gen_test
async def test_interval_schedule_fires_each_occurrence_once(ctx, clock, schedules):
    schedule = await schedules.create(
        ADMIN, {"notification": CONTENT, "user_ids": ["a", "b", "a"], "interval_seconds": 600, "timezone": "UTC"}
    )
    assert schedule["next_run_at"] == START + timedelta(minutes=10)
    assert await schedules.fire_due() == 0
    clock.advance(600)
    assert await schedules.fire_due() == 1
    assert await schedules.fire_due() == 0
    clock.advance(600)
    assert await schedules.fire_due() == 1
    runs = await occurrences(ctx)
    assert sorted(runs.values()) == [2, 2]
    assert all(key.startswith(str(schedule["_id"]) + "@") for key in runs)
    stored = await ctx.store.schedules.find_one({"_id": schedule["_id"]})
    assert stored["fired"] == 2 and stored["last_run_at"] == START + timedelta(minutes=20)


@pytest.mark.gen_test
async def test_cron_fires_at_local_time(ctx, clock, schedules):
    schedule = await schedules.create(
        ADMIN, {"notification": CONTENT, "user_ids": ["a"], "cron": "30 10 * * *", "timezone": "Europe/Berlin"}
    )
    assert schedule["next_run_at"] == datetime(2026, 6, 1, 8, 30, tzinfo=UTC)  # 10:30 CEST
    clock.set(datetime(2026, 6, 1, 8, 30, 0, 500000, tzinfo=UTC))
    assert await schedules.fire_due() == 1
    assert list(await occurrences(ctx)) == [f"{schedule['_id']}@2026-06-01T08:30:00Z"]


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "zone, cron, start, fire_times",
    [
        (
            "Europe/Berlin",
            "30 2 * * *",
            datetime(2026, 3, 28, 12, tzinfo=UTC),
            ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
        ),
        (
            "Europe/Berlin",
            "30 2 * * *",
            datetime(2026, 10, 24, 12, tzinfo=UTC),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
        ),
        (
            "America/New_York",
            "30 2 * * *",
            datetime(2026, 3, 7, 12, tzinfo=UTC),
            ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"],
        ),
        (
            "America/New_York",
            "30 1 * * *",
            datetime(2026, 10, 31, 12, tzinfo=UTC),
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
        ),
    ],
)
async def test_dst_nights_fire_once(ctx, clock, schedules, zone, cron, start, fire_times):
    clock.set(start)
    schedule = await schedules.create(
        ADMIN, {"notification": CONTENT, "user_ids": ["a"], "cron": cron, "timezone": zone}
    )
    for _ in range(48 * 4):  # two days in 15-minute ticks
        clock.advance(900)
        await schedules.fire_due()
    assert sorted(key.split("@")[1] for key in await occurrences(ctx)) == fire_times
    assert (await ctx.store.schedules.find_one({"_id": schedule["_id"]}))["fired"] == 2


@pytest.mark.gen_test
async def test_two_instances_fire_each_occurrence_once(ctx, clock):
    first, second = service(ctx, clock, "one"), service(ctx, clock, "two")
    for i in range(20):
        await first.create(ADMIN, {"notification": CONTENT, "user_ids": [f"u{i}", "shared"], "interval_seconds": 60})
    for _ in range(5):
        clock.advance(60)
        fired = await asyncio.gather(first.fire_due(), second.fire_due())
        assert sum(fired) == 20
    counted = await occurrences(ctx)
    assert len(counted) == 100 and set(counted.values()) == {2}
    runs = await ctx.store.schedule_runs.find({}).to_list(None)
    assert len(runs) == 100 and {r["status"] for r in runs} == {"done"}


@pytest.mark.gen_test
async def test_missed_occurrences_follow_the_misfire_policy(ctx, clock, schedules):
    run_once = await schedules.create(
        ADMIN,
        {
            "notification": CONTENT,
            "user_ids": ["a"],
            "interval_seconds": 600,
            "misfire_policy": "run_once",
            "misfire_grace_seconds": 3600,
        },
    )
    skip = await schedules.create(
        ADMIN, {"notification": CONTENT, "user_ids": ["b"], "interval_seconds": 600, "misfire_policy": "skip"}
    )
    stale = await schedules.create(
        ADMIN,
        {
            "notification": CONTENT,
            "user_ids": ["c"],
            "interval_seconds": 7200,
            "misfire_policy": "run_once",
            "misfire_grace_seconds": 60,
        },
    )
    clock.advance(3 * 3600 + 30)  # the service was down for three hours
    await schedules.fire_due()
    fired = await occurrences(ctx)
    assert list(fired) == [f"{run_once['_id']}@2026-06-01T11:00:00Z"]
    for schedule, next_run in ((run_once, "11:10"), (skip, "11:10"), (stale, "12:00")):
        stored = await ctx.store.schedules.find_one({"_id": schedule["_id"]})
        assert stored["next_run_at"].strftime("%H:%M") == next_run
    assert (await ctx.store.schedules.find_one({"_id": skip["_id"]}))["skipped"] == 1
    assert (await ctx.store.schedules.find_one({"_id": stale["_id"]}))["skipped"] == 1


@pytest.mark.gen_test
async def test_edit_and_disable_take_effect_without_restart(ctx, clock, schedules):
    schedule = await schedules.create(ADMIN, {"notification": CONTENT, "user_ids": ["a"], "interval_seconds": 3600})
    changed = await schedules.update(ADMIN, str(schedule["_id"]), {"interval_seconds": 60})
    assert changed["next_run_at"] == START + timedelta(minutes=1)
    clock.advance(60)
    assert await schedules.fire_due() == 1
    await schedules.update(ADMIN, str(schedule["_id"]), {"enabled": False})
    clock.advance(600)
    assert await schedules.fire_due() == 0
    await schedules.update(ADMIN, str(schedule["_id"]), {"enabled": True, "user_ids": ["a", "z"]})
    clock.advance(60)
    assert await schedules.fire_due() == 1
    assert sorted((await occurrences(ctx)).values()) == [1, 2]


@pytest.mark.gen_test(timeout=180)
async def test_500_due_schedules_fire_once_in_one_tick(ctx, clock, schedules):
    for start in range(0, 500, 50):
        await asyncio.gather(
            *(
                schedules.create(
                    ADMIN,
                    {"notification_id": None, "user_ids": [f"u{i}"], "interval_seconds": 300}
                    | {"notification": CONTENT},
                )
                for i in range(start, start + 50)
            )
        )
    clock.advance(300)
    assert await schedules.fire_due() == 500
    assert await schedules.fire_due() == 0
    counted = await occurrences(ctx)
    assert len(counted) == 500 and set(counted.values()) == {1}


@pytest.mark.gen_test
async def test_a_stalled_firing_is_finished_by_another_instance(ctx, clock, schedules):
    """An instance died after claiming an occurrence: once the claim is old, another finishes it, adding
    only the deliveries that are missing."""
    schedule = await schedules.create(ADMIN, {"notification": CONTENT, "user_ids": ["a", "b"], "interval_seconds": 60})
    clock.advance(60)
    key = f"{schedule['_id']}@2026-06-01T08:01:00Z"
    await ctx.store.schedule_runs.insert_one(
        {
            "_id": key,
            "schedule_id": schedule["_id"],
            "status": "firing",
            "claimed_at": clock.now(),
            "at": clock.now(),
            "instance": "dead",
        }
    )
    notification = await ctx.store.notifications.find_one({"_id": schedule["notification_id"]})
    await schedules.notifications.add_deliveries(notification, ["a"], key)
    assert await schedules.fire_due() == 0  # the claim is fresh: someone is on it
    clock.advance(6 * 60)
    assert await schedules.fire_due() >= 1
    counted = await occurrences(ctx)
    assert counted[key] == 2


def stored_schedule(notification_id, **fields) -> dict:
    """A schedule document as an older version (or another writer) may have left it in the database."""
    return {
        "notification_id": notification_id,
        "user_ids": ["a"],
        "timezone": "UTC",
        "enabled": True,
        "misfire_policy": "run_once",
        "misfire_grace_seconds": 3600,
        "author": ADMIN.as_author(),
        "created_at": START,
        "updated_at": START,
        "last_run_at": None,
        "fired": 0,
        "skipped": 0,
        "cron": None,
        "interval_seconds": None,
        "start_at": None,
        "end_at": None,
        "next_run_at": START + timedelta(minutes=1),
        **fields,
    }


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "fields",
    [
        {"cron": "0 0 1 1 * 2026"},
        {"cron": "* * * * * *"},
        {"cron": "* * * * *", "timezone": "Mars/Olympus"},
        {"cron": "0 0 31 2 *"},
    ],
)
async def test_a_stored_schedule_that_cannot_go_on_is_ended_not_retried_every_tick(
    ctx, clock, schedules, fields, caplog
):
    notification = {**CONTENT, "author": ADMIN.as_author(), "created_at": START, "recipient_count": 0}
    await ctx.store.notifications.insert_one(notification)
    inserted = await ctx.store.schedules.insert_one(stored_schedule(notification["_id"], **fields))
    clock.advance(60)
    await schedules.fire_due()
    stored = await ctx.store.schedules.find_one({"_id": inserted.inserted_id})
    assert stored["next_run_at"] is None and stored["ended_at"] == clock.now() and stored["end_reason"]
    caplog.clear()
    clock.advance(60)
    assert await schedules.fire_due() == 0
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    preview = await schedules.preview(ADMIN, str(inserted.inserted_id), 3)
    assert preview["items"] == [] and preview["note"]


@pytest.mark.gen_test
async def test_a_schedule_past_its_end_is_ended(ctx, clock, schedules):
    schedule = await schedules.create(
        ADMIN,
        {"notification": CONTENT, "user_ids": ["a"], "interval_seconds": 60, "end_at": START + timedelta(minutes=2)},
    )
    for _ in range(3):
        clock.advance(60)
        await schedules.fire_due()
    stored = await ctx.store.schedules.find_one({"_id": schedule["_id"]})
    assert stored["fired"] == 2 and stored["next_run_at"] is None
    assert stored["ended_at"] == START + timedelta(minutes=2) and "end_at" in stored["end_reason"]


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "periodicity, field",
    [
        ({"cron": "0 0 31 2 *"}, "cron"),
        ({"interval_seconds": 59}, "interval_seconds"),
        ({"cron": "0 12 * * *", "end_at": START - timedelta(days=1), "start_at": START - timedelta(days=2)}, "end_at"),
        ({"interval_seconds": 600, "start_at": datetime(2199, 1, 1, tzinfo=UTC)}, "start_at"),
    ],
)
async def test_an_enabled_schedule_must_fire(ctx, clock, schedules, periodicity, field):
    with pytest.raises(Invalid) as raised:
        await schedules.create(ADMIN, {"notification": CONTENT, "user_ids": ["a"], **periodicity})
    assert field in raised.value.errors
    assert await ctx.store.notifications.count_documents({}) == 0


@pytest.mark.gen_test
async def test_enabling_a_schedule_that_never_fires_is_refused(ctx, clock, schedules):
    schedule = await schedules.create(
        ADMIN, {"notification": CONTENT, "user_ids": ["a"], "cron": "0 0 31 2 *", "enabled": False}
    )
    with pytest.raises(Invalid) as raised:
        await schedules.update(ADMIN, str(schedule["_id"]), {"enabled": True})
    assert "cron" in raised.value.errors
    preview = await schedules.preview(ADMIN, str(schedule["_id"]), 5)
    assert preview == {"enabled": False, "note": "disabled: it fires at these times only once enabled", "items": []}


@pytest.mark.gen_test
@pytest.mark.parametrize("refused", ["schedules", "notifications"])
async def test_a_failed_create_leaves_no_notification(ctx, clock, schedules, monkeypatch, refused):
    async def refuse(document, *args, **kwargs):
        raise DuplicateKeyError(f"injected: the {refused} document could not be stored")

    monkeypatch.setattr(getattr(ctx.store, refused), "insert_one", refuse)
    with pytest.raises(DuplicateKeyError):
        await schedules.create(ADMIN, {"notification": CONTENT, "user_ids": ["a"], "interval_seconds": 600})
    assert await ctx.store.notifications.count_documents({}) == 0
    assert await ctx.store.counts.count_documents({}) == 0


@pytest.mark.gen_test
async def test_orphans_of_an_interrupted_create_are_reaped(ctx, clock, schedules):
    """The server stopped between the two writes: the notification stays marked, and is deleted later."""
    kept = await schedules.create(ADMIN, {"notification": CONTENT, "user_ids": ["a"], "interval_seconds": 600})
    assert "pending_schedule_since" not in await ctx.store.notifications.find_one({"_id": kept["notification_id"]})
    orphan = {
        **CONTENT,
        "author": ADMIN.as_author(),
        "created_at": START,
        "recipient_count": 0,
        "scheduled": True,
        "pending_schedule_since": START,
    }
    await ctx.store.notifications.insert_one(orphan)
    attached = {
        **CONTENT,
        "author": ADMIN.as_author(),
        "created_at": START,
        "recipient_count": 0,
        "scheduled": True,
        "pending_schedule_since": START,
    }
    await ctx.store.notifications.insert_one(attached)
    await ctx.store.schedules.insert_one(stored_schedule(attached["_id"], interval_seconds=600))
    assert await schedules.reap_orphans() == 0  # too recent: a create may still be under way
    clock.advance(11 * 60)
    assert await schedules.reap_orphans() == 1
    left = {n["_id"]: n for n in await ctx.store.notifications.find({}).to_list(None)}
    assert set(left) == {kept["notification_id"], attached["_id"]}
    assert "pending_schedule_since" not in left[attached["_id"]]
