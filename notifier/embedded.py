"""The embedded MongoDB-protocol server used when MONGO_URL is unset.

SecantusDB (GPL-2.0) runs as a separate process and is only ever spoken to over its socket.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from .procs import die_with_parent, free_port, wait_for_port

log = logging.getLogger(__name__)


class EmbeddedError(RuntimeError):
    """An embedded service could not be started."""


def _executable(name: str, install: str) -> str:
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    path = shutil.which(name, path=search)
    if not path:
        raise EmbeddedError(f"{name} not found: `{install} to use another server)")
    return path


def mongo_url(host: str, port: int) -> str:
    # SecantusDB slows down as retryable writes pile up; it has no replica set to retry on anyway.
    return f"mongodb://{host}:{port}/?retryWrites=false&directConnection=true"


class EmbeddedProcess:
    """A server this process starts on loopback, with its data in `data_dir`; it dies with this process."""

    host = "127.0.0.1"
    name = "server"

    def __init__(self, data_dir: str, port: int = 0):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.process: subprocess.Popen | None = None
        self.log_file = self.data_dir.with_name(self.data_dir.name + ".log")

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def _spawn(self, timeout: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        command = self.command()
        log.info("starting embedded %s on %s:%d, data in %s", self.name, self.host, self.port, self.data_dir)
        with open(self.log_file, "ab") as log_output:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_output,
                                            stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
                                            start_new_session=True, env=self.environment())
        if not wait_for_port(self.host, self.port, timeout, alive=lambda: self.process.poll() is None):
            self.stop()
            tail = self.log_file.read_text(errors="replace").strip().splitlines()[-5:]
            raise EmbeddedError(f"{self.name} did not start on port {self.port}: {' | '.join(tail)}")

    def supervise(self, timeout: float = 120.0) -> bool:
        """Start the server again if it died; True when it had to."""
        if self.process is None or self.process.poll() is None:
            return False
        log.error("embedded %s exited with %s; starting it again", self.name, self.process.returncode)
        self._spawn(timeout)
        return True

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            # The whole session: a launcher script may have started the real server as its child.
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("embedded %s did not stop in %.0fs; killing it", self.name, timeout)
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


class EmbeddedMongo(EmbeddedProcess):
    """SecantusDB, spoken to over its socket only."""

    name = "SecantusDB"

    def __init__(self, data_dir: str, port: int = 0):
        super().__init__(data_dir, port)
        self.url_file = self.data_dir.with_name(self.data_dir.name + ".url")

    @property
    def url(self) -> str:
        return mongo_url(self.host, self.port)

    def running_url(self) -> str | None:
        """The URL of a server this data directory already has running (the `serve` process's), if any."""
        try:
            url = self.url_file.read_text().strip()
        except OSError:
            return None
        port = int(url.split(":")[2].split("/")[0])
        return url if wait_for_port(self.host, port, timeout=0.5) else None

    def command(self) -> list[str]:
        return [_executable("secantusd-py", "pip install secantusdb` (or set MONGO_URL"), "--host", self.host,
                "--port", str(self.port), "--storage-path", str(self.data_dir), "--log-level", "WARNING"]

    def start(self, timeout: float = 60.0) -> str:
        self._spawn(timeout)
        self.url_file.write_text(self.url + "\n")
        return self.url

    def stop(self, timeout: float = 20.0) -> None:
        try:
            if self.process is not None and self.url_file.read_text().strip() == self.url:
                self.url_file.unlink()
        except FileNotFoundError:
            pass
        super().stop(timeout)


class EmbeddedRabbit(EmbeddedProcess):
    """Debian's RabbitMQ as a node of its own (name, ports and data apart from any system broker)."""

    name = "RabbitMQ"
    server = "/usr/lib/rabbitmq/bin/rabbitmq-server"

    def __init__(self, data_dir: str, port: int):
        super().__init__(data_dir, port)
        self.node = f"notifier-{port}@localhost"
        self.dist_port = free_port(self.host)

    def command(self) -> list[str]:
        if not os.access(self.server, os.X_OK):
            raise EmbeddedError(f"{self.server} not found: install Debian's rabbitmq-server "
                                f"(or set AMQP_URL to use another broker)")
        return [self.server]

    def environment(self) -> dict[str, str]:
        plugins = self.data_dir / "enabled_plugins"
        if not plugins.exists():
            plugins.write_text("[].\n")
        return {**os.environ, "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_IP_ADDRESS": self.host,
                "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_MNESIA_BASE": str(self.data_dir / "mnesia"), "RABBITMQ_LOG_BASE": str(self.data_dir / "log"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins), "RABBITMQ_PID_FILE": str(self.data_dir / "pid"),
                "RABBITMQ_CONFIG_FILE": str(self.data_dir / "rabbitmq"), "RABBITMQ_LOGS": "-",
                "ERL_EPMD_ADDRESS": self.host}

    def start(self, timeout: float = 120.0) -> None:
        self._spawn(timeout)
