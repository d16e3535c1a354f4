"""Scheduled wake-up (issue 14), through the real service: how late after its send_at each scheduled email is
sent, and how fast deliveries all due at one instant drain beside the same fan-out sent at once.

Lateness is the delivery document's sent_at (the service's clock, written once the SMTP sink accepted the
message) minus the send_at given at the create. Every last-sent instant is the largest sent_at in the database,
for both sides of the drain ratio: the immediate fan-out from the create call to it (as fanout.py), the
scheduled one from its due instant to it.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from pymongo import MongoClient

from .express import create_with_retries, percentile
from .fanout import wait_consumers
from .harness import Infra, add_users, admin_header

PRECISION = 1000  # deliveries per precision case
LEAD = 15.0  # seconds from the create to the (first) due instant of a precision case
SPREAD = 60  # notifications of the spread case, due one second apart
POLL = 0.5


def _due_in(seconds: float) -> datetime:
    """A send_at `seconds` from now, to the millisecond (what the database keeps)."""
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _body(recipients: list[str], send_at: datetime | None = None) -> dict:
    body = {"title": "Hello {{ name }}", "text": "Your reminder.", "channel": "email", "recipients": recipients}
    if send_at is not None:
        body["send_at"] = send_at.isoformat(timespec="milliseconds")
    return body


def _sleep_until(moment: datetime) -> None:
    left = (moment - datetime.now(UTC)).total_seconds()
    if left > 0:
        time.sleep(left)


def _wait_sent(infra: Infra, deliveries, ids: list[ObjectId], n: int, timeout: float) -> list[dict]:
    """Once the sink has the n messages and every delivery reads `sent`: their (notification_id, sent_at)."""
    infra.sink.wait_for(n, timeout=timeout)
    query = {"notification_id": {"$in": ids}}
    deadline = time.monotonic() + 120
    while deliveries.count_documents({**query, "status": "sent"}) < n:
        if time.monotonic() > deadline:
            statuses = list(deliveries.aggregate([{"$match": query}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]))
            raise TimeoutError(f"not every delivery was recorded sent: {statuses}")
        time.sleep(POLL)
    stats = infra.sink.stats()
    assert stats["duplicates"] == 0, stats
    return list(deliveries.find({**query, "status": "sent"}, {"notification_id": 1, "sent_at": 1}))


def _wait_stored(deliveries, notification_id: ObjectId, n: int, due: datetime) -> float:
    """Seconds before `due` at which all n deliveries were stored (scheduled); negative: stored after it."""
    while deliveries.count_documents({"notification_id": notification_id}) < n:
        if datetime.now(UTC) > due + timedelta(seconds=120):
            raise TimeoutError("the scheduled deliveries were not all stored")
        time.sleep(0.2)
    return (due - datetime.now(UTC)).total_seconds()


def _lateness(sent: list[dict], due: dict) -> dict:
    late = [(d["sent_at"] - due[d["notification_id"]]).total_seconds() * 1000 for d in sent]
    return {
        "min_ms": min(late),
        "p50_ms": statistics.median(late),
        "p99_ms": percentile(late, 0.99),
        "max_ms": max(late),
    }


def describe(lateness: dict) -> str:
    return " ".join(f"{stat} {lateness[f'{stat}_ms']:.0f} ms" for stat in ("min", "p50", "p99", "max"))


def one_instant(infra: Infra, service, auth: str, deliveries, users: list[str]) -> dict:
    """One notification of PRECISION recipients due LEAD seconds after its create."""
    infra.sink.reset()
    send_at = _due_in(LEAD)
    created = create_with_retries(service, auth, _body(users[:PRECISION], send_at))
    notification_id = ObjectId(created["id"])
    margin = _wait_stored(deliveries, notification_id, PRECISION, send_at)
    sent = _wait_sent(infra, deliveries, [notification_id], PRECISION, LEAD + 300)
    return {**_lateness(sent, {notification_id: send_at}), "stored_before_due_s": margin}


def spread(infra: Infra, service, auth: str, deliveries, users: list[str]) -> dict:
    """PRECISION deliveries in SPREAD notifications, the first due LEAD seconds after the first create, then one
    a second."""
    infra.sink.reset()
    first = _due_in(LEAD)
    due: dict = {}
    for i in range(SPREAD):
        share = users[i * PRECISION // SPREAD : (i + 1) * PRECISION // SPREAD]
        send_at = first + timedelta(seconds=i)
        created = create_with_retries(service, auth, _body(share, send_at))
        due[ObjectId(created["id"])] = send_at
    margin = (first - datetime.now(UTC)).total_seconds()
    sent = _wait_sent(infra, deliveries, list(due), PRECISION, LEAD + SPREAD + 300)
    return {**_lateness(sent, due), "created_before_first_due_s": margin}


def drain(infra: Infra, service, auth: str, deliveries, users: list[str]) -> dict:
    """The same n recipients sent at once (create call to last sent_at), then due at one instant (due instant
    to last sent_at); the scheduled create is stored well before its instant, with nothing else running."""
    n = len(users)
    infra.sink.reset()
    started = datetime.now(UTC)
    created = create_with_retries(service, auth, _body(users))
    immediate_id = ObjectId(created["id"])
    sent = _wait_sent(infra, deliveries, [immediate_id], n, max(600, n / 20))
    immediate_seconds = (max(d["sent_at"] for d in sent) - started).total_seconds()

    infra.sink.reset()
    # 80 s at 20,000: storing them in the background took 19-22 s here, and 40 s under a load average of 11
    lead = max(LEAD, n / 250)
    send_at = _due_in(lead)
    created = create_with_retries(service, auth, _body(users, send_at))
    scheduled_id = ObjectId(created["id"])
    margin = _wait_stored(deliveries, scheduled_id, n, send_at)
    sent = _wait_sent(infra, deliveries, [scheduled_id], n, lead + max(600, n / 20))
    scheduled_seconds = (max(d["sent_at"] for d in sent) - send_at).total_seconds()
    first_ms = (min(d["sent_at"] for d in sent) - send_at).total_seconds() * 1000
    return {
        "immediate_rate": n / immediate_seconds,
        "scheduled_rate": n / scheduled_seconds,
        "ratio": immediate_seconds / scheduled_seconds,
        "immediate_seconds": immediate_seconds,
        "scheduled_seconds": scheduled_seconds,
        "scheduled_first_sent_ms": first_ms,
        "scheduled_lateness": _lateness(sent, {scheduled_id: send_at}),
        "stored_before_due_s": margin,
    }


def run(infra: Infra, n: int, consumers: int) -> dict:
    service = infra.service(consumers, MAX_RECIPIENTS=str(max(n, 100000)))
    client = MongoClient(infra.mongo_url, tz_aware=True)
    try:
        service.start()
        auth = admin_header(service)
        users = add_users(service, auth, max(n, PRECISION))
        wait_consumers(service, auth, consumers)
        deliveries = client[service.env["MONGO_DB"]]["deliveries"]
        load = [os.getloadavg()[0]]
        result = {
            "one_instant": one_instant(infra, service, auth, deliveries, users),
            "spread": spread(infra, service, auth, deliveries, users),
            "drain": drain(infra, service, auth, deliveries, users[:n]),
        }
        load.append(os.getloadavg()[0])
        return {**result, "load_1min": load}
    finally:
        client.close()
        service.stop(timeout=300)
        service.cleanup(max_recipients=n)
