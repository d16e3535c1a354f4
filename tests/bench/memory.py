"""Memory: peak RSS of the server and of each consumer during a large fan-out, and the server's RSS growth over
three such fan-outs in one process."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from .fanout import wait_consumers
from .harness import Infra, add_users, admin_header


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Sampler(threading.Thread):
    """Peak RSS of the server and of every consumer it runs, sampled every 0.2 s."""

    def __init__(self, service):
        super().__init__(daemon=True)
        self.service = service
        self.server_peak = 0.0
        self.consumer_peak = 0.0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.server_peak = max(self.server_peak, rss_mb(self.service.process.pid))
            for pid in self.service.consumer_pids():
                self.consumer_peak = max(self.consumer_peak, rss_mb(pid))
            time.sleep(0.2)


def run(infra: Infra, n: int, rounds: int, consumers: int) -> dict:
    service = infra.service(consumers, MAX_RECIPIENTS=str(max(n, 100000)))
    try:
        service.start()
        auth = admin_header(service)
        users = add_users(service, auth, n)
        wait_consumers(service, auth, consumers)
        sampler = Sampler(service)
        sampler.start()
        after_each = []
        for _ in range(rounds):
            status, created = service.call(
                "POST",
                "/api/v1/notifications",
                {"title": "Hello {{ name }}", "text": "Big day.", "channel": "email", "recipients": users},
                auth,
                timeout=3600,
            )
            assert status in (201, 202), created  # 202: past INLINE_RECIPIENTS the deliveries follow in the background
            infra.sink.wait_for(n, timeout=3600, key=created["id"])
            while (
                service.call("GET", f"/api/v1/notifications/{created['id']}", None, auth)[1]["counts"].get("sent", 0)
                < n
            ):
                time.sleep(1)
            time.sleep(2)
            after_each.append(rss_mb(service.process.pid))
        sampler.running = False
        sampler.join()
        return {
            "server_peak_mb": sampler.server_peak,
            "consumer_peak_mb": sampler.consumer_peak,
            "server_after_rounds_mb": after_each,
            "growth_percent": 100 * (after_each[-1] - after_each[0]) / after_each[0],
        }
    finally:
        service.stop(timeout=300)
        service.cleanup(max_recipients=n)
