"""Status events during a fan-out: the same N-recipient fan-out without an event endpoint (the reference) and
with one subscribed to every type, through the real service, to a local receiver that checks signatures and
drops repeats. Event throughput is N delivery events over the time from the create to the last one's
arrival; lag is each event's arrival minus the instant of its state change."""

from __future__ import annotations

import time
from datetime import datetime

from ..event_receiver import EventReceiver
from .fanout import send_to_all, wait_consumers
from .harness import Infra, add_users, admin_header


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(infra: Infra, n: int, consumers: int, events: bool) -> dict:
    service = infra.service(consumers, MAX_RECIPIENTS=str(max(n, 100000)), OUTBOUND_ALLOW="127.0.0.1")
    receiver = EventReceiver().start()
    try:
        service.start()
        auth = admin_header(service)
        users = add_users(service, auth, n)
        wait_consumers(service, auth, consumers)
        if events:
            status, endpoint = service.call("POST", "/api/v1/event-endpoints", {"url": receiver.url}, auth)
            assert status == 201, endpoint
            receiver.secret = endpoint["secret"]
        started, _, _, _, finished = send_to_all(infra, service, auth, users, "Your order shipped.")
        sent_after = finished - started
        measured = {"fanout_rate": n / sent_after, "sent_after": sent_after}
        if not events:
            return measured
        deadline = time.monotonic() + max(600, n / 20)
        while len(receiver.events) < n + 1:  # every delivery's event and the completion
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(receiver.events)} of {n + 1} events arrived")
            time.sleep(0.1)
        assert receiver.badly_signed == 0
        delivered = [e for e in receiver.events.values() if e["type"] == "delivery.sent"]
        last = max(receiver.arrived[e["id"]] for e in delivered)
        lags = [
            (receiver.arrived[e["id"]] - datetime.fromisoformat(e["created_at"]).timestamp()) * 1000 for e in delivered
        ]
        return {
            **measured,
            "event_rate": n / (last - started),
            "lag_p50_ms": percentile(lags, 0.5),
            "lag_p99_ms": percentile(lags, 0.99),
            "repeats": sum(receiver.posts.values()) - len(receiver.posts),
        }
    finally:
        receiver.stop()
        service.stop()
        service.cleanup(max_recipients=n)
