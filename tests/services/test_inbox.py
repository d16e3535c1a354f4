"""The inbox event log and item states (services/inbox.py), against the real database: numbers without
gaps under racing writers, counts folded exactly once, and changes whose events survive a crash."""

from __future__ import annotations

import asyncio

import pytest
from bson import ObjectId

from notifier.channels.base import Message
from notifier.errors import Conflict, NotFound
from notifier.services.inbox import InboxLog, Tally
from notifier.store import Store, connect


@pytest.fixture
def settings_overrides():
    return {}


async def _items(ctx, user_id: str, n: int, status: str = "sent", channel: str = "inbox") -> list[ObjectId]:
    notification_id = ObjectId()
    docs = [
        {
            "notification_id": notification_id,
            "user_id": user_id,
            "channel": channel,
            "is_express": False,
            "occurrence": str(i),
            "status": status,
            "created_at": ctx.clock.now(),
            "read_at": None,
        }
        for i in range(n)
    ]
    return list((await ctx.store.deliveries.insert_many(docs)).inserted_ids)


async def _seqs(ctx, user_id: str) -> list[int]:
    return [e["seq"] async for e in ctx.store.inbox_events.find({"user_id": user_id}).sort("seq", 1)]


def _message(delivery_id: ObjectId, user_id: str) -> Message:
    return Message(str(delivery_id), str(ObjectId()), user_id, user_id, "Title", "Text", user_id, "", False)


@pytest.mark.gen_test(timeout=60)
async def test_racing_writers_number_every_event_once_without_a_gap(ctx):
    """Two logs on two clients (as two processes would be) append 60 events for one user at once."""
    other = InboxLog(Store(connect(ctx.settings.mongo_url, 3000), ctx.settings.mongo_db), ctx.clock, 1)
    mine = InboxLog(ctx.store, ctx.clock, 1)
    try:
        await asyncio.gather(
            *(log.append("ann", "counts", Tally(1, 1, 0), {"n": i}) for i, log in enumerate([mine, other] * 30))
        )
        assert await _seqs(ctx, "ann") == list(range(1, 61))
        head = await mine.head("ann")
        assert (head["seq"], Tally.of(head)) == (60, Tally(60, 60, 0))
        counts = [e["counts"]["total"] async for e in ctx.store.inbox_events.find({"user_id": "ann"}).sort("seq", 1)]
        assert counts == list(range(1, 61))  # each event's counts are the head's as of that event
    finally:
        other.store.close()


@pytest.mark.gen_test
async def test_an_event_whose_writer_died_before_folding_it_is_folded_by_the_next(ctx):
    log = InboxLog(ctx.store, ctx.clock, 1)
    await log.append("ann", "counts", Tally(1, 1, 1), {})
    # A writer that stored event 2 and died before its fold:
    await ctx.store.inbox_events.insert_one(
        {"_id": "orphan", "user_id": "ann", "seq": 2, "type": "counts", "delta": Tally(2, 0, 0).dump()}
    )
    event = await log.append("ann", "counts", Tally(0, 0, 5), {})
    assert event is not None and event["seq"] == 3
    head = await log.head("ann")
    assert (head["seq"], Tally.of(head)) == (3, Tally(3, 1, 6))
    assert event["counts"] == Tally(3, 1, 6).dump()


@pytest.mark.gen_test
async def test_an_arrival_is_written_once_however_often_it_is_sent(ctx):
    [item] = await _items(ctx, "ann", 1, status="sending")
    log = InboxLog(ctx.store, ctx.clock, 1)
    await asyncio.gather(*(log.arrive(_message(item, "ann")) for _ in range(5)))
    events = await ctx.store.inbox_events.find({"user_id": "ann"}).to_list(None)
    assert [(e["_id"], e["type"], e["item"]["title"]) for e in events] == [(f"{item}:new", "new", "Title")]
    assert Tally.of(await log.head("ann")) == Tally(1, 1, 1)


@pytest.mark.gen_test(timeout=60)
async def test_arrivals_that_come_together_are_written_together_each_once(ctx):
    """A batch's arrivals share one write: two items of one user, one written already, and a number another
    writer takes meanwhile all end numbered without a gap, each item once, counts exact."""
    users = [f"u{i}" for i in range(20)]
    items = {user: await _items(ctx, user, 2, status="sending") for user in users}
    log = InboxLog(ctx.store, ctx.clock, 1)
    rival = InboxLog(ctx.store, ctx.clock, 1)
    await log.arrive(_message(items["u0"][0], "u0"))  # written already: the batch's repeat of it writes none
    await rival.head("u1")
    arrivals = [log.arrive(_message(item, user)) for user in users for item in items[user]]
    await asyncio.gather(*arrivals, rival.append("u1", "counts", Tally(), {}))  # takes u1's next number
    for user in users:
        events = await ctx.store.inbox_events.find({"user_id": user}).sort("seq", 1).to_list(None)
        arrived = [e["item"]["id"] for e in events if e["type"] == "new"]
        assert sorted(arrived) == sorted(str(i) for i in items[user]), user
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), user
        assert Tally.of(await log.head(user)) == Tally(2, 2, 2) == await log.count_items(user), user


