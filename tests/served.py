"""`notifier serve` as a real process, for tests of the whole service (README, signals, orphans, faults)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import aiormq

from notifier.procs import free_port, pid_alive
from notifier.queue.topology import Topology
from notifier.settings import Settings

from .support import wait_until

REPO = Path(__file__).resolve().parent.parent


def fetch(
    url: str, method: str = "GET", body=None, headers: dict | None = None, timeout: float = 30
) -> tuple[int, dict, bytes]:
    """One HTTP request (a JSON body when given); every status comes back, none raises."""
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def call(url: str, method: str = "GET", body=None, headers: dict | None = None, timeout: float = 30):
    """(status, decoded JSON body) of one request."""
    status, _, raw = fetch(url, method, body, headers, timeout)
    return status, json.loads(raw or b"null")


class Served:
    def __init__(self, workdir: Path, amqp_url: str, **env: str):
        self.port = free_port()
        self.workdir = workdir
        self.prefix = f"served.{uuid.uuid4().hex[:8]}."
        self.env = {
            **os.environ,
            "HTTP_PORT": str(self.port),
            "EMBEDDED_DB_DIR": str(workdir / "db"),
            "JOURNAL_DIR": str(workdir / "journal"),
            "QUEUE_PREFIX": self.prefix,
            "AMQP_URL": amqp_url,
            "ASSETS_DIR": str(REPO / "var" / "assets"),
            "SECRET_KEY": "served-secret",
            **env,
        }
        self.env.pop("MONGO_URL", None) if "MONGO_URL" not in env else None
        self.process: subprocess.Popen | None = None
        self.log = workdir / "serve.log"

    def peer(self, workdir: Path) -> Served:
        """Another `notifier serve` on the same database, broker and queues: a second instance."""
        other = Served(workdir, self.env["AMQP_URL"])
        other.prefix = self.prefix
        other.env = {
            **self.env,
            "HTTP_PORT": str(other.port),
            "EMBEDDED_DB_DIR": str(workdir / "db"),
            "JOURNAL_DIR": str(workdir / "journal"),
        }
        return other

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Served:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "notifier", "serve"],
            env=self.env,
            cwd=self.workdir,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
        )

        def ready() -> bool:
            assert self.process.poll() is None, f"notifier serve exited early:\n{self.log_tail()}"
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as response:
                return response.status == 200

        try:
            wait_until(ready, timeout, "notifier serve ready", tolerate=(OSError,))
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{self.log_tail()}") from None
        return self

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def call(
        self,
        method: str,
        path: str,
        body=None,
        auth: str | None = None,
        timeout: float = 60,
        headers: dict | None = None,
    ):
        return call(
            self.url + path, method, body, {**({"Authorization": auth} if auth else {}), **(headers or {})}, timeout
        )

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "notifier", *args],
            input=stdin,
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def consumer_pids(self) -> list[int]:
        """Consumer processes whose parent is this server (read from /proc, not from the server); once the
        server is gone, every consumer on its queues (orphans, or a peer instance's)."""
        server = self.process.pid if self.process is not None and self.process.poll() is None else None
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if b"notifier.queue" in cmdline and f"QUEUE_PREFIX={self.prefix}".encode() in environ:
                if server is None or _parent(entry) == server:
                    pids.append(int(entry.name))
        return pids

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def cleanup(self, max_recipients: int = 10000) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in self.consumer_pids():
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        asyncio.run(delete_queues(self.env["AMQP_URL"], self.prefix, max_recipients, Settings.from_env(self.env)))


def _parent(process: Path) -> int | None:
    try:
        return int((process / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


async def delete_queues(amqp_url: str, prefix: str, max_recipients: int = 0, settings: Settings | None = None) -> None:
    """Every queue a service with this prefix (and these settings) may have declared."""
    settings = settings or Settings.from_env({})
    topology = Topology(prefix, settings.retry_delays, settings.queue_type)
    pace = topology.pace_queues_for(max_recipients, settings.pacing_batch, settings.pacing_interval)
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel()
        for queue in [*topology.all_queues(), *pace]:
            await channel.queue_delete(queue)
        for exchange in topology.exchanges():
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()
