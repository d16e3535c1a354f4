"""The single-container image, built by `.ci/image` and run for real: `buildah run` (chroot isolation, the host's
network) runs `tini -- docker-entrypoint.sh serve` in a container of the image, as `docker run` would, with a host
directory as its /data volume. Not part of the normal run (it builds an image): `.ci/image` runs it, as the last
step of `.ci/run`; `NOTIFIER_IMAGE_TESTS=1 ./.ci/test tests/test_image.py` runs it alone (building the image with
`.ci/image --build` when it is missing).

The tests share one container and run in order: it starts, delivers, answers /metrics, and stops on SIGTERM;
a second container starts on the same data; a third runs with external MONGO_URL/AMQP_URL."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from notifier.embedded import EmbeddedMongo
from notifier.procs import free_port, pid_alive

from .served import REPO, call, delete_queues, fetch, wait_until
from .smtp_server import SmtpServer

# Deselected from the suite's run unless NOTIFIER_IMAGE_TESTS=1 (tests/conftest.py): .ci/image builds the image first.
pytestmark = pytest.mark.image

IMAGE = os.environ.get("NOTIFIER_IMAGE", "localhost/notifier:ci")
UID = 10001
ADMIN = ("root-admin", "image-admin-password-0")
AUTH = {"Authorization": "Basic " + base64.b64encode(":".join(ADMIN).encode()).decode()}
USER_SECRET = "image-user-secret-of-at-least-32-bytes"
HOST_BROKER = "amqp://guest:guest@127.0.0.1:5672/"


def buildah(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"buildah {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


def marked(marker: str) -> dict[int, str]:
    """Live processes carrying `marker` in their environment (every process of one container: the run's
    environment is passed down to tini, the server, its consumers, RabbitMQ and SecantusDB), by command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker.encode() in environ and pid_alive(int(entry.name)):
                found[int(entry.name)] = cmdline
    return found


def uids(pid: int) -> set[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return {int(value) for value in line.split()[1:]}
    raise AssertionError(f"no Uid line for {pid}")


def user_token(user_id: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + 600}, USER_SECRET, algorithm="HS256")


class Container:
    """One container of the image: `buildah from`, then `buildah run ... tini -- docker-entrypoint.sh serve`."""

    def __init__(self, workdir: Path, data: Path, **env: str):
        self.name = f"notifier-check-{uuid.uuid4().hex[:8]}"
        self.marker = f"NOTIFIER_IMAGE_RUN={self.name}"
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.data = data
        self.env = {
            "HTTP_PORT": str(self.http_port),
            "SECRET_KEY": "image-secret",
            "USER_JWT_SECRET": USER_SECRET,
            "CONSUMERS_START": "1",
            "CONSUMERS_MIN": "1",
            "CONSUMERS_MAX": "1",
            "NOTIFIER_IMAGE_RUN": self.name,
            # tini is not PID 1 here (chroot isolation has no PID namespace): as a subreaper it reaps as it would.
            "TINI_SUBREAPER": "1",
            **env,
        }
        self.log = workdir / f"{self.name}.log"
        self.process: subprocess.Popen | None = None
        buildah("from", "--pull=never", "--name", self.name, IMAGE)
        # buildah run mounts a VOLUME of the image as a directory of its own container, over a `-v` given for it:
        # drop it from this container (the image keeps it: test_the_image_keeps_its_guarantees) so /data is `data`.
        buildah("config", "--volume", "/data-", self.name)

    def start(self, timeout: float = 180) -> Container:
        command = ["buildah", "run", "--isolation", "chroot", "--network", "host", "-v", f"{self.data}:/data"]
        for key, value in self.env.items():
            command += ["--env", f"{key}={value}"]
        command += [self.name, "--", "tini", "--", "docker-entrypoint.sh", "serve"]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT
        )

        def ready() -> bool:
            assert self.process.poll() is None, f"the container exited with {self.process.returncode}:\n{self.tail()}"
            return fetch(self.url + "/readyz", timeout=2)[0] == 200

        wait_until(ready, timeout, f"{self.name} ready on {self.url}\n{self.tail()}", every=0.5, tolerate=(OSError,))
        return self

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def processes(self) -> dict[int, str]:
        return marked(self.marker)

    def tini(self) -> int:
        pids = [pid for pid in self.processes() if Path(f"/proc/{pid}/comm").read_text().strip() == "tini"]
        assert len(pids) == 1, f"one tini expected in {self.name}: {self.processes()}"
        return pids[0]

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM to tini, as `docker stop` sends it; the exit status of the container."""
        os.kill(self.tini(), signal.SIGTERM)
        return self.process.wait(timeout)

    def remove(self) -> None:
        if self.process is not None and self.process.poll() is None:
            for pid in self.processes():
                os.kill(pid, signal.SIGKILL)
            self.process.wait(60)
        for pid in self.processes():  # a process that outlived its container (a failed check said so)
            os.kill(pid, signal.SIGKILL)
        buildah("rm", self.name)


def volume(path: Path) -> Path:
    """A host directory for /data, owned by the image's user (as Docker initialises a named volume)."""
    path.mkdir()
    os.chown(path, UID, UID)
    return path


