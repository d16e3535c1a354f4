"""Inbox streams: how many one server holds while a fan-out runs, what each costs in server memory, the push
latency (the event's write by the consumer, just before its `sent` write, to its arrival at the client) with
one stream and with all of them, and the API's answer time with and without the streams connected."""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import datetime

from ..conftest import USER_SECRET
from ..sse import SseClient
from ..support import user_token
from .express import percentile
from .harness import Infra, admin_header

PROBES = 100  # GET /api/v1/notifications, one after another
SINGLE = 50  # notifications to the one stream, one after another
OPEN_AT_ONCE = 100


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def lateness_ms(event_at: str, received: float) -> float:
    return (received - datetime.fromisoformat(event_at).timestamp()) * 1000


async def _open(url: str, user_id: str) -> SseClient:
    client = await SseClient.open(url, "/api/v1/me/stream", {"Authorization": user_token(USER_SECRET, user_id, 3600)})
    assert client.status == 200, client.body
    opening = await client.next_event()
    assert opening is not None and opening.type == "counts"
    return client


async def _arrivals(client: SseClient, count: int, timeout: float) -> list[float]:
    """Lateness (ms) of the next `count` new-item events of one stream."""
    found = []
    deadline = time.monotonic() + timeout
    while len(found) < count:
        event = await client.next_event(timeout=max(deadline - time.monotonic(), 0.1))
        if event is None:
            break
        if event.type == "new":
            found.append(lateness_ms(event.data["at"], time.time()))
    return found


def _probe(service, auth: str) -> list[float]:
    times = []
    for _ in range(PROBES):
        started = time.perf_counter()
        status, _ = service.call("GET", "/api/v1/notifications?limit=20", None, auth)
        times.append((time.perf_counter() - started) * 1000)
        assert status == 200
    return times


async def _measure(service, auth: str, streams: int) -> dict:
    url = service.url
    notify = {"title": "Hi", "text": "Live.", "channel": "inbox"}
    loop = asyncio.get_running_loop()
    quiet_api = await loop.run_in_executor(None, _probe, service, auth)

    single = await _open(url, "solo")
    late_single = []
    for _ in range(SINGLE):
        status, _ = await loop.run_in_executor(
            None, service.call, "POST", "/api/v1/notifications", {**notify, "recipients": ["solo"]}, auth
        )
        assert status == 201
        late_single += await _arrivals(single, 1, 30)
    single.close()

    before = rss_mb(service.process.pid)
    users = [f"s{i}" for i in range(streams)]
    clients: list[SseClient] = []
    started = time.monotonic()
    for start in range(0, streams, OPEN_AT_ONCE):
        clients += await asyncio.gather(*(_open(url, user) for user in users[start : start + OPEN_AT_ONCE]))
    opened_s = time.monotonic() - started
    after = rss_mb(service.process.pid)
    busy_api = await loop.run_in_executor(None, _probe, service, auth)

    waiting = [asyncio.ensure_future(_arrivals(client, 1, 600)) for client in clients]
    fanout_started = time.monotonic()
    status, created = await loop.run_in_executor(
        None,
        lambda: service.call("POST", "/api/v1/notifications", {**notify, "recipients": users}, auth, timeout=600),
    )
    assert status in (201, 202), created
    late_many = [ms for found in await asyncio.gather(*waiting) for ms in found]
    fanout_s = time.monotonic() - fanout_started
    still_open = sum(not client.ended for client in clients)
    for client in clients:
        client.close()
    return {
        "streams": streams,
        "held": still_open,
        "received": len(late_many),
        "open_seconds": opened_s,
        "fanout_seconds": fanout_s,
        "rss_before_mb": before,
        "rss_after_mb": after,
        "rss_per_stream_kb": (after - before) * 1024 / streams,
        "single_p50": statistics.median(late_single),
        "single_p99": percentile(late_single, 0.99),
        "many_p50": statistics.median(late_many),
        "many_p99": percentile(late_many, 0.99),
        "api_quiet_p99": percentile(quiet_api, 0.99),
        "api_busy_p99": percentile(busy_api, 0.99),
    }


def run(infra: Infra, streams: int, consumers: int) -> dict:
    service = infra.service(consumers, USER_JWT_SECRET=USER_SECRET, STREAM_LIMIT_PER_USER="2")
    try:
        service.start()
        auth = admin_header(service)
        return asyncio.run(_measure(service, auth, streams))
    finally:
        service.stop(timeout=300)
        service.cleanup(max_recipients=streams)
