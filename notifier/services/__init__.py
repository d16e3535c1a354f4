"""Business rules shared by the API, the admin, the scheduler and the consumers (no HTTP here)."""

from __future__ import annotations

from bson import ObjectId
from bson.errors import InvalidId

from ..errors import NotFound


def object_id(value: str, what: str) -> ObjectId:
    """The ObjectId in `value`; a malformed id names nothing, so it is a 404 like an unknown one."""
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise NotFound(f"{what} {value!r} not found") from None
