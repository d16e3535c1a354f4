"""Express latency: from the API's answer to the SMTP sink receiving the message, one express notification at a
time, first with no other traffic, then behind a backlog of regular deliveries."""

from __future__ import annotations

import statistics
import time
import uuid

from .fanout import wait_consumers
from .harness import Infra, add_users, admin_header


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _latencies(service, infra: Infra, auth: str, count: int) -> list[float]:
    latencies = []
    for i in range(count):
        status, created = service.call(
            "POST",
            "/api/v1/notifications",
            {"title": "Alert", "text": "Now.", "channel": "email", "is_express": True, "recipients": [f"x{i}"]},
            auth,
        )
        answered = time.time()
        assert status == 201, created
        infra.sink.wait_for(1, timeout=60, key=created["id"])
        latencies.append(infra.sink.times(created["id"])[0][1] - answered)
    return latencies


def create_with_retries(service, auth: str, body: dict, attempts: int = 5) -> dict:
    """As a careful client does with a large notification: an Idempotency-Key, and a retry on 503 (SecantusDB
    can stall one request past the driver's 30 s timeout under this load; the retry finishes the same one)."""
    key = uuid.uuid4().hex
    for _ in range(attempts):
        status, created = service.call(
            "POST", "/api/v1/notifications", body, auth, timeout=600, headers={"Idempotency-Key": key}
        )
        if status != 503:
            assert status in (200, 201, 202), created
            return created
        time.sleep(2)
    raise AssertionError(f"the notification was not accepted after {attempts} tries: {created}")


def run(infra: Infra, backlog: int, count: int, consumers: int) -> dict:
    service = infra.service(consumers)
    try:
        service.start()
        auth = admin_header(service)
        regular_users = add_users(service, auth, backlog)
        add_users(service, auth, count, prefix="x")
        wait_consumers(service, auth, consumers)
        quiet = _latencies(service, infra, auth, count)
        regular = create_with_retries(
            service, auth, {"title": "Digest", "text": "Weekly.", "channel": "email", "recipients": regular_users}
        )
        infra.sink.wait_for(min(500, backlog), key=regular["id"])
        busy = _latencies(service, infra, auth, count)
        left = backlog - infra.sink.stats()["by_notification"].get(regular["id"], 0)
        if left <= 0:
            print("warning: the backlog drained before the measurement ended; use a larger one", flush=True)
        return {
            "quiet_p50": statistics.median(quiet),
            "quiet_p99": percentile(quiet, 0.99),
            "busy_p50": statistics.median(busy),
            "busy_p99": percentile(busy, 0.99),
            "backlog_left": left,
        }
    finally:
        service.stop(timeout=300)
        service.cleanup(max_recipients=backlog)
