"""Newest-first pages walked in `_id` windows are the pages of the one sorted query, cursor for cursor."""

from __future__ import annotations

import os
import time

import pytest
from bson import ObjectId

from notifier.access import Principal, Role
from notifier.services.paging import newest_first

NOW = time.time()
# Ages in seconds: inside the first window, on its edges, in later (wider) ones, and past the last window
# (read by the unbounded last query).
AGES = [0, 0.5, 1, 2, 3, 7, 9, 31, 100, 500, 3600, 5000, 86400, 30 * 86400, 400 * 86400, 3000 * 86400, 9000 * 86400]


def oid(age: float) -> ObjectId:
    return ObjectId(int(NOW - age).to_bytes(4, "big") + os.urandom(8))


async def all_pages(collection, query: dict, limit: int, windowed: bool) -> list[tuple[list, str | None]]:
    pages, cursor = [], None
    while True:
        page = await newest_first(collection, query, limit, cursor, windowed=windowed, now=NOW)
        pages.append(([d["_id"] for d in page.items], page.next_cursor))
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


@pytest.mark.gen_test
async def test_windowed_pages_are_the_sorted_query_pages(ctx):
    collection = ctx.store.db["paging_probe"]
    docs = [{"_id": oid(age), "k": "a" if i % 3 else "b"} for age in AGES for i in range(3)]
    docs.append({"_id": oid(-120), "k": "a"})  # from a clock ahead of ours
    await collection.insert_many(docs)
    for query in ({}, {"k": "b"}, {"k": "none"}):
        for limit in (2, 5, 100):
            windowed = await all_pages(collection, query, limit, windowed=True)
            assert windowed == await all_pages(collection, query, limit, windowed=False), (query, limit)
    everything = [d for ids, _ in await all_pages(collection, {}, 5, windowed=True) for d in ids]
    assert everything == sorted((d["_id"] for d in docs), reverse=True)


@pytest.mark.gen_test
async def test_a_cursor_of_either_walk_continues_the_other(ctx):
    collection = ctx.store.db["paging_probe"]
    await collection.insert_many([{"_id": oid(age)} for age in AGES])
    first = await newest_first(collection, {}, 4, None, windowed=True, now=NOW)
    then = await newest_first(collection, {}, 4, first.next_cursor, windowed=False)
    again = await newest_first(collection, {}, 4, first.next_cursor, windowed=True, now=NOW)
    assert [d["_id"] for d in then.items] == [d["_id"] for d in again.items]
    assert then.next_cursor == again.next_cursor


def notification(author: Principal, age: float) -> dict:
    return {"_id": oid(age), "title": f"t{age}", "channel": "inbox", "is_express": False, "author": author.as_author()}


@pytest.mark.gen_test
async def test_a_client_application_pages_through_its_own_only(ctx):
    mine = Principal(Role.CLIENT, "c1", "shop")
    other = Principal(Role.CLIENT, "c2", "blog")
    admin = Principal(Role.ADMIN, "a1", "root")
    await ctx.store.notifications.insert_many(
        [notification(p, age + shift) for age in AGES for p, shift in ((mine, 0), (other, 0.2), (admin, 0.4))]
    )

    async def walk(principal, **filters):
        seen, cursor = [], None
        while True:
            page = await ctx.notifications.page(principal, {"limit": 3, "cursor": cursor, **filters})
            seen += page.items
            if not page.next_cursor:
                return seen
            cursor = page.next_cursor

    own = await walk(mine)
    assert len(own) == len(AGES) and {n["author"]["id"] for n in own} == {"c1"}
    assert [n["_id"] for n in own] == sorted((n["_id"] for n in own), reverse=True)
    assert await walk(mine, author="c2") == []  # a filter narrows, never widens
    assert len(await walk(admin)) == 3 * len(AGES)
    assert {n["author"]["id"] for n in await walk(admin, author="c2")} == {"c2"}


@pytest.mark.gen_test
async def test_an_inbox_pages_as_before(ctx):
    n = {"_id": oid(10**8), "title": "hi", "text": "x", "channel": "inbox", "is_express": False, "variables": {}}
    await ctx.store.notifications.insert_one(n)
    deliveries = [
        {"_id": oid(age), "notification_id": n["_id"], "user_id": user, "occurrence": str(age), "channel": "inbox"}
        for age in AGES
        for user in ("alice", "bob")
    ]
    await ctx.store.deliveries.insert_many(deliveries)
    seen, cursor = [], None
    while True:
        page = await ctx.users.inbox("alice", 4, cursor)
        seen += [d["_id"] for d in page.items]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert seen == sorted((d["_id"] for d in deliveries if d["user_id"] == "alice"), reverse=True)