@pytest.mark.gen_test
async def test_an_item_marked_before_it_arrives_arrives_with_its_marks(ctx):
    [item] = await _items(ctx, "ann", 1, status="queued")
    await ctx.inbox.change("ann", str(item), "read")  # not counted yet: nothing to take off
    assert await ctx.inbox.counts("ann") == {"total": 0, "unread": 0, "unseen": 0}
    await ctx.store.deliveries.update_one({"_id": item}, {"$set": {"status": "sending"}})
    with pytest.raises(Conflict):  # no change while it arrives: the arrival counts the marks it reads
        await ctx.inbox.change("ann", str(item), "seen")
    await ctx.inbox.events.arrive(_message(item, "ann"))
    assert await ctx.inbox.counts("ann") == {"total": 1, "unread": 0, "unseen": 1}


@pytest.mark.gen_test
async def test_changes_move_the_counts_and_a_repeat_changes_nothing(ctx):
    items = [str(i) for i in await _items(ctx, "ann", 3)]
    await _items(ctx, "ann", 1, channel="email")  # other channels are listed but never counted
    inbox = ctx.inbox
    assert await inbox.counts("ann") == {"total": 3, "unread": 3, "unseen": 3}  # counted from the items first
    await inbox.change("ann", items[0], "read")
    await inbox.change("ann", items[0], "read")
    await inbox.change("ann", items[1], "seen")
    assert await inbox.counts("ann") == {"total": 3, "unread": 2, "unseen": 2}
    await inbox.change("ann", items[0], "archived")  # it was read, not seen
    assert await inbox.counts("ann") == {"total": 2, "unread": 2, "unseen": 1}
    await inbox.change("ann", items[0], "unarchived")
    await inbox.change("ann", items[0], "unread")
    assert await inbox.counts("ann") == {"total": 3, "unread": 3, "unseen": 2}
    types = [e["type"] async for e in ctx.store.inbox_events.find({"user_id": "ann"}).sort("seq", 1)]
    assert types == ["read", "seen", "archived", "unarchived", "unread"]
    assert await inbox.events.count_items("ann") == Tally(3, 3, 2)


@pytest.mark.gen_test
async def test_someone_elses_item_is_not_found(ctx):
    [item] = await _items(ctx, "ann", 1)
    with pytest.raises(NotFound):
        await ctx.inbox.change("bob", str(item), "read")
    with pytest.raises(NotFound):
        await ctx.inbox.change("bob", "not-an-id", "read")
    assert await ctx.store.inbox_events.count_documents({}) == 0


@pytest.mark.gen_test
async def test_a_change_whose_event_was_lost_in_a_crash_writes_it_before_the_next(ctx, monkeypatch):
    items = [str(i) for i in await _items(ctx, "ann", 2)]
    await ctx.inbox.counts("ann")
    real_append = ctx.inbox.events.append

    async def crash(*args, **kwargs):
        raise ConnectionError("the server died between the state write and its event")

    monkeypatch.setattr(ctx.inbox.events, "append", crash)
    with pytest.raises(ConnectionError):
        await ctx.inbox.change("ann", items[0], "read")
    monkeypatch.setattr(ctx.inbox.events, "append", real_append)
    assert await ctx.inbox.counts("ann") == {"total": 2, "unread": 2, "unseen": 2}  # the event is owed
    await ctx.inbox.change("ann", items[0], "read")  # a repeat of the request
    assert await ctx.inbox.counts("ann") == {"total": 2, "unread": 1, "unseen": 2}
    await ctx.inbox.change("ann", items[0], "seen")
    events = [(e["_id"], e["type"]) async for e in ctx.store.inbox_events.find({"user_id": "ann"}).sort("seq", 1)]
    assert events == [(f"{items[0]}:1", "read"), (f"{items[0]}:2", "seen")]


