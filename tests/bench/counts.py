"""The detail of one notification with its counts, at 2,000 and 100,000 recipients: the real service's
`GET /api/v1/notifications/{id}` (maintained counts, one document) beside the aggregation over all the
notification's deliveries that the detail ran before (`Counts.exact`), on the same data.

The notification is created and delivered through the API with a few recipients, then its deliveries are
cloned (insert_many with new ids and recipients) up to the size; its counts document is dropped, so that the
first read counts it once and keeps it, as for a notification stored before counts were maintained.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from bson import ObjectId
from pymongo import MongoClient

from notifier.services.counts import Counts
from notifier.store import Store, connect

from .fanout import wait_consumers
from .harness import Infra, add_users, admin_header

SEED = 20
SAMPLES = 30
CLONE_CHUNK = 5000


def _grow(db, notification_id: ObjectId, size: int) -> None:
    template = db["deliveries"].find_one({"notification_id": notification_id}, {"_id": 0})
    have = db["deliveries"].count_documents({"notification_id": notification_id})
    for start in range(have, size, CLONE_CHUNK):
        end = min(size, start + CLONE_CHUNK)
        batch = [{**template, "_id": ObjectId(), "user_id": f"clone{i}"} for i in range(start, end)]
        db["deliveries"].insert_many(batch, ordered=False)
    db["counts"].delete_one({"_id": notification_id})


async def _old_aggregate(mongo_url: str, db_name: str, notification_id: ObjectId) -> list[float]:
    store = Store(connect(mongo_url, 5000), db_name)
    counts = Counts(store)
    samples = []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        await counts.exact(notification_id)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def run(infra: Infra, sizes: list[int]) -> list[dict]:
    service = infra.service(2)
    results = []
    try:
        service.start()
        auth = admin_header(service)
        users = add_users(service, auth, SEED)
        wait_consumers(service, auth, 2)
        status, created = service.call(
            "POST", "/api/v1/notifications", {"title": "t", "text": "x", "channel": "inbox", "recipients": users}, auth
        )
        assert status in (201, 202), created
        path = f"/api/v1/notifications/{created['id']}"
        while service.call("GET", path, None, auth)[1]["counts"].get("sent", 0) < SEED:
            time.sleep(0.2)
        db = MongoClient(infra.mongo_url, tz_aware=True)[service.env["MONGO_DB"]]
        notification_id = ObjectId(created["id"])
        for size in sorted(sizes):
            _grow(db, notification_id, size)
            first = time.perf_counter()
            assert service.call("GET", path, None, auth)[1]["counts"]["sent"] == size
            first_ms = (time.perf_counter() - first) * 1000
            api = []
            for _ in range(SAMPLES):
                started = time.perf_counter()
                status, _ = service.call("GET", path, None, auth)
                api.append((time.perf_counter() - started) * 1000)
                assert status == 200
            old = asyncio.run(_old_aggregate(infra.mongo_url, service.env["MONGO_DB"], notification_id))
            results.append(
                {
                    "size": size,
                    "api_p50_ms": statistics.median(api),
                    "first_read_ms": first_ms,
                    "old_aggregate_p50_ms": statistics.median(old),
                }
            )
            figure = results[-1]
            print(
                f"{size} deliveries: detail p50 {figure['api_p50_ms']:.1f} ms through the API (first read, counting "
                f"once: {first_ms:.0f} ms); the old aggregate alone {figure['old_aggregate_p50_ms']:.1f} ms",
                flush=True,
            )
        return results
    finally:
        service.stop()
        service.cleanup()
