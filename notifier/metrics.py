"""Prometheus metrics of the server process, and those its consumer processes write to a shared directory.

The server's metrics live in its own registry. Consumers are separate processes: the pool gives them
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode) and the server reads their files when scraped.
"""

from __future__ import annotations

import shutil
import tempfile

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from .queue.metrics import LATENCY_BUCKETS

REGISTRY = CollectorRegistry()
HTTP_REQUESTS = Counter("notifier_http_requests_total", "HTTP requests answered, by route and status",
                        ["method", "route", "status"], registry=REGISTRY)
HTTP_SECONDS = Histogram("notifier_http_request_duration_seconds", "Time to answer an HTTP request, by route",
                         ["method", "route"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
# Every metric here has labels: a consumer process that imports this module by way of the publisher then
# creates no values of its own (in multiprocess mode they would shadow the server's).
PUBLISH_CONFIRM_SECONDS = Histogram("notifier_publish_confirm_seconds",
                                    "Time from publishing a delivery to the broker's confirm, by queue",
                                    ["queue"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
PUBLISHED = Counter("notifier_published_total", "Deliveries the broker confirmed, by queue",
                    ["queue"], registry=REGISTRY)
QUEUE_MESSAGES = Gauge("notifier_queue_messages", "Messages waiting in each queue (read when scraped)",
                       ["queue"], registry=REGISTRY)
CONSUMERS = Gauge("notifier_consumers", "Consumer processes of this server (running) and the pool's bounds",
                  ["state"], registry=REGISTRY)


class ConsumerMetrics:
    """The directory the consumer processes write their metrics to, read by this server's registry."""

    def __init__(self):
        self.directory = tempfile.mkdtemp(prefix="notifier-metrics-")
        self._collector = MultiProcessCollector(None, path=self.directory)
        REGISTRY.register(self._collector)

    def close(self) -> None:
        REGISTRY.unregister(self._collector)
        shutil.rmtree(self.directory, ignore_errors=True)


def exposition() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