@pytest.mark.gen_test
async def test_read_all_and_seen_all(ctx):
    items = [str(i) for i in await _items(ctx, "ann", 4)]
    [on_its_way] = await _items(ctx, "ann", 1, status="queued")
    [arriving] = await _items(ctx, "ann", 1, status="sending")
    await ctx.inbox.change("ann", items[0], "archived")
    assert await ctx.inbox.change_all("ann", "read_all") == 3
    assert await ctx.inbox.counts("ann") == {"total": 3, "unread": 0, "unseen": 3}
    assert await ctx.inbox.change_all("ann", "read_all") == 0
    assert await ctx.inbox.change_all("ann", "seen_all") == 3
    assert await ctx.inbox.counts("ann") == {"total": 3, "unread": 0, "unseen": 0}
    await ctx.store.deliveries.update_one({"_id": on_its_way}, {"$set": {"status": "sending"}})
    await ctx.inbox.events.arrive(_message(on_its_way, "ann"))
    assert await ctx.inbox.counts("ann") == {"total": 4, "unread": 0, "unseen": 0}  # it arrived read and seen
    assert (await ctx.store.deliveries.find_one({"_id": arriving}))["read_at"] is None  # passed by
    await ctx.inbox.change("ann", items[0], "unarchived")
    assert await ctx.inbox.counts("ann") == {"total": 5, "unread": 0, "unseen": 0}
    assert await ctx.inbox.events.count_items("ann") == Tally(5, 0, 0)


@pytest.mark.gen_test(timeout=120)
async def test_racing_changes_of_one_inbox_leave_counts_equal_to_a_recount(ctx):
    """Single changes, bulk changes and arrivals of one user's items at once, many rounds: the counts folded
    from the events always equal the counts of the items themselves."""
    items = [str(i) for i in await _items(ctx, "ann", 8)]
    arriving = await _items(ctx, "ann", 10, status="queued")
    inbox = ctx.inbox
    for round_ in range(10):
        changes = ["read", "unread", "seen", "archived", "unarchived"]
        work = [inbox.change("ann", item, changes[(round_ + n) % len(changes)]) for n, item in enumerate(items)]
        work.append(inbox.change_all("ann", "read_all" if round_ % 2 else "seen_all"))
        # One arrives meanwhile, as a consumer has it: taken (sending), its arrival, then sent.
        await ctx.store.deliveries.update_one({"_id": arriving[round_]}, {"$set": {"status": "sending"}})
        work.append(inbox.events.arrive(_message(arriving[round_], "ann")))
        await asyncio.gather(*work)
        await ctx.store.deliveries.update_one({"_id": arriving[round_]}, {"$set": {"status": "sent"}})
        assert Tally.of(await inbox.events.head("ann")) == await inbox.events.count_items("ann"), round_
    assert await _seqs(ctx, "ann") == list(range(1, len(await _seqs(ctx, "ann")) + 1))


@pytest.mark.gen_test
async def test_recount_sets_counts_right_with_an_event(ctx):
    await _items(ctx, "ann", 2)
    log = ctx.inbox.events
    await log.head("ann")
    await ctx.store.inbox_heads.update_one({"_id": "ann"}, {"$set": {"unread": 7}})  # a bulk change's lost event
    event = await log.recount("ann")
    assert event is not None and event["type"] == "counts" and event["delta"]["unread"] == -5
    assert await ctx.inbox.counts("ann") == {"total": 2, "unread": 2, "unseen": 2}
    assert await log.recount("ann") is None


@pytest.mark.gen_test
async def test_an_event_gone_with_its_days_is_never_written_again(ctx):
    """An item read long ago (its event expired from the log) and changed again owes nothing old."""
    [item] = [str(i) for i in await _items(ctx, "ann", 1)]
    await ctx.inbox.change("ann", item, "read")
    await ctx.store.inbox_events.delete_many({})  # as the TTL index does after INBOX_EVENTS_DAYS
    await ctx.inbox.change("ann", item, "archived")
    assert [e["type"] async for e in ctx.store.inbox_events.find()] == ["archived"]
    assert await ctx.inbox.counts("ann") == {"total": 0, "unread": 0, "unseen": 0}
    assert await ctx.inbox.events.count_items("ann") == Tally()


@pytest.mark.gen_test
async def test_other_channels_items_change_but_write_no_inbox_event(ctx):
    [email] = [str(i) for i in await _items(ctx, "ann", 1, channel="email")]
    changed = await ctx.inbox.change("ann", email, "read")
    assert changed["read_at"] is not None
    assert await ctx.store.inbox_events.count_documents({}) == 0


@pytest.mark.gen_test
async def test_a_stream_starting_folds_what_a_dead_writer_left(ctx):
    log = ctx.inbox.events
    await log.append("ann", "counts", Tally(1, 1, 1), {})
    await ctx.store.inbox_events.insert_one(
        {"_id": "orphan", "user_id": "ann", "seq": 2, "type": "counts", "delta": Tally(1, 0, 0).dump()}
    )
    head = await log.settled_head("ann")
    assert (head["seq"], Tally.of(head)) == (2, Tally(2, 1, 1))
