"""The event log (services/events.py) against the real database: each state change of a tracked delivery,
whichever write makes it (a batch's outcome, journal replay, a cancel, a claim that meets a cancel, an inbox
read), becomes exactly one event; a run repeated, a run that died before moving its cursor, and a write that
became visible late change nothing of that; `notification.completed` comes once, after the last change."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

import pytest
from bson import ObjectId

from notifier.access import Principal, Role
from notifier.services import events as events_module
from notifier.services.events import FIRST_ID, STATE_ID, event_id_after, oldest_first
from notifier.services.outcomes import OutcomeKind, decide
from notifier.services.paging import floor_id

CLIENT = Principal(Role.CLIENT, "client-1", "Shop")
OTHER = Principal(Role.CLIENT, "client-2", "CRM")
NOTE = {"title": "Hi", "text": "There", "channel": "inbox", "is_express": False, "content_id": None}


@pytest.fixture
def settings_overrides():
    return {"event_late_window": 0}


async def tracked(ctx, recipients: list[str], author: Principal = CLIENT) -> tuple[dict, list[dict]]:
    """A notification of `author`, who has an event endpoint, and its deliveries (pending)."""
    if await ctx.store.event_endpoints.find_one({"author.id": author.id}) is None:
        await ctx.event_endpoints.create(author, {"url": "https://example.com/hook"})
    notification, _ = await ctx.notifications.create(author, {**NOTE, "recipients": recipients})
    deliveries = await ctx.store.deliveries.find({"notification_id": notification["_id"]}).to_list(None)
    return notification, deliveries


async def claim(ctx, deliveries: list[dict], owner: str = "c-1") -> str:
    token = secrets.token_hex(8)
    ids = [d["_id"] for d in deliveries]
    taken = await ctx.deliveries.claim(ids, owner, ctx.clock.now(), 60, token)
    assert sorted(taken) == sorted(ids)
    return token


async def finish(ctx, token: str, deliveries: list[dict], kind: OutcomeKind, **decided) -> None:
    now = ctx.clock.now()
    decision = decide(kind, now, **decided)
    await ctx.deliveries.finish(token, [(d["_id"], decision.update(tracked=True)) for d in deliveries])
    # What a consumer's batch does next: its counts (here recounted rather than tallied).
    await ctx.deliveries.counts.recount(list({d["notification_id"] for d in deliveries}), now)


async def events(ctx, author: Principal = CLIENT) -> list[dict]:
    return await ctx.event_log.feed(author, None, None, 5000)


async def delivery_events(ctx) -> list[tuple[str, str]]:
    return sorted((event["user_id"], event["type"]) for event in await events(ctx) if "user_id" in event)


async def collect_until_quiet(ctx) -> None:
    while await ctx.event_log.collect():
        pass


@pytest.mark.gen_test(timeout=60)
async def test_every_kind_of_state_write_records_one_event_and_repeated_runs_add_none(ctx):
    notification, deliveries = await tracked(ctx, ["a", "b", "c", "d", "e", "f"])
    a, b, c, d, e, f = deliveries
    assert all(delivery.get("events") is True for delivery in deliveries)
    token = await claim(ctx, [a, b, c])
    await finish(ctx, token, [a], OutcomeKind.SENT)
    await finish(ctx, token, [b], OutcomeKind.SKIPPED, reason="no_contact")
    await finish(ctx, token, [c], OutcomeKind.QUIET, until=ctx.clock.now() + timedelta(hours=1))
    # Journal replay of a dead consumer: one it sent, one interrupted.
    dead = await claim(ctx, [d, e], owner="dead-1")
    await ctx.deliveries.recover("dead-1", {str(d["_id"]): dead}, {str(e["_id"]): dead}, ctx.clock.now())
    # The sender's cancel of the last one, which was waiting.
    assert await ctx.deliveries.cancel(notification["_id"], ["f"], ctx.clock.now()) == 1
    await ctx.inbox.change("a", str(a["_id"]), "read")
    for _ in range(3):
        await ctx.event_log.collect()
    found = {(event["user_id"], event["type"], event.get("reason")) for event in await events(ctx)}
    assert found == {
        ("a", "delivery.sent", None),
        ("a", "delivery.read", None),
        ("b", "delivery.skipped", "no_contact"),
        ("c", "delivery.deferred", "quiet_hours"),
        ("d", "delivery.sent", None),
        ("e", "delivery.failed", "interrupted"),
        ("f", "delivery.cancelled", None),
    }
    assert len(await events(ctx)) == 7
    assert await events(ctx, OTHER) == []


@pytest.mark.gen_test(timeout=60)
async def test_a_claim_that_meets_a_cancel_records_the_cancel_once_and_untracked_deliveries_record_nothing(ctx):
    notification, [a] = await tracked(ctx, ["a"])
    token = await claim(ctx, [a])
    assert await ctx.deliveries.cancel(notification["_id"], None, ctx.clock.now()) == 0  # claimed: requested
    await finish(ctx, token, [a], OutcomeKind.RELEASED)  # the consumer let it go unsent
    assert await ctx.deliveries.claim([a["_id"]], "c-2", ctx.clock.now(), 60, "t2") == []
    await ctx.event_log.collect()
    assert [event["type"] for event in await events(ctx)] == ["delivery.cancelled", "notification.completed"]
    # A notification whose author has no endpoint: its writes carry no event entries at all.
    plain, _ = await ctx.notifications.create(OTHER, {**NOTE, "recipients": ["x"]})
    assert plain.get("events") is None
    await ctx.deliveries.cancel(plain["_id"], None, ctx.clock.now())
    stored = await ctx.store.deliveries.find_one({"notification_id": plain["_id"]})
    assert stored["status"] == "cancelled" and "event_log" not in stored and "event_at" not in stored


@pytest.mark.gen_test(timeout=60)
async def test_a_run_that_died_before_moving_its_cursor_and_a_late_visible_write_publish_each_change_once(ctx):
    _, [a, b] = await tracked(ctx, ["a", "b"])
    token = await claim(ctx, [a, b])
    await finish(ctx, token, [a], OutcomeKind.SENT)
    await ctx.event_log.collect()
    # The run died after storing its events, before its cursor moved: the next run reads them again.
    behind = [a["created_at"] - timedelta(seconds=5), FIRST_ID]
    await ctx.store.meta.update_one({"_id": STATE_ID}, {"$set": {"cursor": behind}})
    await finish(ctx, token, [b], OutcomeKind.SENT)
    await ctx.event_log.collect()
    assert await delivery_events(ctx) == [("a", "delivery.sent"), ("b", "delivery.sent")]
    # A write that became visible after the cursor passed its instant (a concurrent writer on MongoDB): the
    # late window reads it.
    state = await ctx.store.meta.find_one({"_id": STATE_ID})
    late = await ctx.store.deliveries.find_one({"_id": a["_id"]})
    entry = {"id": str(ObjectId()), "type": "delivery.read", "at": ctx.clock.now(), "reason": None}
    await ctx.store.deliveries.update_one(
        {"_id": a["_id"]},
        {"$push": {"event_log": entry}, "$set": {"event_at": state["cursor"][0] - timedelta(seconds=10)}},
    )
    await ctx.event_log.collect()
    assert len(await delivery_events(ctx)) == 2  # not yet: no late window in this test's settings
    # The trailing cursor, late_window behind the first, reads it.
    trailing = [state["cursor"][0] - timedelta(seconds=60), FIRST_ID]
    await ctx.store.meta.update_one({"_id": STATE_ID}, {"$set": {"late": trailing}})
    ctx.event_log.late_window = timedelta(seconds=5)
    for _ in range(events_module.TRAILING_EVERY):  # an idle run reads the trailing cursor every so many
        await ctx.event_log.collect()
    found = await delivery_events(ctx)
    assert found == [("a", "delivery.read"), ("a", "delivery.sent"), ("b", "delivery.sent")]
    assert late["event_log"][0]["type"] == "delivery.sent"


@pytest.mark.gen_test(timeout=60)
async def test_the_trailing_cursor_stores_again_only_what_this_process_did_not_publish(ctx, monkeypatch):
    ctx.event_log.late_window = timedelta(seconds=5)
    _, [a, b] = await tracked(ctx, ["a", "b"])
    await finish(ctx, await claim(ctx, [a, b]), [a, b], OutcomeKind.SENT)
    await ctx.event_log.collect()
    store_new = ctx.event_log._store_new
    offered: list[str] = []

    async def recording(candidates):
        offered.extend(c["key"] for c in candidates)
        return await store_new(candidates)

    monkeypatch.setattr(ctx.event_log, "_store_new", recording)
    state = await ctx.store.meta.find_one({"_id": STATE_ID})
    behind = [state["cursor"][0] - timedelta(seconds=60), FIRST_ID]
    await ctx.store.meta.update_one({"_id": STATE_ID}, {"$set": {"late": behind}})
    for _ in range(events_module.TRAILING_EVERY):
        await ctx.event_log.collect()
    assert offered == []  # both read again, both published by this process: nothing stored twice
    entry = {"id": str(ObjectId()), "type": "delivery.read", "at": ctx.clock.now(), "reason": None}
    await ctx.store.deliveries.update_one(  # visible late, after the first cursor passed its instant
        {"_id": a["_id"]},
        {"$push": {"event_log": entry}, "$set": {"event_at": state["cursor"][0] - timedelta(seconds=10)}},
    )
    await ctx.store.meta.update_one({"_id": STATE_ID}, {"$set": {"late": behind}})
    for _ in range(events_module.TRAILING_EVERY):
        await ctx.event_log.collect()
    assert {key.split(":")[0] for key in offered} == {str(a["_id"])}  # only a's log is read whole and stored
    assert f"{a['_id']}:{entry['id']}" in offered
    assert await delivery_events(ctx) == [("a", "delivery.read"), ("a", "delivery.sent"), ("b", "delivery.sent")]


@pytest.mark.gen_test(timeout=60)
async def test_racing_runs_of_two_instances_store_each_event_once(ctx):
    _, deliveries = await tracked(ctx, [f"u{i}" for i in range(40)])
    token = await claim(ctx, deliveries)
    await finish(ctx, token, deliveries, OutcomeKind.SENT)
    other = type(ctx.event_log)(ctx.store, ctx.clock, 1, 0)
    await asyncio.gather(ctx.event_log.collect(), other.collect(), ctx.event_log.collect())
    stored = await events(ctx)
    assert len(stored) == 41 and len({event["key"] for event in stored}) == 41  # 40 sent, 1 completed


@pytest.mark.gen_test(timeout=60)
async def test_completed_comes_once_after_the_last_change_and_a_crash_before_it_is_made_good_by_the_sweep(ctx):
    notification, [a, b] = await tracked(ctx, ["a", "b"])
    token = await claim(ctx, [a, b])
    await finish(ctx, token, [a], OutcomeKind.SENT)
    await ctx.event_log.collect()
    assert [event["type"] for event in await events(ctx)] == ["delivery.sent"]  # b is being sent
    await finish(ctx, token, [b], OutcomeKind.FAILED, reason="rejected", error="550")
    await collect_until_quiet(ctx)
    found = await events(ctx)
    assert [event["type"] for event in found] == ["delivery.sent", "delivery.failed", "notification.completed"]
    assert found[-1]["counts"] == {"sent": 1, "failed": 1}
    await collect_until_quiet(ctx)
    assert len(await events(ctx)) == 3
    # A process died between the last change's event and the completion check: the sweep completes it.
    second, [c] = await tracked(ctx, ["c"])
    token = await claim(ctx, [c])
    await finish(ctx, token, [c], OutcomeKind.SENT)
    await ctx.event_log.collect()
    completion = await ctx.store.events.find_one({"key": f"{second['_id']}:completed"})
    await ctx.store.events.delete_one({"_id": completion["_id"]})
    await ctx.store.notifications.update_one({"_id": second["_id"]}, {"$set": {"events_open": True}})
    ctx.event_log._runs = 39  # the next run is a sweep's (every COMPLETION_SWEEP_EVERY)
    await ctx.event_log.collect()
    assert await ctx.store.events.count_documents({"key": f"{second['_id']}:completed"}) == 1


@pytest.mark.gen_test(timeout=60)
async def test_event_ids_rise_across_instances_and_the_feed_walks_sparse_history_in_order(ctx):
    ahead = ObjectId.from_datetime(ctx.clock.now() + timedelta(hours=1))
    assert event_id_after(ahead) > ahead and event_id_after(None) < ahead
    now = ctx.clock.now().timestamp()
    docs = [
        {"_id": event_id_after(floor_id(now - age)), "n": n, "author": {"kind": "client", "id": "x"}}
        for n, age in enumerate([86400 * 20, 86400 * 3, 3600, 600, 5, 1])
    ]
    await ctx.store.events.insert_many([{**doc, "key": str(doc["n"])} for doc in docs])
    walked = await oldest_first(ctx.store.events, {"author.id": "x"}, 4, None, now - 86400 * 30, now)
    assert [doc["n"] for doc in walked] == [0, 1, 2, 3]
    rest = await oldest_first(ctx.store.events, {"author.id": "x"}, 10, walked[-1]["_id"], 0, now)
    assert [doc["n"] for doc in rest] == [4, 5]


@pytest.mark.gen_test(timeout=90)
async def test_more_changes_at_one_instant_than_a_read_takes_are_all_published_before_the_completion(ctx, monkeypatch):
    monkeypatch.setattr(events_module, "READ_LIMIT", 40)
    notification, deliveries = await tracked(ctx, [f"u{i}" for i in range(130)])
    await ctx.event_log.collect()
    # One cancel: one update, one database instant ($$NOW) for all 130 of them.
    assert await ctx.deliveries.cancel(notification["_id"], None, ctx.clock.now()) == 130
    await ctx.deliveries.counts.recount([notification["_id"]], ctx.clock.now())
    instants = await ctx.store.deliveries.distinct("event_at", {"notification_id": notification["_id"]})
    later, [x] = await tracked(ctx, ["x"])
    token = await claim(ctx, [x])
    await finish(ctx, token, [x], OutcomeKind.SENT)
    await collect_until_quiet(ctx)
    found = await events(ctx)
    cancelled = [e for e in found if e["notification_id"] == notification["_id"]]
    assert len(instants) == 1 and [e["type"] for e in cancelled] == ["delivery.cancelled"] * 130 + [
        "notification.completed"
    ]
    assert len({e["delivery_id"] for e in cancelled[:-1]}) == 130
    assert [e["type"] for e in found if e["notification_id"] == later["_id"]] == [
        "delivery.sent",
        "notification.completed",
    ]


@pytest.mark.gen_test(timeout=60)
async def test_an_entry_whose_event_expired_is_not_published_again_and_a_read_is_one_event_once(ctx):
    _, [a, b] = await tracked(ctx, ["a", "b"])
    token = await claim(ctx, [a])
    await finish(ctx, token, [a], OutcomeKind.SENT)
    await ctx.event_log.collect()
    # Forty days later its event is gone (EVENTS_DAYS), the delivery not (deliveries are kept longer).
    await ctx.store.deliveries.update_one(
        {"_id": a["_id"]}, {"$set": {"event_log.0.at": ctx.clock.now() - timedelta(days=40)}}
    )
    await ctx.store.events.delete_many({"delivery_id": a["_id"]})
    for change in ("read", "unread", "read"):
        await ctx.inbox.change("a", str(a["_id"]), change)
    await ctx.inbox.change_all("b", "read_all")  # b is still pending: a mark, not a read of something sent
    await collect_until_quiet(ctx)
    assert await delivery_events(ctx) == [("a", "delivery.read")]
