"""Fan-out through 1, 2 and 3 `notifier serve` instances on one database and one broker.

Each instance takes its share of the recipients as one notification of its own (created at the same time),
and the pool holds two consumers per instance, counted over all of them (CONSUMERS_MIN/MAX are global).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from .harness import Infra, add_users, admin_header

CONSUMERS_PER_INSTANCE = 2


def run(infra: Infra, n: int, instances: int) -> dict:
    consumers = CONSUMERS_PER_INSTANCE * instances
    first = infra.service(consumers)
    servers = [first]
    try:
        first.start()
        auth = admin_header(first)
        users = add_users(first, auth, n)
        servers += [first.peer(first.workdir.parent / f"{first.workdir.name}-{i}") for i in range(1, instances)]
        for server in servers[1:]:
            server.start()
        _wait_consumers(first, auth, consumers)
        infra.sink.reset()
        shares = [users[i::instances] for i in range(instances)]
        started = time.time()
        with ThreadPoolExecutor(instances) as pool:
            created = list(pool.map(lambda pair: _create(pair[0], auth, pair[1]), zip(servers, shares, strict=True)))
        for notification, share in zip(created, shares, strict=True):
            stats = infra.sink.wait_for(len(share), key=notification)
            assert stats["duplicates"] == 0, stats
        while not all(_all_sent(first, auth, nid, len(share)) for nid, share in zip(created, shares, strict=True)):
            time.sleep(0.2)
        return {"rate": n / (time.time() - started)}
    finally:
        for server in reversed(servers):
            server.stop()
        for server in servers[1:]:
            server.process = None  # the first one's cleanup deletes the shared queues
        first.cleanup(max_recipients=n)


def _create(server, auth: str, recipients: list[str]) -> str:
    status, body = server.call(
        "POST",
        "/api/v1/notifications",
        {"title": "Hello {{ name }}", "text": "Scaled out.", "channel": "email", "recipients": recipients},
        auth,
    )
    assert status in (201, 202), body
    return body["id"]


def _all_sent(server, auth: str, notification_id: str, count: int) -> bool:
    _, detail = server.call("GET", f"/api/v1/notifications/{notification_id}", None, auth)
    return detail["counts"].get("sent", 0) == count


def _wait_consumers(server, auth: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, pool = server.call("GET", "/api/v1/system/consumers", None, auth)
        ready = sum(1 for c in pool["consumers"] if c["ready"]) + (pool.get("others") or 0)
        if ready >= count:
            return
        time.sleep(0.2)
    raise TimeoutError("consumers did not start")
