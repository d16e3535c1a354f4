"""List pages against a growing history: the real service's notification list (an admin's and a client
application's) and a user's inbox page, at 10k, 100k, ... deliveries, beside the one sorted query the pages
were read with before (`find(filter).sort(_id, -1).limit(n)`) on the same data.

History grows fast by cloning real documents: a few notifications are created and delivered through the API,
then copies of them and of their deliveries are inserted with new ids (insert_many, about 100 deliveries per
notification like the issue's figures), one notification every SPACING seconds back in time, its deliveries
within the second after it, recipients rotating over USERS users.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from bson import ObjectId
from pymongo import MongoClient

from notifier.services.paging import newest_first
from notifier.store import Store, connect

from .fanout import wait_consumers
from .harness import Infra, add_users, admin_header

USERS = 200  # each user gets half the notifications: a full inbox page at every size
PER_NOTIFICATION = 100
SPACING = 30  # seconds between two cloned notifications
SAMPLES = 30
PAGE = 20


def _oid(seconds: float, counter: int) -> ObjectId:
    return ObjectId(int(seconds).to_bytes(4, "big") + counter.to_bytes(8, "big"))


class History:
    """The service's database, grown by cloning the notifications and deliveries it really made."""

    def __init__(self, mongo_url: str, db_name: str, templates: list[dict], deliveries: dict):
        self.db = MongoClient(mongo_url, tz_aware=True)[db_name]
        self.templates = templates
        self.deliveries = deliveries  # template notification id -> its (final) deliveries
        self.made = 0  # notifications cloned
        self.counter = int(time.time()) << 20  # the low id bytes: unique across clones

    def grow_to(self, total_deliveries: int, newest: float) -> None:
        """Insert clones until the collection holds `total_deliveries`; the clones lie before `newest`."""
        have = self.db.deliveries.estimated_document_count()
        notifications, deliveries = [], []
        while have + len(deliveries) < total_deliveries:
            template = self.templates[self.made % len(self.templates)]
            at = newest - (self.made + 1) * SPACING
            self.counter += 1
            notification = {**template, "_id": _oid(at, self.counter)}
            notification.pop("idempotency_key", None)
            notifications.append(notification)
            first = (self.made * 37) % USERS
            for i, original in enumerate(self.deliveries[template["_id"]][:PER_NOTIFICATION]):
                self.counter += 1
                deliveries.append(
                    {
                        **original,
                        "_id": _oid(at + 1 + i // 50, self.counter),
                        "notification_id": notification["_id"],
                        "user_id": f"u{(first + i) % USERS}",
                    }
                )
            self.made += 1
            if len(deliveries) >= 5000:
                self._flush(notifications, deliveries)
                have += len(deliveries)
                notifications, deliveries = [], []
        self._flush(notifications, deliveries)

    def _flush(self, notifications: list[dict], deliveries: list[dict]) -> None:
        if notifications:
            self.db.notifications.insert_many(notifications, ordered=False)
        if deliveries:
            self.db.deliveries.insert_many(deliveries, ordered=False)


def _p50_ms(fn, samples: int = SAMPLES, warmup: int = 3) -> float:
    for _ in range(warmup):  # the first requests after a bulk insert also pay for the database catching up
        fn()
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _api(service, path: str, auth: str):
    def get():
        status, body = service.call("GET", path, None, auth)
        assert status == 200, body
        assert len(body["items"]) == PAGE, body

    return get


async def _queries(mongo_url: str, db_name: str, client_id: str, user: str) -> dict:
    """p50 of the old one-query page and of the windowed walk, database only, same filters as the API."""
    store = Store(connect(mongo_url, 5000), db_name)
    client_filter = {"author.kind": "client", "author.id": client_id}
    cases = {
        "admin": (store.notifications, {}),
        "client": (store.notifications, client_filter),
        "inbox": (store.deliveries, {"user_id": user}),
    }
    out = {}
    for name, (collection, query) in cases.items():
        for label, windowed in (("old", False), ("new", True)):
            times = []
            for _ in range(SAMPLES if windowed else max(5, SAMPLES // 3)):
                started = time.perf_counter()
                page = await newest_first(collection, query, PAGE, None, windowed=windowed)
                times.append((time.perf_counter() - started) * 1000)
                assert len(page.items) == PAGE
            out[f"{name}_{label}_db_ms"] = statistics.median(times)
    store.close()
    return out


def _seed(service, auth: str, infra: Infra) -> tuple[str, str]:
    """Real notifications, from an admin and from a client application, delivered to the end: (client
    authorization, client id)."""
    users = add_users(service, auth, USERS)
    status, client = service.call("POST", "/api/v1/clients", {"login": "bench-shop", "name": "Shop"}, auth)
    assert status == 201, client
    client_auth = f"bench-shop {client['password']}"
    infra.sink.reset()
    created = []
    for who in (auth, client_auth, auth, client_auth):
        status, body = service.call(
            "POST",
            "/api/v1/notifications",
            {"title": "Hello {{ name }}", "text": "Your digest.", "channel": "email", "recipients": users[:200]},
            who,
        )
        assert status == 201, body
        created.append(body["id"])
    infra.sink.wait_for(200 * len(created))
    for notification_id in created:
        deadline = time.monotonic() + 120
        while True:
            status, detail = service.call("GET", f"/api/v1/notifications/{notification_id}", None, auth)
            if detail["counts"].get("sent", 0) == 200:
                break
            assert time.monotonic() < deadline, detail
            time.sleep(0.2)
    return client_auth, client["id"]


def run(infra: Infra, sizes: list[int]) -> list[dict]:
    service = infra.service(consumers=1)
    results = []
    try:
        service.start()
        auth = admin_header(service)
        wait_consumers(service, auth, 1)
        client_auth, client_id = _seed(service, auth, infra)
        db = MongoClient(infra.mongo_url, tz_aware=True)[service.env["MONGO_DB"]]
        templates = list(db.notifications.find())
        deliveries = {t["_id"]: list(db.deliveries.find({"notification_id": t["_id"]})) for t in templates}
        history = History(infra.mongo_url, service.env["MONGO_DB"], templates, deliveries)
        newest = min(t["_id"].generation_time.timestamp() for t in templates) - 60
        user = "u7"
        user_auth = service.cli("user-token", user).stdout.strip()
        for size in sizes:
            started = time.monotonic()
            history.grow_to(size, newest)
            grown = time.monotonic() - started
            figures = {
                "deliveries": db.deliveries.estimated_document_count(),
                "notifications": db.notifications.estimated_document_count(),
                "grow_seconds": grown,
                "admin_api_ms": _p50_ms(_api(service, f"/api/v1/notifications?limit={PAGE}", auth)),
                "client_api_ms": _p50_ms(_api(service, f"/api/v1/notifications?limit={PAGE}", client_auth)),
                "inbox_api_ms": _p50_ms(_api(service, f"/api/v1/me/notifications?limit={PAGE}", user_auth)),
                **asyncio.run(_queries(infra.mongo_url, service.env["MONGO_DB"], client_id, user)),
            }
            results.append(figures)
            print(
                f"{figures['deliveries']} deliveries, {figures['notifications']} notifications (grown in "
                f"{grown:.0f} s): API p50 admin {figures['admin_api_ms']:.1f} ms, client "
                f"{figures['client_api_ms']:.1f} ms, inbox {figures['inbox_api_ms']:.1f} ms; database only, old "
                f"query / windows: admin {figures['admin_old_db_ms']:.1f} / {figures['admin_new_db_ms']:.1f} ms, "
                f"client {figures['client_old_db_ms']:.1f} / {figures['client_new_db_ms']:.1f} ms, inbox "
                f"{figures['inbox_old_db_ms']:.1f} / {figures['inbox_new_db_ms']:.1f} ms",
                flush=True,
            )
    finally:
        service.stop()
        service.cleanup()
    return results


async def _retention(mongo_url: str, total: int, probe_seconds: float = 5.0) -> dict:
    """Retention catching up on `total` final deliveries 100 days old, its runs back to back: deletes per
    second, and a point read's latency meanwhile beside the same probe with nothing else running."""
    from notifier.clock import Clock
    from notifier.services.notifications import new_delivery
    from notifier.services.retention import Retention
    from notifier.settings import Settings

    store = Store(connect(mongo_url, 5000), f"bench_retention_{int(time.time())}")
    await store.ensure_indexes()
    oldest = time.time() - 100 * 86400
    counter = 0
    batch: list[dict] = []
    made = 0
    while made < total:
        at = oldest + (made // PER_NOTIFICATION) * SPACING
        counter += 1
        notification = {"_id": _oid(at, counter), "title": "t", "text": "x", "channel": "email", "is_express": False}
        await store.notifications.insert_one(notification)
        for i in range(PER_NOTIFICATION):
            counter += 1
            delivery = new_delivery(notification, f"u{i}", "", Clock().now())
            batch.append({**delivery, "_id": _oid(at + 1 + i // 50, counter), "status": "sent"})
        made += PER_NOTIFICATION
        if len(batch) >= 5000:
            await store.deliveries.insert_many(batch)
            batch = []
    if batch:
        await store.deliveries.insert_many(batch)
    young = ObjectId()
    await store.deliveries.insert_one({"_id": young, "notification_id": young, "user_id": "probe", "status": "sent"})

    async def probe(done) -> list[float]:
        latencies = []
        while not done():
            started = time.perf_counter()
            assert await store.deliveries.find_one({"_id": young})
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.01)  # a request every 10 ms, not a wait for a condition
        return latencies

    quiet_until = time.monotonic() + probe_seconds
    quiet = await probe(lambda: time.monotonic() > quiet_until)
    retention = Retention(store, Settings.from_env(), Clock())  # RETENTION_BATCH etc. from the environment
    runs: list[float] = []
    deleted = 0

    async def catch_up() -> None:
        nonlocal deleted
        deadline = time.monotonic() + 900
        while deleted < total and time.monotonic() < deadline:
            run_started = time.perf_counter()
            deleted += (await retention.run())["deliveries"]
            runs.append(time.perf_counter() - run_started)

    started = time.monotonic()
    catching_up = asyncio.ensure_future(catch_up())
    busy = await probe(catching_up.done)
    await catching_up
    elapsed = time.monotonic() - started
    left = await store.deliveries.estimated_document_count()
    store.close()
    return {
        "deleted": deleted,
        "left": left,
        "deletes_per_s": deleted / elapsed,
        "runs": len(runs),
        "longest_run_s": max(runs),
        "quiet_p50_ms": statistics.median(quiet),
        "quiet_p99_ms": sorted(quiet)[int(0.99 * (len(quiet) - 1))],
        "busy_p50_ms": statistics.median(busy),
        "busy_p99_ms": sorted(busy)[int(0.99 * (len(busy) - 1))],
        "busy_max_ms": max(busy),
    }


def retention(infra: Infra, total: int) -> dict:
    figures = asyncio.run(_retention(infra.mongo_url, total))
    print(
        f"retention of {figures['deleted']} deliveries 100 days old ({figures['left']} left), runs back to back: "
        f"{figures['deletes_per_s']:.0f} deletes/s, longest run {figures['longest_run_s']:.2f} s; a point read "
        f"meanwhile p50 {figures['busy_p50_ms']:.1f} ms p99 {figures['busy_p99_ms']:.1f} ms max "
        f"{figures['busy_max_ms']:.1f} ms, alone p50 {figures['quiet_p50_ms']:.1f} ms p99 "
        f"{figures['quiet_p99_ms']:.1f} ms",
        flush=True,
    )
    return figures
