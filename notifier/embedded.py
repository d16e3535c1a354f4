"""The embedded MongoDB-protocol server used when MONGO_URL is unset.

SecantusDB (GPL-2.0) runs as a separate process and is only ever spoken to over its socket. It listens on
loopback and requires a password generated at its first start, kept in its private data directory, so
another user of the machine can neither read nor change the data.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .procs import die_with_parent, free_port, wait_for_port

log = logging.getLogger(__name__)
KNOCK_EVERY = 0.2  # seconds between two knocks on a stopping SecantusDB's port


class EmbeddedError(RuntimeError):
    """An embedded service could not be started."""


def _executable(name: str, install: str) -> str:
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    path = shutil.which(name, path=search)
    if not path:
        raise EmbeddedError(f"{name} not found: `{install} to use another server)")
    return path


def mongo_url(host: str, port: int, username: str = "", password: str = "") -> str:
    credentials = f"{quote(username, safe='')}:{quote(password, safe='')}@" if username else ""
    auth = "&authSource=admin" if username else ""
    # SecantusDB slows down as retryable writes pile up; it has no replica set to retry on anyway.
    return f"mongodb://{credentials}{host}:{port}/?retryWrites=false&directConnection=true{auth}"


def write_private(path: Path, content: bytes) -> None:
    """Write a file only this user can read, atomically (no moment where it exists with wider modes)."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
    os.replace(partial, path)


def setup_certificate() -> bytes:
    """A throwaway self-signed certificate and key (PEM) for the one start without a password."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "notifier embedded database setup")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


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

    def make_data_dir(self) -> None:
        """The data directory, readable by this user only (also one made before it was private)."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir.chmod(0o700)

    def _spawn(self, timeout: float) -> None:
        self.make_data_dir()
        self.port = self.port or free_port(self.host)
        command = self.command()
        log.info("starting embedded %s on %s:%d, data in %s", self.name, self.host, self.port, self.data_dir)
        with open(self.log_file, "ab") as log_output:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_output,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
                start_new_session=True,
                env=self.environment(),
            )
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
                self.wait_stopped(timeout)
            except subprocess.TimeoutExpired:
                log.warning("embedded %s did not stop in %.0fs; killing it", self.name, timeout)
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def wait_stopped(self, timeout: float) -> None:
        """Wait for the process to exit after SIGTERM (subprocess.TimeoutExpired after `timeout`)."""
        assert self.process is not None
        self.process.wait(timeout)


class EmbeddedMongo(EmbeddedProcess):
    """SecantusDB, spoken to over its socket only, with SCRAM authentication on."""

    name = "SecantusDB"
    username = "notifier"

    def __init__(self, data_dir: str, port: int = 0):
        super().__init__(data_dir, port)
        self.url_file = self.data_dir.with_name(self.data_dir.name + ".url")  # the address only, no secret
        self.credentials_file = self.data_dir / "notifier-credentials"
        self.setup_file: Path | None = None

    def password(self) -> str:
        return self.credentials_file.read_text().strip()

    @property
    def url(self) -> str:
        return mongo_url(self.host, self.port, self.username, self.password())

    def running_url(self) -> str | None:
        """The URL of a server this data directory already has running (the `serve` process's), if any."""
        try:
            port = int(self.url_file.read_text().strip().split(":")[2].split("/")[0])
            password = self.password()
        except (OSError, ValueError, IndexError):
            return None
        return mongo_url(self.host, port, self.username, password) if wait_for_port(self.host, port, 0.5) else None

    def command(self) -> list[str]:
        command = [
            _executable("secantusd-py", "pip install secantusdb` (or set MONGO_URL"),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--storage-path",
            str(self.data_dir),
            "--log-level",
            "WARNING",
            # No replica-set advertisement, hence no oplog to write and prune (part of every write's cost):
            # notifier uses neither transactions nor change streams.
            "--standalone",
        ]
        if self.setup_file is None:
            return [*command, "--auth"]
        # Without --auth only to create the account, and then only for a client holding this start's certificate.
        setup = str(self.setup_file)
        return [
            *command,
            "--tls-cert-file",
            setup,
            "--tls-key-file",
            setup,
            "--tls-ca-file",
            setup,
            "--tls-require-client-cert",
        ]

    def start(self, timeout: float = 60.0) -> str:
        if not self.credentials_file.exists():
            self._create_account(timeout)
        self._spawn(timeout)
        self.url_file.write_text(mongo_url(self.host, self.port) + "\n")
        return self.url

    def _create_account(self, timeout: float) -> None:
        """First start (or a data directory from before passwords): make the account the service logs in with."""
        from pymongo import MongoClient
        from pymongo.errors import OperationFailure

        password = secrets.token_urlsafe(32)
        self.make_data_dir()
        self.setup_file = self.data_dir / "setup.pem"
        write_private(self.setup_file, setup_certificate())
        try:
            self._spawn(timeout)
            setup = str(self.setup_file)
            client: MongoClient[dict[str, Any]] = MongoClient(
                mongo_url(self.host, self.port),
                tls=True,
                tlsCAFile=setup,
                tlsCertificateKeyFile=setup,
                serverSelectionTimeoutMS=int(timeout * 1000),
            )
            with client:
                try:
                    client.admin.command("createUser", self.username, pwd=password, roles=["root"])
                except OperationFailure as exc:
                    if exc.code != 51003:  # already there: a first start that stopped before saving the password
                        raise
                    client.admin.command("updateUser", self.username, pwd=password)
        finally:
            self.stop()
            self.setup_file.unlink(missing_ok=True)
            self.setup_file = None
        write_private(self.credentials_file, password.encode() + b"\n")
        log.info("embedded %s: created its account; the password is in %s", self.name, self.credentials_file)

    def wait_stopped(self, timeout: float) -> None:
        # SecantusDB's accept thread sees the stop only when a connection comes (closing a listening socket
        # does not wake accept() on Linux), and its shutdown waits 2 s for that thread: a knock on the port
        # while it stops ends that wait.
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.process.wait(min(KNOCK_EVERY, max(deadline - time.monotonic(), 0)))
                return
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    raise
            with contextlib.suppress(OSError):
                socket.create_connection((self.host, self.port), timeout=KNOCK_EVERY).close()

    def stop(self, timeout: float = 20.0) -> None:
        try:
            if self.process is not None and self.url_file.read_text().strip() == mongo_url(self.host, self.port):
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
            raise EmbeddedError(
                f"{self.server} not found: install Debian's rabbitmq-server (or set AMQP_URL to use another broker)"
            )
        return [self.server]

    def environment(self) -> dict[str, str]:
        plugins = self.data_dir / "enabled_plugins"
        if not plugins.exists():
            plugins.write_text("[].\n")
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.data_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.data_dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_PID_FILE": str(self.data_dir / "pid"),
            "RABBITMQ_CONFIG_FILE": str(self.data_dir / "rabbitmq"),
            "RABBITMQ_LOGS": "-",
            "ERL_EPMD_ADDRESS": self.host,
        }

    def start(self, timeout: float = 120.0) -> None:
        self._spawn(timeout)
