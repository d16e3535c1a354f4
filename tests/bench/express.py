"""Express latency: from the API's answer to the SMTP sink receiving the message, one express notification at a
time, first with no other traffic, then behind a backlog of regular deliveries."""

from __future__ import annotations

import statistics
import time

from .fanout import wait_consumers
from .harness import Infra, add_users, admin_header


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _latencies(service, infra: Infra, auth: str, count: int) -> list[float]:
    latencies = []
    for i in range(count):
        status, created = service.call("POST", "/api/v1/notifications", {
            "title": "Alert", "text": "Now.", "channel": "email", "is_express": True, "recipients": [f"x{i}"]}, auth)
        answered = time.time()
        assert status == 201, created
        infra.sink.wait_for(1, timeout=60, key=created["id"])
        latencies.append(infra.sink.times(created["id"])[0][1] - answered)
    return latencies


def run(infra: Infra, backlog: int, count: int, consumers: int) -> dict:
    service = infra.service(consumers)
    try:
        service.start()
        auth = admin_header(service)
        regular_users = add_users(service, auth, backlog)
        add_users(service, auth, count, prefix="x")
        wait_consumers(service, auth, consumers)
        quiet = _latencies(service, infra, auth, count)
        status, regular = service.call("POST", "/api/v1/notifications", {
            "title": "Digest", "text": "Weekly.", "channel": "email", "recipients": regular_users}, auth, timeout=600)
        assert status == 201, regular
        infra.sink.wait_for(min(500, backlog), key=regular["id"])
        busy = _latencies(service, infra, auth, count)
        left = backlog - infra.sink.stats()["by_notification"].get(regular["id"], 0)
        if left <= 0:
            print("warning: the backlog drained before the measurement ended; use a larger one", flush=True)
        return {"quiet_p50": statistics.median(quiet), "quiet_p99": percentile(quiet, 0.99),
                "busy_p50": statistics.median(busy), "busy_p99": percentile(busy, 0.99), "backlog_left": left}
    finally:
        service.stop(timeout=300)
        service.cleanup(max_recipients=backlog)
