"""Keyset pagination: stable pages without counting or skipping, whatever the collection size."""

from __future__ import annotations

import base64
import binascii
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


async def newest_first(
    collection: AsyncIOMotorCollection, query: dict, limit: int, cursor: str | None, projection: dict | None = None
) -> Page:
    """Documents newest first (ObjectId order), `limit` at a time."""
    query = dict(query)
    if cursor:
        try:
            query["_id"] = {"$lt": ObjectId(_decode(cursor))}
        except InvalidId:
            raise Invalid.field("cursor", "is not a cursor from this list") from None
    items = await collection.find(query, projection).sort("_id", -1).limit(limit + 1).to_list(limit + 1)
    more = len(items) > limit
    items = items[:limit]
    return Page(items, _encode(str(items[-1]["_id"])) if more else None)


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
