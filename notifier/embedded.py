"""The embedded MongoDB-protocol server used when MONGO_URL is unset.

SecantusDB (GPL-2.0) runs as a separate process and is only ever spoken to over its socket.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .procs import die_with_parent, free_port, wait_for_port

log = logging.getLogger(__name__)


class EmbeddedError(RuntimeError):
    """An embedded service could not be started."""


def _executable(name: str) -> str:
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    path = shutil.which(name, path=search)
    if not path:
        raise EmbeddedError(f"{name} not found: install it with `pip install secantusdb` "
                            f"(or set MONGO_URL to use another MongoDB server)")
    return path


def mongo_url(host: str, port: int) -> str:
    # SecantusDB slows down as retryable writes pile up; it has no replica set to retry on anyway.
    return f"mongodb://{host}:{port}/?retryWrites=false&directConnection=true"


class EmbeddedMongo:
    """A SecantusDB server on loopback with its data in `data_dir`; it dies with this process."""

    host = "127.0.0.1"

    def __init__(self, data_dir: str, port: int = 0):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.process: subprocess.Popen | None = None
        self.url_file = self.data_dir.with_name(self.data_dir.name + ".url")
        self.log_file = self.data_dir.with_name(self.data_dir.name + ".log")

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

    def start(self, timeout: float = 60.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        command = [_executable("secantusd-py"), "--host", self.host, "--port", str(self.port),
                   "--storage-path", str(self.data_dir), "--log-level", "WARNING"]
        log.info("starting embedded SecantusDB on %s:%d, data in %s", self.host, self.port, self.data_dir)
        with open(self.log_file, "ab") as log_output:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_output,
                                            stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
                                            start_new_session=True)
        if not wait_for_port(self.host, self.port, timeout, alive=lambda: self.process.poll() is None):
            self.stop()
            tail = self.log_file.read_text(errors="replace").strip().splitlines()[-5:]
            raise EmbeddedError(f"SecantusDB did not start on port {self.port}: {' | '.join(tail)}")
        self.url_file.write_text(self.url + "\n")
        return self.url

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None:
            return
        try:
            if self.url_file.read_text().strip() == self.url:
                self.url_file.unlink()
        except FileNotFoundError:
            pass
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("SecantusDB did not stop in %.0fs; killing it", timeout)
                self.process.kill()
                self.process.wait()
        self.process = None