@pytest.fixture(scope="module")
def image():
    if not buildah("images", "-q", IMAGE):
        subprocess.run(["bash", str(REPO / ".ci" / "image"), "--build"], check=True, timeout=1800)
    return IMAGE


@pytest.fixture(scope="module")
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("image")


@pytest.fixture(scope="module")
def data(workdir):
    return volume(workdir / "data")


@pytest.fixture(scope="module")
def rabbit_port():
    """The embedded broker's port, kept for the second start (the node's name, and so its data, go with it)."""
    return free_port()


@pytest.fixture(scope="module")
def first(image, workdir, data, smtp, rabbit_port):
    container = Container(
        workdir,
        data,
        EMBEDDED_RABBITMQ_PORT=str(rabbit_port),
        NOTIFIER_ADMIN_USERNAME=ADMIN[0],
        NOTIFIER_ADMIN_PASSWORD=ADMIN[1],
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp.port),
    )
    try:
        yield container.start()
    finally:
        container.remove()


@pytest.fixture(scope="module")
def sent():
    """Notifications the first container delivered, by channel: the second start must still have them."""
    return {}


def test_the_image_keeps_its_guarantees(image):
    config = json.loads(buildah("inspect", "--type", "image", image))
    docker = config["Docker"]["config"]
    assert docker["User"] == f"{UID}:{UID}"
    assert "/data" in docker["Volumes"]
    assert docker["StopSignal"] == "SIGTERM"
    assert docker["Entrypoint"] == ["tini", "--", "docker-entrypoint.sh"] and docker["Cmd"] == ["serve"]
    assert "/readyz" in " ".join(docker["Healthcheck"]["Test"])
    assert "8004/tcp" in docker["ExposedPorts"]


def test_it_starts_ready_with_rabbitmq_and_secantusdb_inside_all_as_uid_10001(first, rabbit_port):
    processes = first.processes()
    commands = " | ".join(processes.values())
    node = marked(f"RABBITMQ_NODENAME=notifier-{rabbit_port}@localhost")
    assert any("beam.smp" in command for command in node.values()) and set(node) <= set(processes), commands
    assert "secantusd" in commands and "--storage-path /data/db" in commands, commands
    assert "notifier serve" in commands and "notifier.queue" in commands, commands
    assert {pid: uids(pid) for pid in processes} == {pid: {UID} for pid in processes}
    for kept in ("rabbitmq", "db"):
        assert (first.data / kept).is_dir() and (first.data / kept).stat().st_uid == UID


def test_the_first_admin_comes_from_the_environment(first):
    assert f"created admin '{ADMIN[0]}' from NOTIFIER_ADMIN_USERNAME" in first.log.read_text(), first.tail()
    assert call(first.url + "/api/v1/notifications", headers=AUTH)[0] == 200
    wrong = {"Authorization": "Basic " + base64.b64encode(f"{ADMIN[0]}:not-the-password".encode()).decode()}
    assert call(first.url + "/api/v1/notifications", headers=wrong)[0] == 401


def delivered(container: Container, notification_id: str) -> dict:
    url = f"{container.url}/api/v1/notifications/{notification_id}"
    return wait_until(
        lambda: (detail := call(url, headers=AUTH)[1])["counts"].get("sent") == 1 and detail,
        60,
        f"notification {notification_id} sent",
    )


def test_an_inbox_notification_is_delivered(first, sent):
    status, created = call(
        first.url + "/api/v1/notifications",
        "POST",
        {"title": "Hi", "text": "From the image", "channel": "inbox", "recipients": ["ann"]},
        AUTH,
    )
    assert status == 201, created
    delivered(first, created["id"])
    status, inbox = call(first.url + "/api/v1/me/notifications", headers={"Authorization": user_token("ann")})
    assert status == 200, inbox
    assert [(item["notification_id"], item["status"], item["text"]) for item in inbox["items"]] == [
        (created["id"], "sent", "From the image")
    ]
    sent["inbox"] = created["id"]


