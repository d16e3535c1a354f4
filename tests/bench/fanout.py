"""One notification to N email recipients, from the API call to the last `sent`, through the real service."""

from __future__ import annotations

import time

from .harness import Infra, add_users, admin_header

POLL = 0.2


def run(infra: Infra, n: int, consumers: int, **env: str) -> dict:
    """`env` adds settings (INLINE_RECIPIENTS=... makes the create store every delivery before answering)."""
    service = infra.service(consumers, MAX_RECIPIENTS=str(max(n, 100000)), **env)
    try:
        service.start()
        auth = admin_header(service)
        users = add_users(service, auth, n)
        wait_consumers(service, auth, consumers)
        started, accepted, answer, stats, finished = send_to_all(infra, service, auth, users)
        return {
            "rate": n / (finished - started),
            "api_seconds": accepted - started,
            "status": answer,
            "last_received_after": stats["last"] - started,
            "all_sent_after": finished - started,
        }
    finally:
        service.stop()
        service.cleanup(max_recipients=n)


def send_to_all(infra: Infra, service, auth: str, users: list[str], text: str = "Your weekly digest is ready."):
    """One email notification to `users`, waited for until every delivery is `sent`: (started, answered,
    answer status, the sink's stats, finished), times from time.time()."""
    n = len(users)
    infra.sink.reset()
    started = time.time()
    status, created = service.call(
        "POST",
        "/api/v1/notifications",
        {"title": "Hello {{ name }}", "text": text, "channel": "email", "recipients": users},
        auth,
    )
    accepted = time.time()
    assert status in (201, 202), created
    stats = infra.sink.wait_for(n, key=created["id"], timeout=max(600, n / 50))
    while True:
        _, detail = service.call("GET", f"/api/v1/notifications/{created['id']}", None, auth)
        if detail["counts"].get("sent", 0) == n:
            break
        time.sleep(POLL)
    finished = time.time()
    assert stats["duplicates"] == 0, stats
    return started, accepted, status, stats, finished


def wait_consumers(service, auth: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, pool = service.call("GET", "/api/v1/system/consumers", None, auth)
        if sum(1 for c in pool["consumers"] if c["ready"]) >= count:
            return
        time.sleep(0.2)
    raise TimeoutError("consumers did not start")
