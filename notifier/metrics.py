"""Prometheus metrics of the server process, and those its consumer processes write to a shared directory.

The server's metrics live in its own registry. Consumers are separate processes: the pool gives them
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode) and the server reads their files when scraped.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from .queue.connection import BrokerConnection
from .queue.monitor import queue_depths
from .queue.topology import Topology
from .settings import Settings

if TYPE_CHECKING:
    from .queue.pool import ConsumerPool

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REGISTRY = CollectorRegistry()
HTTP_REQUESTS = Counter(
    "notifier_http_requests_total",
    "HTTP requests answered, by route and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "notifier_http_request_duration_seconds",
    "Time to answer an HTTP request, by route",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
# Every metric here has labels: a consumer process that imports this module by way of the publisher then
# creates no values of its own (in multiprocess mode they would shadow the server's).
PUBLISH_CONFIRM_SECONDS = Histogram(
    "notifier_publish_confirm_seconds",
    "Time from publishing a delivery to the broker's confirm, by queue",
    ["queue"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
PUBLISHED = Counter(
    "notifier_published_total", "Deliveries the broker confirmed, by queue", ["queue"], registry=REGISTRY
)
QUEUE_MESSAGES = Gauge(
    "notifier_queue_messages", "Messages waiting in each queue (read when scraped)", ["queue"], registry=REGISTRY
)
EVENT_POSTS = Counter(
    "notifier_event_posts_total",
    "Status events POSTed to endpoints, by result (acknowledged, failed)",
    ["result"],
    registry=REGISTRY,
)
EVENT_LAG_SECONDS = Histogram(
    "notifier_event_lag_seconds",
    "From a state change to an endpoint's acknowledgement of its event (a repeat or a replay counts again)",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
    registry=REGISTRY,
)
# What a consumer process counts (queue/batch.py). registry=None: in multiprocess mode the values go to the
# PROMETHEUS_MULTIPROC_DIR files whatever the registry, and the server collects them (ConsumerMetrics).
DELIVERIES = Counter(
    "notifier_deliveries_total",
    "Deliveries finished by the consumers, by channel and status (sent, skipped, failed, retry)",
    ["channel", "status"],
    registry=None,
)
SEND_SECONDS = Histogram(
    "notifier_send_seconds",
    "Time a channel took to send one delivery",
    ["channel"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
CONSUMERS = Gauge(
    "notifier_consumers",
    "Consumer processes of this server (running) and the pool's bounds",
    ["state"],
    registry=REGISTRY,
)


class ConsumerMetrics:
    """The directory the consumer processes write their metrics to, read by this server's registry."""

    def __init__(self):
        self.directory = tempfile.mkdtemp(prefix="notifier-metrics-")
        self._collector = MultiProcessCollector(None, path=self.directory)
        REGISTRY.register(self._collector)

    def close(self) -> None:
        REGISTRY.unregister(self._collector)
        shutil.rmtree(self.directory, ignore_errors=True)


async def refresh_gauges(
    settings: Settings, pool: ConsumerPool | None, broker: BrokerConnection, topology: Topology
) -> None:
    """Read the queue depths and the pool's size into the gauges, just before a scrape."""
    if pool is not None:
        CONSUMERS.labels("running").set(len([p for p in pool.processes.values() if p.ready]))
    CONSUMERS.labels("min").set(settings.consumers_min)
    CONSUMERS.labels("max").set(settings.consumers_max)
    try:
        depths = await asyncio.wait_for(queue_depths(broker, topology), 2.0)
    except Exception as exc:  # the broker is away: the gauges keep their last values
        log.info("queue depths unavailable for metrics: %s", exc)
        return
    for row in depths:
        QUEUE_MESSAGES.labels(row["queue"]).set(row["messages"])


def exposition() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
