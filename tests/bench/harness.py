"""What every benchmark needs: its own SecantusDB server, an SMTP sink process, the real service, CPU steal."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from notifier.embedded import EmbeddedMongo
from notifier.procs import free_port, wait_for_port

from ..served import REPO, Served

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
RESULTS = REPO / "var" / "bench"


def cpu_times() -> list[int]:
    with open("/proc/stat") as stat:
        return [int(v) for v in stat.readline().split()[1:]]


@dataclass
class Steal:
    """Share of CPU time the hypervisor took from this machine while a block ran."""

    start: list[int] = field(default_factory=cpu_times)

    def percent(self) -> float:
        end = cpu_times()
        deltas = [b - a for a, b in zip(self.start, end, strict=True)]
        total = sum(deltas) or 1
        return 100.0 * (deltas[7] if len(deltas) > 7 else 0) / total


class Sink:
    """The SMTP sink (tests/bench/sink.py) in its own process."""

    def __init__(self):
        self.smtp_port, self.http_port = free_port(), free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.bench.sink",
                "--smtp-port",
                str(self.smtp_port),
                "--http-port",
                str(self.http_port),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout.readline().strip() == b"ready"
        assert wait_for_port("127.0.0.1", self.smtp_port, 10)

    def _call(self, method: str, path: str):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", method=method, data=b"" if method == "POST" else None
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def stats(self) -> dict:
        return self._call("GET", "/stats")

    def times(self, key: str) -> list:
        return self._call("GET", f"/times?notification={key}")

    def reset(self) -> None:
        self._call("POST", "/reset")

    def wait_for(self, count: int, timeout: float = 600, key: str | None = None) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.stats()
            seen = stats["by_notification"].get(key, 0) if key else stats["count"]
            if seen >= count:
                return stats
            time.sleep(0.05)
        raise TimeoutError(f"the sink got {seen} of {count} messages")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Infra:
    """A SecantusDB server and an SMTP sink for one benchmark session."""

    def __enter__(self) -> Infra:
        self.workdir = Path(tempfile.mkdtemp(prefix="notifier-bench-"))
        self.mongo = EmbeddedMongo(str(self.workdir / "db"))
        self.mongo_url = self.mongo.start()
        self.sink = Sink()
        return self

    def __exit__(self, *exc) -> None:
        self.sink.stop()
        self.mongo.stop()

    def service(self, consumers: int | None = None, **env: str) -> Served:
        """A `notifier serve` on this database (its own database name) and sink; `consumers` fixes the pool."""
        if consumers is not None:
            env = {
                "CONSUMERS_START": str(consumers),
                "CONSUMERS_MIN": str(consumers),
                "CONSUMERS_MAX": str(consumers),
                **env,
            }
        name = uuid.uuid4().hex[:8]
        return Served(
            self.workdir / f"serve-{name}",
            AMQP_URL,
            MONGO_URL=self.mongo_url,
            MONGO_DB=f"bench_{name}",
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(self.sink.smtp_port),
            LOG_LEVEL="warning",
            **env,
        )


def admin_header(service: Served) -> str:
    import base64

    result = service.cli("createsuperuser", "--username", "bench", stdin="bench-password\n")
    assert result.returncode == 0, result.stderr
    return "Basic " + base64.b64encode(b"bench:bench-password").decode()


def add_users(service: Served, auth: str, count: int, prefix: str = "u") -> list[str]:
    ids = [f"{prefix}{i}" for i in range(count)]
    for start in range(0, count, 1000):
        status, body = service.call(
            "POST",
            "/api/v1/users/bulk",
            {
                "users": [
                    {"user_id": uid, "email": f"{uid}@example.com", "display_name": f"User {uid}"}
                    for uid in ids[start : start + 1000]
                ]
            },
            auth,
        )
        assert status == 200, body
    return ids


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def summary_row(label: str, figure: dict, fmt: str) -> tuple:
    """One table row: a figure's median, min and max."""
    return (label, *(fmt.format(figure[key]) for key in ("median", "min", "max")))


def write_results(name: str, results: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    return path


def table(rows: list[tuple]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
