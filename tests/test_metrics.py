"""Metrics and request ids through a real `notifier serve` with one consumer: what a scraper and a log reader see."""

from __future__ import annotations

import base64
import json
import re

import pytest

from notifier.procs import free_port

from .served import Served, fetch
from .support import wait_until

ADMIN = "Basic " + base64.b64encode(b"root:metrics-password").decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in the exposition text (labels in any order), None when absent."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{key}="{value}"' in match.group(1).split(",") for key, value in labels.items()):
            return float(match.group(2))
    return None


@pytest.fixture
def served(tmp_path, amqp_url):
    metrics_port = free_port()
    served = Served(
        tmp_path,
        amqp_url,
        CONSUMERS_START="1",
        CONSUMERS_MIN="1",
        CONSUMERS_MAX="1",
        METRICS_PORT=str(metrics_port),
        LOG_FORMAT="json",
        LOG_LEVEL="info",
        NOTIFIER_ADMIN_USERNAME="root",
        NOTIFIER_ADMIN_PASSWORD="metrics-password",
    )
    served.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        yield served.start()
    finally:
        served.stop()
        served.cleanup()


def wait_for_metric(url: str, headers: dict, name: str, value: float, timeout: float = 60, **labels) -> str:
    def reached():
        status, _, body = fetch(url, headers=headers)
        assert status == 200, body
        return sample(body.decode(), name, **labels) == value and body.decode()

    return wait_until(reached, timeout, f"{name}{labels} == {value}")


def test_metrics_follow_a_notification_from_the_api_to_the_consumer(served):
    status, headers, body = fetch(
        served.url + "/api/v1/notifications",
        "POST",
        {"title": "Hi", "text": "Inbox note", "channel": "inbox", "recipients": ["u1", "u2"]},
        {"Authorization": ADMIN, "X-Request-Id": "trace-42"},
    )
    assert status == 201, body
    assert headers["X-Request-Id"] == "trace-42"

    text = wait_for_metric(
        served.url + "/metrics",
        {"Authorization": ADMIN},
        "notifier_deliveries_total",
        2.0,
        channel="inbox",
        status="sent",
    )
    assert sample(text, "notifier_send_seconds_count", channel="inbox") == 2.0
    assert sample(text, "notifier_publish_confirm_seconds_count", queue="regular") == 2.0
    assert sample(text, "notifier_published_total", queue="regular") == 2.0
    assert sample(text, "notifier_queue_messages", queue="regular") is not None
    assert sample(text, "notifier_queue_messages", queue="parked") is not None
    assert sample(text, "notifier_consumers", state="running") == 1.0
    assert sample(text, "notifier_consumers", state="max") == 1.0
    assert (
        sample(text, "notifier_http_requests_total", method="POST", route="/api/v1/notifications", status="201") == 1.0
    )
    assert (
        sample(text, "notifier_http_request_duration_seconds_count", method="POST", route="/api/v1/notifications")
        == 1.0
    )


def test_metrics_need_an_admin_on_the_api_port_and_nothing_on_the_metrics_port(served):
    assert fetch(served.url + "/metrics")[0] == 401
    status, headers, body = fetch(served.metrics_url)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert "notifier_http_requests_total" in body.decode()


def test_the_request_id_reaches_the_consumer_send_log(served):
    status, _, body = fetch(
        served.url + "/api/v1/notifications",
        "POST",
        {"title": "Hi", "text": "Inbox note", "channel": "inbox", "recipients": ["u7"]},
        {"Authorization": ADMIN, "X-Request-Id": "trace-7"},
    )
    assert status == 201, body
    notification_id = json.loads(body)["id"]

    def send_logged():
        for line in served.log.read_text().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("request_id") == "trace-7" and entry.get("logger") == "notifier.services.sending":
                    return entry
        return None

    entry = wait_until(send_logged, 60, "the send logged with the request id")
    assert entry["notification_id"] == notification_id and entry["delivery_id"]
    assert "sent" in entry["message"]
    access = [
        json.loads(line)
        for line in served.log.read_text().splitlines()
        if line.startswith("{") and '"tornado.access"' in line and "trace-7" in line
    ]
    assert access and access[0]["message"].startswith("201 POST /api/v1/notifications")


def test_a_request_id_that_is_not_sane_is_replaced(served):
    status, headers, _ = fetch(served.url + "/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
    assert status == 200 and re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-Id"])
