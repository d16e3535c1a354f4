"""The fault suite: a fan-out (FAULT_RECIPIENTS: 1,200 in CI, 5,000 for the full drill) through a real
`notifier serve` while something breaks.

End state checked every time: each recipient received exactly one message, or its delivery is failed or
skipped with a reason (and then received at most one); the API's counts match what the SMTP server saw;
nothing is left pending, queued or sending.

The drills share one rig (a database, an SMTP server and the service, with the N recipients already stored,
and for the outage drills a RabbitMQ node of their own: the others use the machine's broker, which they never
stop; the multi-instance drills start more servers on the same database and queues); each drill
finds every part running again, however the drill before it left them, and counts and
checks only its own notification.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bson
import pymongo
import pytest

from notifier.embedded import EmbeddedMongo, EmbeddedRabbit
from notifier.procs import free_port, pid_alive, wait_for_port

from .event_receiver import EventReceiver
from .served import Served
from .smtp_server import Behaviour, SmtpServer
from .sse import SseClient
from .support import wait_until

# The drill is 5,000 recipients (FAULT_RECIPIENTS=5000). CI runs a smaller one so the whole suite fits
# its time budget on this machine's embedded database (SecantusDB does ~150-400 document writes/s here);
# every fault still strikes mid-run and the end state is checked recipient by recipient.
N = int(os.environ.get("FAULT_RECIPIENTS", "1200"))
FINAL = ("sent", "failed", "skipped", "cancelled", "expired")
AUTH = "Basic " + base64.b64encode(b"admin:fault-password").decode()
pytestmark = pytest.mark.faults
RABBITMQCTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


class Broker(EmbeddedRabbit):
    """The drills' own RabbitMQ node: stopping it disturbs no other test, nor anyone else on the machine's broker."""

    def __init__(self, data_dir: str):
        super().__init__(data_dir, free_port())

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/"

    def ctl(self, *args: str) -> None:
        subprocess.run(
            [RABBITMQCTL, "-n", self.node, *args], env=self.environment(), check=True, capture_output=True, timeout=300
        )

    def accepting(self) -> bool:
        return wait_for_port(self.host, self.port, 0.5)


class Rig:
    """A broker and a database we can stop, an SMTP server we can make fail, and the service between them."""

    def __init__(self, workdir: Path, amqp_url: str | None = None):
        """With `amqp_url` (the machine's broker), for drills that never stop the broker: no node of its own
        to boot (an Erlang node costs a rig about 10 s of CPU)."""
        self.workdir = workdir
        self.broker = None if amqp_url else Broker(str(workdir / "rabbit"))
        self.mongo_port = free_port()
        self.mongo = EmbeddedMongo(str(workdir / "mongo"), self.mongo_port)
        self.smtp = SmtpServer().start()
        self.notification = ""
        if self.broker is not None:
            self.broker.start()
        self.served = Served(
            workdir / "service",
            amqp_url or self.broker.url,
            MONGO_URL=self.mongo.start(),
            MONGO_TIMEOUT_MS="1000",
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(self.smtp.port),
            CONSUMERS_START="2",
            CONSUMERS_MIN="2",
            CONSUMERS_MAX="3",
            OUTBOX_GRACE="2",
            OUTBOX_SWEEP_INTERVAL="1",
            RECONCILE_INTERVAL="2",
            RETRY_DELAYS="0.5,1,2",
            MAX_ATTEMPTS="6",
            POOL_CHECK_INTERVAL="1",
            SMTP_TIMEOUT="5",
            LEASE_SECONDS="60",
            SCHEDULE_MIN_INTERVAL="1",
            SCHEDULE_RUN_LEASE="5",
            MATERIALIZE_LEASE="3",
            OUTBOUND_ALLOW="127.0.0.1",  # the status-event receiver
            EVENT_RETRY_FIRST="0.3",
            EVENT_RETRY_MAX="2",
            LOG_LEVEL="warning",
        )

    def start(self) -> Rig:
        self.served.start()
        assert self.served.cli("createsuperuser", "--username", "admin", stdin="fault-password\n").returncode == 0
        users = [{"user_id": f"f{i}", "email": f"f{i}@example.com"} for i in range(N)]
        for start in range(0, N, 1000):
            status, body = self.served.call("POST", "/api/v1/users/bulk", {"users": users[start : start + 1000]}, AUTH)
            assert status == 200, body
        self.wait_consumers(2)
        return self

    def ready(self) -> Rig:
        """Every part running again and the SMTP server accepting everything, as a drill expects to find them."""
        if self.broker is not None and not self.broker.accepting():
            self.broker.ctl("start_app")
            self.broker.ctl("await_startup", "--timeout", "300")
        if self.mongo.process is None or self.mongo.process.poll() is not None:
            self.mongo.start()
        if self.served.process is None or self.served.process.poll() is not None:
            self.served.start()
        # Earlier drills' deliveries stay in the database (deleting them takes SecantusDB longer than a drill's
        # set-up should): every count and check here is of this drill's notification only.
        self.smtp.handler.received.clear()
        self.smtp.handler.behaviour = Behaviour()
        self.smtp.handler.refused = 0
        self.wait_consumers(2)
        return self

    def wait_consumers(self, count: int, timeout: float = 60) -> None:
        wait_until(lambda: len(self.served.consumer_pids()) >= count, timeout, f"{count} consumers")

    def fanout(self, **fields) -> str:
        status, body = self.served.call(
            "POST",
            "/api/v1/notifications",
            {
                "title": "Fault drill",
                "text": "Hello {{ name }}",
                "channel": "email",
                "recipients": [f"f{i}" for i in range(N)],
                **fields,
            },
            AUTH,
        )
        assert status == 202, body  # N is past INLINE_RECIPIENTS: the deliveries are stored in the background
        self.notification = body["id"]
        return body["id"]

    def received(self) -> int:
        """Messages of this drill's fan-out the SMTP server accepted."""
        return sum(1 for message in self.smtp.received if message.notification_id == self.notification)

    def counts(self, notification_id: str) -> dict:
        status, body = self.served.call("GET", f"/api/v1/notifications/{notification_id}", None, AUTH)
        assert status == 200, body
        return body

    def settle(self, notification_id: str, timeout: float = 240) -> dict:
        last: dict = {}

        def done():
            last.clear()
            last.update(self.counts(notification_id)["counts"])
            # Every delivery final, and nothing else counted: after an outage the maintained counts may be off
            # until the counts reconciler's next pass (services/counts.py), which the drill waits for.
            final = sum(last.get(s, 0) for s in FINAL) == N
            return final and set(last) <= set(FINAL) and dict(last)

        # Counting by status is a $group over all N deliveries: asking every 0.2 s would take a good share
        # of the database from the run being watched.
        try:
            return wait_until(done, timeout, "every delivery settled", every=2.0)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; counts at the end: {last}") from None

    def check(self, notification_id: str) -> dict:
        """The end state every fault must leave."""
        detail = self.counts(notification_id)
        counts = detail["counts"]
        assert set(counts) <= set(FINAL), counts
        received = self.smtp.handler.count_by_recipient(notification_id)
        assert not [r for r, n in received.items() if n > 1], "somebody got a message twice"
        assert sum(counts.get(s, 0) for s in FINAL) == N
        sent_or_maybe = counts.get("sent", 0) + detail["reasons"].get("interrupted", 0)
        assert counts.get("sent", 0) <= len(received) <= sent_or_maybe, (counts, len(received))
        failed = {d["user_id"] for d in self.deliveries(notification_id, "failed") if d["reason"]}
        assert len(failed) == counts.get("failed", 0), "a failed delivery without a reason"
        unsent = {d["user_id"] for status in ("cancelled", "expired") for d in self.deliveries(notification_id, status)}
        assert len(unsent) == counts.get("cancelled", 0) + counts.get("expired", 0)
        for user in (f"f{i}" for i in range(N)):
            if user in unsent:
                assert f"{user}@example.com" not in received, f"{user} was cancelled or expired, and got it"
            elif user not in failed:
                assert received.get(f"{user}@example.com") == 1, f"{user} got nothing and is not failed"
        return counts

    def deliveries(self, notification_id: str, status: str) -> list[dict]:
        found: list[dict] = []
        cursor = None
        while True:
            path = f"/api/v1/notifications/{notification_id}/deliveries?status={status}&limit=200"
            _, page = self.served.call("GET", path + (f"&cursor={cursor}" if cursor else ""), None, AUTH)
            found += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return found

    def close(self) -> None:
        try:
            self.served.cleanup()
        finally:
            self.smtp.stop()
            self.mongo.stop()
            if self.broker is not None:
                self.broker.stop()


def shared_rig(workdir: Path, amqp_url: str | None = None):
    rig = Rig(workdir, amqp_url)
    try:
        yield rig.start()
    finally:
        rig.close()


# Three rigs, so that three xdist workers run the drills side by side: one for the drills that kill processes
# of the service, one for the outages of what it depends on (and the quiet-hours drill, to even them out), one
# for the drills of several instances (the inbox streams' too) and of deliveries waiting for send_at.
@pytest.fixture(scope="module")
def crash_rig(tmp_path_factory, amqp_url):
    yield from shared_rig(tmp_path_factory.mktemp("crashes"), amqp_url)  # kills processes, never the broker


@pytest.fixture(scope="module")
def restart_rig(tmp_path_factory, amqp_url):
    yield from shared_rig(tmp_path_factory.mktemp("restarts"), amqp_url)  # restarts servers, never the broker


@pytest.fixture(scope="module")
def outage_rig(tmp_path_factory):
    yield from shared_rig(tmp_path_factory.mktemp("outages"))


def test_consumers_killed_again_and_again(crash_rig):
    rig = crash_rig.ready()
    notification = rig.fanout()
    for threshold in (N // 10, 3 * N // 10, N // 2, 7 * N // 10):
        wait_until(lambda reached=threshold: rig.received() >= reached, 120, f"{threshold} received")
        victims = rig.served.consumer_pids()
        os.kill(victims[0], signal.SIGKILL)
    rig.settle(notification)
    rig.check(notification)
    rig.wait_consumers(2)


def _broker_down(rig: Rig) -> tuple[int, dict] | None:
    """/readyz's answer once it says 503 (the server lost RabbitMQ), else None."""
    status, body = rig.served.call("GET", "/readyz")
    return (status, body) if status == 503 else None


def test_broker_restarted_mid_run(outage_rig):
    rig = outage_rig.ready()
    notification = rig.fanout()
    wait_until(lambda: rig.received() >= N // 5, 120, "a fifth received")
    rig.broker.ctl("stop_app")
    try:
        _, body = wait_until(lambda: _broker_down(rig), 30, "the server seeing the broker down")
        assert body["checks"]["rabbitmq"].startswith("down")
        accepted, _ = rig.served.call(
            "POST",
            "/api/v1/notifications",
            {"title": "During the outage", "text": "x", "channel": "email", "recipients": ["f1"]},
            AUTH,
        )
        assert accepted == 201
    finally:
        rig.broker.ctl("start_app")
        rig.broker.ctl("await_startup", "--timeout", "300")
    rig.settle(notification)
    assert rig.check(notification) == {"sent": N}


def test_database_stopped_for_five_seconds(outage_rig):
    rig = outage_rig.ready()
    notification = rig.fanout()
    wait_until(lambda: rig.received() >= N // 5, 120, "a fifth received")
    rig.mongo.stop()
    try:
        started = time.monotonic()
        statuses = set()
        while time.monotonic() - started < 5:
            status, body = rig.served.call("GET", "/api/v1/notifications?limit=1", None, AUTH)
            statuses.add(status)
            if status == 503:
                assert "database" in body["message"].lower()
            time.sleep(0.3)
        assert statuses == {503}, statuses
    finally:
        rig.mongo.start()
    rig.settle(notification)
    assert rig.check(notification) == {"sent": N}


def test_status_events_arrive_once_per_change_through_kills_a_broker_restart_and_a_failing_receiver(outage_rig):
    """An endpoint subscribed to every event type while a fan-out goes: a consumer SIGKILLed, the receiver
    answering 500 for a while, RabbitMQ restarted, the server SIGKILLed and restarted. A receiver that drops
    repeated ids has one event per delivery (its final status) and one completion, each id in the feed; a
    replay sends the same ids again."""
    rig = outage_rig.ready()
    receiver = EventReceiver().start()
    status, endpoint = rig.served.call("POST", "/api/v1/event-endpoints", {"url": receiver.url}, AUTH)
    assert status == 201, endpoint
    receiver.secret = endpoint["secret"]
    try:
        notification = rig.fanout()
        wait_until(lambda: rig.received() >= N // 10, 120, "a tenth received")
        os.kill(rig.served.consumer_pids()[0], signal.SIGKILL)
        wait_until(lambda: rig.received() >= N // 4, 120, "a quarter received")
        receiver.failing = True
        wait_until(lambda: receiver.refused >= 3, 60, "the receiver refusing")
        refused = receiver.refused
        # The outage of the receiver lasts until the sender has retried into it (its backoff is short here).
        wait_until(lambda: receiver.refused > refused, 60, "a retry refused")
        receiver.failing = False
        wait_until(lambda: rig.received() >= N // 2, 120, "half received")
        rig.broker.ctl("stop_app")
        try:
            wait_until(lambda: _broker_down(rig), 30, "the server seeing the broker down")
        finally:
            rig.broker.ctl("start_app")
            rig.broker.ctl("await_startup", "--timeout", "300")
        wait_until(lambda: rig.received() >= 7 * N // 10, 120, "seven tenths received")
        consumers = rig.served.consumer_pids()
        rig.served.stop(signal.SIGKILL)
        wait_until(lambda: not any(pid_alive(pid) for pid in consumers), 60, "no orphan consumers")
        rig.served.start()
        rig.settle(notification)
        counts = rig.check(notification)

        def all_events():
            return len(receiver.of(notification)) >= N + 1

        try:
            wait_until(all_events, 120, "an event per delivery and the completion", every=1.0)
        except AssertionError:
            _, state = rig.served.call("GET", f"/api/v1/event-endpoints/{endpoint['id']}", None, AUTH)
            kinds = Counter(event["type"] for event in receiver.of(notification))
            raise AssertionError(
                f"{len(receiver.of(notification))} events {kinds}, {counts}; endpoint {state}"
            ) from None
        events = receiver.of(notification)
        kinds = Counter(event["type"] for event in events)
        assert kinds == Counter(
            {"notification.completed": 1, **{f"delivery.{status}": n for status, n in counts.items()}}
        ), (kinds, counts)
        per_delivery = Counter(event["data"]["delivery_id"] for event in events if "delivery_id" in event["data"])
        assert len(per_delivery) == N and set(per_delivery.values()) == {1}
        assert receiver.badly_signed == 0
        completed = next(event for event in events if event["type"] == "notification.completed")
        assert completed["data"]["counts"] == counts and completed["id"] == max(e["id"] for e in events)
        feed, after = [], ""
        while True:
            _, page = rig.served.call("GET", f"/api/v1/events?limit=500{after}", None, AUTH)
            feed += [e["id"] for e in page["items"] if e["data"]["notification_id"] == notification]
            if not page["items"]:
                break
            after = f"&after={page['next_after']}"
        assert sorted(feed) == feed and set(feed) == {event["id"] for event in events}
        posted = sum(receiver.posts.values())
        since = datetime.fromtimestamp(bson.ObjectId(min(feed)).generation_time.timestamp() - 1, UTC).isoformat()
        status, _ = rig.served.call("POST", f"/api/v1/event-endpoints/{endpoint['id']}/replay", {"since": since}, AUTH)
        assert status == 200
        wait_until(lambda: sum(receiver.posts.values()) >= posted + N + 1, 120, "the replay", every=1.0)
        assert len(receiver.of(notification)) == N + 1  # the same ids again, nothing new
    finally:
        rig.served.call("DELETE", f"/api/v1/event-endpoints/{endpoint['id']}", None, AUTH)
        receiver.stop()


def test_smtp_temporary_then_permanent_failures(outage_rig):
    """30% of messages get a temporary 451 throughout; from the middle on, 50 addresses get a permanent 550."""
    rig = outage_rig.ready()
    rig.smtp.behaviour.tempfail_rate = 0.3
    notification = rig.fanout()
    wait_until(lambda: rig.received() >= 3 * N // 10, 120, "three tenths received")
    already = set(rig.smtp.handler.count_by_recipient(notification))
    rejected = [a for a in (f"f{i}@example.com" for i in range(N - 1, 0, -7)) if a not in already][:50]
    rig.smtp.behaviour.reject = set(rejected)
    rig.settle(notification)
    counts = rig.check(notification)
    reasons = rig.counts(notification)["reasons"]
    assert set(reasons) <= {"rejected", "attempts_exhausted"}, reasons
    assert 0 < reasons["rejected"] <= 50
    # with six attempts at 30% each, a handful may exhaust them; they are failed with that reason
    assert counts["failed"] == sum(reasons.values()) and reasons.get("attempts_exhausted", 0) < 30
    assert rig.smtp.handler.refused > N // 3  # about 0.43 N expected: 30% of every attempt


def test_server_killed_and_restarted(crash_rig):
    rig = crash_rig.ready()
    notification = rig.fanout()
    wait_until(lambda: rig.received() >= 3 * N // 10, 120, "three tenths received")
    consumers = rig.served.consumer_pids()
    rig.served.stop(signal.SIGKILL)
    wait_until(lambda: not any(pid_alive(pid) for pid in consumers), 60, "no orphan consumers")
    rig.served.start()
    rig.settle(notification)
    rig.check(notification)


def test_server_killed_while_storing_a_big_create_and_restarted(crash_rig):
    """SIGKILL while the background fan-out is storing deliveries: the next server resumes it from its last
    progress record once the claim ran out (MATERIALIZE_LEASE), and every recipient gets one message."""
    rig = crash_rig.ready()
    with pymongo.MongoClient(rig.mongo.url) as client:
        db = client["notifier"]
        notification = rig.fanout()
        query = {"notification_id": bson.ObjectId(notification)}
        wait_until(lambda: db["deliveries"].count_documents(query) >= 1, 60, "the first deliveries stored", every=0.02)
        consumers = rig.served.consumer_pids()
        rig.served.stop(signal.SIGKILL)
        stored = db["deliveries"].count_documents(query)
        left = db["notifications"].find_one({"_id": bson.ObjectId(notification)})
        assert stored < N and left.get("materialize_at") is not None, "killed after the fan-out was stored"
        wait_until(lambda: not any(pid_alive(pid) for pid in consumers), 60, "no orphan consumers")
        rig.served.start()
        rig.settle(notification)
        rig.check(notification)
        assert rig.counts(notification)["fanout"] == "done"
        assert db["recipient_chunks"].count_documents(query) == 0


def test_server_stopped_with_sigterm_mid_fanout(crash_rig):
    """SIGTERM drains: consumers finish and record what they hold, nothing is left sending, the server exits 0;
    the next start finishes the fan-out, and nobody gets a message twice."""
    rig = crash_rig.ready()
    notification = rig.fanout()
    wait_until(lambda: rig.received() >= 3 * N // 10, 120, "three tenths received")
    consumers = rig.served.consumer_pids()
    assert rig.served.stop(signal.SIGTERM) == 0, rig.served.log_tail()
    assert not any(pid_alive(pid) for pid in consumers), "a consumer outlived the server"
    with pymongo.MongoClient(rig.mongo.url) as client:
        left = client["notifier"]["deliveries"].count_documents({"status": "sending"})
    assert left == 0, f"{left} deliveries were left sending: the consumers did not drain"
    rig.served.start()
    rig.settle(notification)
    assert rig.check(notification) == {"sent": N}


def test_server_killed_while_deliveries_wait_for_send_at_then_restarted(restart_rig):
    """A fan-out due in a few seconds, part of it cancelled, then the server SIGKILLed before its send_at and
    restarted after it: every recipient not cancelled is mailed once, as soon as it is back; none of the
    cancelled ones is."""
    rig = restart_rig.ready()
    send_at = datetime.now(UTC) + timedelta(seconds=8)
    notification = rig.fanout(send_at=send_at.isoformat())
    cancelled = [f"f{i}" for i in range(0, N, 6)]
    status, answer = rig.served.call(
        "POST", f"/api/v1/notifications/{notification}/cancel", {"user_ids": cancelled}, AUTH
    )
    assert status == 200, answer
    consumers = rig.served.consumer_pids()
    rig.served.stop(signal.SIGKILL)
    wait_until(lambda: not any(pid_alive(pid) for pid in consumers), 60, "no orphan consumers")
    assert rig.received() == 0, "something went before its send_at"
    wait_until(lambda: datetime.now(UTC) > send_at + timedelta(seconds=2), 30, "send_at passed", every=0.5)
    rig.served.start()
    rig.settle(notification)
    counts = rig.check(notification)
    # Named while the fan-out was still storing them, the cancelled recipients stored later are cancelled too.
    assert counts.get("cancelled", 0) == len(cancelled) >= answer["cancelled"]
    assert counts.get("sent", 0) + counts.get("cancelled", 0) + counts.get("failed", 0) == N
    assert all(m.at >= send_at.timestamp() for m in rig.smtp.received if m.notification_id == notification)


def _quiet_for(rig: Rig, users: list[str], quiet: dict | None) -> None:
    for start in range(0, len(users), 1000):
        items = [{"user_id": user, "quiet_hours": quiet} for user in users[start : start + 1000]]
        status, body = rig.served.call("POST", "/api/v1/users/bulk", {"users": items}, AUTH)
        assert status == 200, body


def test_server_killed_while_deliveries_are_deferred_by_quiet_hours_then_restarted(outage_rig):
    """An eighth of the recipients in quiet hours ending in a few seconds, an eighth in quiet hours ending after
    the notification expires; the server SIGKILLed while the first are deferred and restarted after their
    window: each of them is mailed once, after its window's end, each of the others expired unsent, everybody
    else mailed once. (On the outage rig: the other two have longer drills.)"""
    rig = outage_rig.ready()
    now = datetime.now(UTC)
    # Long enough for the consumers to reach each of them inside it (one reached after it is sent at once).
    window_end = now + timedelta(seconds=max(45, N / 25))
    deferred = [f"f{i}" for i in range(1, N, 8)]
    expiring = [f"f{i}" for i in range(2, N, 8)]
    start = (now - timedelta(hours=1)).strftime("%H:%M:%S")
    _quiet_for(rig, deferred, {"start": start, "end": window_end.strftime("%H:%M:%S")})
    _quiet_for(rig, expiring, {"start": start, "end": (now + timedelta(hours=2)).strftime("%H:%M:%S")})
    try:
        # The quiet recipients first: consumers reach them early in the fan-out, inside the window, however
        # busy the machine (the rest follow in any order).
        others = [f"f{i}" for i in range(N) if i % 8 not in (1, 2)]
        notification = rig.fanout(
            expires_at=(window_end + timedelta(minutes=3)).isoformat(), recipients=deferred + expiring + others
        )
        window = (window_end - now).total_seconds()
        try:
            wait_until(
                lambda: {d["user_id"] for d in rig.deliveries(notification, "deferred")} == set(deferred),
                window + 30,
                "the quiet recipients deferred",
                every=1.0,
            )
        except AssertionError as exc:
            reached = {m.recipient.split("@")[0] for m in rig.smtp.received if m.notification_id == notification}
            raise AssertionError(
                f"{exc}; counts {rig.counts(notification)['counts']}, quiet ones mailed (reached after their "
                f"window): {sorted(reached & set(deferred))[:10]}"
            ) from exc
        consumers = rig.served.consumer_pids()
        rig.served.stop(signal.SIGKILL)
        wait_until(lambda: not any(pid_alive(pid) for pid in consumers), 60, "no orphan consumers")
        early = {m.recipient for m in rig.smtp.received if m.notification_id == notification}
        assert not early & {f"{user}@example.com" for user in deferred + expiring}, "sent in quiet hours"
        wait_until(
            lambda: datetime.now(UTC) > window_end + timedelta(seconds=1), window + 30, "the window over", every=0.5
        )
        rig.served.start()
        rig.settle(notification)
        counts = rig.check(notification)
        expired = {d["user_id"]: d["reason"] for d in rig.deliveries(notification, "expired")}
        assert expired == dict.fromkeys(expiring, "expired_in_quiet_hours")
        assert counts.get("sent", 0) + counts.get("failed", 0) == N - len(expiring)
        late = [
            m for m in rig.smtp.received if m.notification_id == notification and m.recipient.split("@")[0] in deferred
        ]
        assert len(late) == len(deferred) - counts.get("failed", 0)
        assert all(m.at >= window_end.replace(microsecond=0).timestamp() for m in late), "sent before the window end"
    finally:
        _quiet_for(rig, deferred + expiring, None)


def test_one_of_three_instances_killed_mid_fanout(restart_rig):
    """Three servers on one database and one broker, as a team scales out: the one that took the fan-out is
    SIGKILLed mid-way while a schedule fires every two seconds. The two others finish the fan-out (their outbox
    sweeps, their consumers once the pools see the dead one's gone) and keep firing, each able to take every
    occurrence: every recipient mailed once, every occurrence fired once."""
    rig = restart_rig.ready()
    first = rig.served
    second = first.peer(rig.workdir / "second").start()
    third = first.peer(rig.workdir / "third").start()
    try:
        tick = {"title": "Tick", "text": "x", "channel": "email"}
        status, schedule = first.call(
            "POST", "/api/v1/schedules", {"notification": tick, "user_ids": ["f0", "f1"], "interval_seconds": 2}, AUTH
        )
        assert status == 201, schedule
        notification = rig.fanout()
        wait_until(lambda: rig.received() >= 3 * N // 10, 120, "three tenths received")
        consumers = first.consumer_pids()
        first.stop(signal.SIGKILL)
        killed_at = time.time()
        wait_until(lambda: not any(pid_alive(pid) for pid in consumers), 60, "no orphan consumers")
        rig.served = second
        rig.settle(notification)
        rig.check(notification)

        def fired_since_the_kill() -> bool:
            _, runs = third.call("GET", f"/api/v1/schedules/{schedule['id']}/runs?limit=100", None, AUTH)
            return sum(1 for run in runs["items"] if _epoch(run["at"]) > killed_at and run["status"] == "done") >= 3

        wait_until(fired_since_the_kill, 60, "three occurrences fired by the survivors", every=1.0)
        assert second.call("POST", f"/api/v1/schedules/{schedule['id']}/disable", None, AUTH)[0] == 200

        def runs_finished() -> list | None:
            _, runs = second.call("GET", f"/api/v1/schedules/{schedule['id']}/runs?limit=100", None, AUTH)
            return runs["items"] if all(run["status"] == "done" for run in runs["items"]) else None

        runs = wait_until(runs_finished, 60, "every firing finished (a stalled one is taken over)", every=1.0)
        assert len({run["at"] for run in runs}) == len(runs)

        def ticks_final() -> bool:
            # A firing is done once its deliveries are stored: the last ones may still be on their way.
            counts = second.call("GET", f"/api/v1/notifications/{schedule['notification_id']}", None, AUTH)[1]
            return set(counts["counts"]) <= set(FINAL) and sum(counts["counts"].values()) == 2 * len(runs)

        wait_until(ticks_final, 60, "every occurrence's deliveries final", every=1.0)
        ticks = [m for m in rig.smtp.received if m.notification_id == schedule["notification_id"]]
        by_delivery = Counter(m.delivery_id for m in ticks)
        assert set(by_delivery.values()) == {1}, "an occurrence's message was sent twice"
        assert len(by_delivery) == 2 * len(runs), (len(by_delivery), len(runs))
        assert Counter(m.recipient for m in ticks) == {"f0@example.com": len(runs), "f1@example.com": len(runs)}
    finally:
        rig.served = first
        stopped = [peer.stop(signal.SIGTERM) for peer in (second, third)]
        assert stopped == [0, 0], second.log_tail() + third.log_tail()


def _epoch(instant: str) -> float:
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp()


STREAM_USERS = 20
STREAM_ITEMS = 30


def test_inbox_streams_resume_on_another_instance_after_theirs_is_sigkilled(restart_rig):
    """Streams of 20 users on one server while inbox notifications arrive; that server is SIGKILLed mid-way
    (its consumers with it), the clients reconnect to a second instance with their Last-Event-ID while the
    rest arrive there: every user's stream has every one of their 30 items exactly once, numbered without a
    gap, and their counts match."""
    rig = restart_rig.ready()
    first = rig.served
    second = first.peer(rig.workdir / "stream-second").start()
    users = [f"s{i}" for i in range(STREAM_USERS)]
    made = first.cli("user-token", *users, "--ttl", "3600")
    assert made.returncode == 0, made.stderr
    tokens = dict(zip(users, made.stdout.split(), strict=True))
    try:
        asyncio.run(_stream_drill(rig, first, second, users, tokens))
    finally:
        rig.served = first
        assert second.stop(signal.SIGTERM) == 0, second.log_tail()


async def _stream_drill(rig, first, second, users, tokens) -> None:
    loop = asyncio.get_running_loop()
    seen: dict[str, list] = {user: [] for user in users}

    async def open_on(served, user, after=None):
        headers = {"Authorization": tokens[user]}
        if after is not None:
            headers["Last-Event-ID"] = str(after)
        client = await SseClient.open(served.url, "/api/v1/me/stream", headers)
        assert client.status == 200, client.body
        return client

    async def read(client, user, until: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while sum(e.type == "new" for e in seen[user]) < until and time.monotonic() < deadline:
            try:
                event = await client.next_event(timeout=max(deadline - time.monotonic(), 0.1))
            except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
                return
            if event is None:
                return
            if event.type != "counts":
                seen[user].append(event)

    def create(served) -> None:
        body = {"title": "Stream drill", "text": "x", "channel": "inbox", "recipients": users}
        status, created = served.call("POST", "/api/v1/notifications", body, AUTH)
        assert status == 201, created

    clients = {user: await open_on(first, user) for user in users}
    starts = {user: (await clients[user].next_event()).seq for user in users}  # the opening counts
    for _ in range(STREAM_ITEMS // 3):
        await loop.run_in_executor(None, create, first)
    await asyncio.gather(*(read(clients[user], user, 3, 60) for user in users))
    consumers = first.consumer_pids()
    await loop.run_in_executor(None, first.stop, signal.SIGKILL)  # mid-way: some items still on their way
    await asyncio.gather(*(read(clients[user], user, STREAM_ITEMS, 2) for user in users))  # what was sent
    for client in clients.values():
        client.close()
    await loop.run_in_executor(
        None, lambda: wait_until(lambda: not any(pid_alive(pid) for pid in consumers), 60, "no orphan consumers")
    )
    for _ in range(STREAM_ITEMS - STREAM_ITEMS // 3):
        await loop.run_in_executor(None, create, second)
    resumed = {}
    for user in users:
        last = seen[user][-1].seq if seen[user] else starts[user]
        resumed[user] = await open_on(second, user, after=last)
    await asyncio.gather(*(read(resumed[user], user, STREAM_ITEMS, 240) for user in users))
    for client in resumed.values():
        client.close()
    for user in users:
        events = seen[user]
        assert [e.seq for e in events] == list(range(starts[user] + 1, starts[user] + 1 + len(events))), user
        arrived = [e.data["item"]["id"] for e in events if e.type == "new"]
        assert len(arrived) == STREAM_ITEMS == len(set(arrived)), (user, len(arrived), len(set(arrived)))
        status, counts = second.call("GET", "/api/v1/me/notifications/counts", None, tokens[user])
        assert status == 200 and counts == {"total": STREAM_ITEMS, "unread": STREAM_ITEMS, "unseen": STREAM_ITEMS}
