"""What a consumer process counts; written to PROMETHEUS_MULTIPROC_DIR, which the server exposes.

Only consumers import this module (the server's own metrics are in notifier.metrics).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# registry=None: in multiprocess mode the values go to files whatever the registry; the server collects them.
DELIVERIES = Counter("notifier_deliveries_total", "Deliveries finished by the consumers, by channel and status "
                     "(sent, skipped, failed, retry)", ["channel", "status"], registry=None)
SEND_SECONDS = Histogram("notifier_send_seconds", "Time a channel took to send one delivery",
                         ["channel"], buckets=LATENCY_BUCKETS, registry=None)
