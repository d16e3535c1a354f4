"""Keyset pagination: stable pages without counting or skipping, whatever the collection size."""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from motor.motor_asyncio import AsyncIOMotorCollection

from ..errors import Invalid


@dataclass
class Page:
    items: list[dict]
    next_cursor: str | None

    def dump(self, schema) -> dict:
        return {"items": schema.dump(self.items, many=True), "next_cursor": self.next_cursor}


def _encode(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _decode(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Invalid.field("cursor", "is not a cursor from this list") from None


# Newest-first pages walk back from the cursor in `_id` windows, so that no query materializes more than a
# window's matches: SecantusDB (the embedded database) collects every match of a sorted query before it sorts
# and limits, so `find(q).sort(_id, -1).limit(n)` costs every match of `q`, however small the page. A window
# starts at FIRST_WINDOW seconds and widens GROWTH times per query until the page is full; after WINDOWS
# queries the rest of the history is read in one last query without a lower bound, so a page is the same
# whatever the windows (they only bound the cost). Each window query has the shape of an index (equalities,
# then an `_id` range) whenever the caller's filter is one: `_id` and the equalities of `notifications`'
# `newest`/`author_newest` and `deliveries`' `inbox` indexes (store.py).
FIRST_WINDOW = 2.0
GROWTH = 4
WINDOWS = 14  # 2 s * 4**13, about 4 years, before the unbounded last query


def _cursor_id(cursor: str) -> ObjectId:
    try:
        return ObjectId(_decode(cursor))
    except InvalidId:
        raise Invalid.field("cursor", "is not a cursor from this list") from None


def seconds_of(oid: ObjectId) -> float:
    """The second an ObjectId was made in (since the epoch)."""
    return float(int.from_bytes(oid.binary[:4], "big"))


def floor_id(seconds: float) -> ObjectId:
    """The smallest ObjectId of the second `seconds` (since the epoch), clamped to what an id can hold."""
    return ObjectId(int(min(max(seconds, 0), 2**32 - 1)).to_bytes(4, "big") + bytes(8))


async def newest_first(
    collection: AsyncIOMotorCollection,
    query: dict,
    limit: int,
    cursor: str | None,
    projection: dict | None = None,
    *,
    windowed: bool = False,
    now: float | None = None,
) -> Page:
    """Documents newest first (ObjectId order), `limit` at a time.

    With `windowed`, in `_id` windows (above): for a filter that an index ending in `_id` serves exactly.
    Without, in one query: small collections, and filters no such index serves (each window would then cost
    as much as the whole). `now` (seconds since the epoch) is where a first page's walk starts, for tests;
    ids newer than it are found as well."""
    wanted = limit + 1
    before = _cursor_id(cursor) if cursor else None
    if not windowed or any(key.startswith("$") or key == "_id" for key in query):
        # A top-level operator ($and of a filter and the visibility rule) or the caller's own `_id`
        # condition: no index shape to give the windows, so one query.
        bounded = dict(query)
        if before is not None:
            bounded["_id"] = {"$lt": before}
        items = await collection.find(bounded, projection).sort("_id", -1).limit(wanted).to_list(wanted)
    else:
        items = await _walk(collection, query, wanted, before, projection, now)
    more = len(items) > limit
    items = items[:limit]
    return Page(items, _encode(str(items[-1]["_id"])) if more else None)


async def _walk(
    collection: AsyncIOMotorCollection,
    query: dict,
    wanted: int,
    before: ObjectId | None,
    projection: dict | None,
    now: float | None,
) -> list[dict]:
    top = seconds_of(before) if before is not None else (time.time() if now is None else now)
    upper = before  # exclusive; None: no upper bound (ids from a clock ahead of ours are found too)
    width = FIRST_WINDOW
    start = top
    items: list[dict] = []
    for step in range(WINDOWS + 1):
        window: dict = {}
        if step < WINDOWS:
            start = start - width
            window["$gte"] = floor_id(start)
        if upper is not None:
            window["$lt"] = upper
        # `_id` first: where no compound index fits, SecantusDB rides the first clause an index serves.
        bounded = {"_id": window, **query} if window else dict(query)
        needed = wanted - len(items)
        found = await collection.find(bounded, projection).sort("_id", -1).limit(needed).to_list(needed)
        items.extend(found)
        if len(items) >= wanted or step == WINDOWS:
            break
        upper = window["$gte"]
        width *= GROWTH
    return items


async def by_key(collection: AsyncIOMotorCollection, query: dict, key: str, limit: int, cursor: str | None) -> Page:
    """Documents in ascending order of a unique string `key`, `limit` at a time."""
    query = dict(query)
    if cursor:
        query[key] = {"$gt": _decode(cursor)}
    items = await collection.find(query).sort(key, 1).limit(limit + 1).to_list(limit + 1)
    more = len(items) > limit
    items = items[:limit]
    last: Any = items[-1][key] if items else None
    return Page(items, _encode(last) if more else None)
