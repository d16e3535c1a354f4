"""The store's indexes against the real database: what an earlier version created and this one replaced goes."""

from __future__ import annotations

import pytest
from pymongo import ASCENDING

from notifier.store import RETIRED_INDEXES


@pytest.mark.gen_test(timeout=30)
async def test_indexes_an_earlier_version_made_are_dropped_and_theirs_made(ctx):
    deliveries = ctx.store.deliveries
    await deliveries.create_index(
        [("event_at", ASCENDING), ("_id", ASCENDING)], partialFilterExpression={"events": True}, name="events"
    )
    assert "events" in RETIRED_INDEXES["deliveries"]
    await ctx.store.ensure_indexes()
    names = set(await deliveries.index_information())
    assert "events" not in names and "event_changes" in names
    await ctx.store.ensure_indexes()  # again, with nothing to drop
    assert set(await deliveries.index_information()) == names
