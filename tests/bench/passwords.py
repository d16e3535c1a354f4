"""/healthz while a storm of wrong passwords runs: its p99 with 50 concurrent bad-password requests beside its
p99 with none, against one real `notifier serve`. The attempt limits are raised out of the way, so every
attempt of the storm reaches scrypt (or the full pool's 429): the worst case for the event loop.

The storm runs in its own process (python -m tests.bench.passwords URL SECONDS), so the prober's timings are
not its event loop's."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import subprocess
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

from .express import percentile
from .harness import REPO, Infra

STORM = 50
STORM_SECONDS = 10.0


def probe(url: str, count: int | None = None, seconds: float | None = None) -> list[float]:
    """GET /healthz one after another on one keep-alive connection; the latencies in ms."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    latencies: list[float] = []
    deadline = time.monotonic() + seconds if seconds else None
    while (count is None or len(latencies) < count) and (deadline is None or time.monotonic() < deadline):
        started = time.perf_counter()
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(0.01)
    connection.close()
    return latencies


def run(infra: Infra, **env: str) -> dict:
    service = infra.service(
        CONSUMERS_START="0",
        CONSUMERS_MIN="0",
        LOGIN_ACCOUNT_LIMIT="100000000",
        LOGIN_ADDRESS_LIMIT="100000000",
        LOGIN_ACCOUNT_TOTAL_LIMIT="100000000",
        **env,
    )
    try:
        service.start()
        result = service.cli("createsuperuser", "--username", "bench", stdin="bench-password\n")
        assert result.returncode == 0, result.stderr
        probe(service.url, count=50)  # warm up
        quiet = probe(service.url, seconds=STORM_SECONDS)
        storm = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.passwords", service.url, str(STORM_SECONDS + 2)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert storm.stdout.readline().strip() == "storming"
        time.sleep(1.0)  # the storm at full strength before measuring
        busy = probe(service.url, seconds=STORM_SECONDS)
        statuses = json.loads(storm.stdout.readline())
        storm.wait(30)
    finally:
        service.stop()
        service.cleanup()
    quiet_p99, busy_p99 = percentile(quiet, 0.99), percentile(busy, 0.99)
    return {
        "quiet_p50": percentile(quiet, 0.5),
        "quiet_p99": quiet_p99,
        "storm_p50": percentile(busy, 0.5),
        "storm_p99": busy_p99,
        "ratio": busy_p99 / quiet_p99,
        "probes": [len(quiet), len(busy)],
        "storm_statuses": statuses,
    }


async def _storm(url: str, seconds: float) -> Counter:
    """STORM connections sending wrong Basic passwords back to back for `seconds`."""
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest

    AsyncHTTPClient.configure(None, max_clients=STORM)
    client = AsyncHTTPClient()
    statuses: Counter = Counter()
    deadline = time.monotonic() + seconds
    print("storming", flush=True)

    async def worker(number: int):
        attempt = 0
        while time.monotonic() < deadline:
            attempt += 1
            secret = base64.b64encode(f"bench:wrong-{number}-{attempt}".encode()).decode()
            response = await client.fetch(
                HTTPRequest(url + "/api/v1/clients", headers={"Authorization": f"Basic {secret}"}, request_timeout=60),
                raise_error=False,
            )
            statuses[response.code] += 1

    await asyncio.gather(*(worker(n) for n in range(STORM)))
    return statuses


if __name__ == "__main__":
    counts = asyncio.run(_storm(sys.argv[1], float(sys.argv[2])))
    print(json.dumps({str(k): v for k, v in sorted(counts.items())}), flush=True)