def test_an_email_reaches_the_smtp_server_on_the_host(first, smtp, sent):
    status, user = call(first.url + "/api/v1/users/bob", "PUT", {"email": "bob@example.com"}, AUTH)
    assert status in (200, 201), user
    status, created = call(
        first.url + "/api/v1/notifications",
        "POST",
        {"title": "Mail from the image", "text": "Hello Bob", "channel": "email", "recipients": ["bob"]},
        AUTH,
    )
    assert status == 201, created
    delivered(first, created["id"])
    mails = [mail for mail in smtp.received if mail.notification_id == created["id"]]
    assert [(mail.recipient, mail.subject) for mail in mails] == [("bob@example.com", "Mail from the image")]
    sent["email"] = created["id"]


def test_metrics_count_the_deliveries(first, sent):
    assert fetch(first.url + "/metrics")[0] == 401
    status, _, body = fetch(first.url + "/metrics", headers=AUTH)
    assert status == 200
    counted = {
        (sample.labels["channel"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == "notifier_deliveries_total"
    }
    assert counted.get(("inbox", "sent")) == 1 and counted.get(("email", "sent")) == 1, counted


def test_sigterm_to_tini_drains_exits_0_and_leaves_no_process(first, rabbit_port):
    assert first.processes()
    assert first.stop() == 0, first.tail()
    # The container's processes end before tini does; nothing of it may be left running.
    assert first.processes() == {}
    assert marked(f"RABBITMQ_NODENAME=notifier-{rabbit_port}@localhost") == {}
    log = first.log.read_text()
    assert "shutting down" in log and "stopped" in log.split("shutting down", 1)[1], first.tail()


def test_a_second_start_on_the_same_data_keeps_the_admin_and_the_notifications(first, workdir, data, sent, rabbit_port):
    assert first.process.poll() is not None, "the first container still runs"
    assert set(sent) == {"inbox", "email"}, "the deliveries above did not all pass"
    # No NOTIFIER_ADMIN_*: the admin must come from the data.
    second = Container(workdir, data, EMBEDDED_RABBITMQ_PORT=str(rabbit_port))
    try:
        second.start()
        for notification_id in sent.values():
            status, detail = call(f"{second.url}/api/v1/notifications/{notification_id}", headers=AUTH)
            assert status == 200 and detail["counts"].get("sent") == 1, detail
        status, inbox = call(second.url + "/api/v1/me/notifications", headers={"Authorization": user_token("ann")})
        assert status == 200 and [item["notification_id"] for item in inbox["items"]] == [sent["inbox"]], inbox
        assert "created admin" not in second.log.read_text(), second.tail()
        assert second.stop() == 0, second.tail()
        assert second.processes() == {}
    finally:
        second.remove()


def test_external_mongo_and_amqp_urls_start_neither_embedded_service(image, workdir):
    database = EmbeddedMongo(str(workdir / "external" / "db"))  # SecantusDB on the host, as an external server
    mongo_url = database.start()
    prefix = f"image.{uuid.uuid4().hex[:8]}."
    data = volume(workdir / "external-data")
    container = Container(
        workdir,
        data,
        MONGO_URL=mongo_url,
        MONGO_DB=f"image_{uuid.uuid4().hex[:8]}",
        AMQP_URL=HOST_BROKER,
        QUEUE_PREFIX=prefix,
        NOTIFIER_ADMIN_USERNAME=ADMIN[0],
        NOTIFIER_ADMIN_PASSWORD=ADMIN[1],
    )
    try:
        container.start()
        commands = " | ".join(container.processes().values())
        assert "notifier serve" in commands, commands
        for embedded in ("beam.smp", "rabbitmq", "secantusd", "epmd"):
            assert embedded not in commands, commands
        assert sorted(path.name for path in data.iterdir()) == []
        status, created = call(
            container.url + "/api/v1/notifications",
            "POST",
            {"title": "Hi", "text": "Through the host's broker", "channel": "inbox", "recipients": ["cy"]},
            AUTH,
        )
        assert status == 201, created
        delivered(container, created["id"])
        assert container.stop() == 0, container.tail()
        assert container.processes() == {}
    finally:
        container.remove()
        database.stop()
        asyncio.run(delete_queues(HOST_BROKER, prefix))
        shutil.rmtree(workdir / "external", ignore_errors=True)
