"""The README's curl examples, run as written against a real `notifier serve` with embedded defaults."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .served import REPO, Served


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


@pytest.fixture
def served(tmp_path, amqp_url):
    server = Served(tmp_path, amqp_url, CONSUMERS_START="1", CONSUMERS_MIN="1")
    try:
        yield server.start()
        assert server.stop() == 0, server.log_tail()
    finally:
        server.cleanup()


def test_curl_examples_work_as_written(served):
    script = readme_block("Try it with curl").replace("localhost:8004", f"localhost:{served.port}")
    script = script.replace(".venv/bin/notifier", f"{Path(sys.executable).parent}/notifier")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=served.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    outputs = json_documents(result.stdout)
    assert "Admin 'admin' created." in result.stdout
    inbox = next(o for o in outputs if "items" in o and o["items"] and o["items"][0].get("channel") == "inbox")
    assert inbox["items"][0]["title"] == "Welcome, Alice"
    assert {"unsubscribed_channels": ["telegram"], "unsubscribed_all": False, "quiet_hours": None} in outputs
