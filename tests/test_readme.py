"""The README's curl examples, run as written against a real `notifier serve` with embedded defaults."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from notifier.procs import free_port

REPO = Path(__file__).resolve().parent.parent


def readme_block(heading: str) -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split(f"## {heading}\n", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def json_documents(text: str) -> list:
    """Every JSON object printed in `text` (curl prints them back to back, without newlines)."""
    decoder, documents, index = json.JSONDecoder(), [], 0
    while (index := text.find("{", index)) != -1:
        try:
            document, index = decoder.raw_decode(text, index)
            documents.append(document)
        except ValueError:
            index += 1
    return documents


def wait_ready(port: int, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, "notifier serve exited early"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("notifier serve did not become ready")


@pytest.fixture
def served(tmp_path, amqp_url):
    port = free_port()
    env = {**os.environ, "HTTP_PORT": str(port), "EMBEDDED_DB_DIR": str(tmp_path / "db"),
           "QUEUE_PREFIX": f"readme.{uuid.uuid4().hex[:8]}.", "AMQP_URL": amqp_url,
           "ASSETS_DIR": str(REPO / "var" / "assets"), "CONSUMERS_START": "1", "CONSUMERS_MIN": "1"}
    env.pop("MONGO_URL", None)
    server = subprocess.Popen([sys.executable, "-m", "notifier", "serve"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_ready(port, server)
        yield port, env
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=60)[0].decode(errors="replace")
        assert server.returncode == 0, output[-3000:]


def test_curl_examples_work_as_written(served):
    port, env = served
    script = readme_block("Try it with curl").replace("localhost:8004", f"localhost:{port}")
    script = script.replace(".venv/bin/notifier", f"{Path(sys.executable).parent}/notifier")
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    outputs = json_documents(result.stdout)
    assert "Admin 'admin' created." in result.stdout
    inbox = next(o for o in outputs if "items" in o and o["items"] and "title" in o["items"][0]
                 and o["items"][0].get("channel") == "inbox")
    assert inbox["items"][0]["title"] == "Welcome, Alice"
    assert {"unsubscribed_channels": ["telegram"], "unsubscribed_all": False} in outputs
