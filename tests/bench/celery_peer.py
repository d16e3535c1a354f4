"""The peers: the same emails sent by a minimal Celery app, written the way a good Celery user would.

RabbitMQ broker, one task per email, late acks, and one SMTP connection per worker process, reused.

Two peers share this app and its settings. `send_email` writes nothing. `send_and_record` does what the
Django + Celery service notifier replaced did with its database: the producer stores one document per
delivery (status `pending`) in one `insert_many` before it enqueues, as a Django `bulk_create` would, and
each task, after its SMTP send, writes its delivery's status (`sent`, or `failed` once retries are spent)
with one `update_one`, as a Django `save()` would. The documents go to the benchmark's own SecantusDB
(through pymongo, one client per worker process, reused) under a database name of their own.

Run as a worker with `celery -A tests.bench.celery_peer worker`; `run()` drives a whole measurement.
"""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from bson import ObjectId
from celery import Celery
from pymongo import MongoClient
from pymongo.collection import Collection

from .harness import AMQP_URL, REPO

QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "bench-celery")
app = Celery("bench", broker=AMQP_URL)
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=4,
    task_default_queue=QUEUE,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_smtp: smtplib.SMTP | None = None
_deliveries: Collection | None = None


def _connection() -> smtplib.SMTP:
    global _smtp
    if _smtp is None:
        _smtp = smtplib.SMTP("127.0.0.1", int(os.environ["BENCH_SMTP_PORT"]), timeout=30)
    return _smtp


def _collection() -> Collection:
    """This worker process's deliveries collection (a client made after the fork, reused by every task)."""
    global _deliveries
    if _deliveries is None:
        client: MongoClient = MongoClient(os.environ["BENCH_MONGO_URL"], serverSelectionTimeoutMS=30000)
        _deliveries = client[os.environ["BENCH_MONGO_DB"]]["deliveries"]
    return _deliveries


def _message(batch: str, to: str, name: str) -> MIMEMultipart:
    message = MIMEMultipart("alternative")
    message["From"] = "bench@localhost"
    message["To"] = to
    message["Subject"] = f"Hello {name}"
    message["X-Bench-Batch"] = batch
    message.attach(MIMEText("Your weekly digest is ready.", "plain", "utf-8"))
    message.attach(MIMEText("<p>Your weekly digest is ready.</p>", "html", "utf-8"))
    return message


@app.task(bind=True, max_retries=5, default_retry_delay=1)
def send_email(self, batch: str, to: str, name: str) -> None:
    global _smtp
    try:
        _connection().send_message(_message(batch, to, name))
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        _smtp = None
        raise self.retry(exc=exc) from exc


@app.task(bind=True, max_retries=5, default_retry_delay=1)
def send_and_record(self, batch: str, delivery_id: str, to: str, name: str) -> None:
    """`send_email`, then the delivery's status saved: one update per task, as a Django `save()`."""
    global _smtp
    try:
        _connection().send_message(_message(batch, to, name))
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        _smtp = None
        if self.request.retries >= self.max_retries:
            _collection().update_one(
                {"_id": ObjectId(delivery_id)},
                {"$set": {"status": "failed", "error": str(exc)[:200], "updated_at": datetime.now(UTC)}},
            )
            raise
        raise self.retry(exc=exc) from exc
    now = datetime.now(UTC)
    _collection().update_one(
        {"_id": ObjectId(delivery_id)}, {"$set": {"status": "sent", "sent_at": now, "updated_at": now}}
    )


def _wait_for_consumers(queue: str, workers: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with app.connection_for_write() as connection:
        while time.monotonic() < deadline:
            try:
                if connection.default_channel.queue_declare(queue, passive=True).consumer_count >= workers:
                    return
            except Exception:  # the queue does not exist until the worker declares it
                connection.close()
            time.sleep(0.1)
    raise TimeoutError(f"no Celery worker consumes {queue}")


def _worker(queue: str, workers: int, env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.bench.celery_peer",
            "worker",
            "--concurrency",
            str(workers),
            "--pool",
            "prefork",
            "--loglevel",
            "WARNING",
            "-Q",
            queue,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


def run(sink, n: int, workers: int, mongo_url: str | None = None) -> dict:
    """Emails per second from the first enqueue to the last one received by the sink.

    With `mongo_url`, the recording peer: deliveries stored `pending` before the first enqueue, each task
    saving its status; its rate runs from the start of that insert to the last status saved, as notifier's
    runs from the API call to the last `sent` written (`insert_seconds` and `all_recorded_after`, from the
    first enqueue, say where the time went); the run ends with a check that every status reached the database.
    """
    queue = f"bench-celery-{uuid.uuid4().hex[:8]}"
    db_name = f"bench_celery_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "BENCH_SMTP_PORT": str(sink.smtp_port), "BENCH_CELERY_QUEUE": queue}
    client: MongoClient | None = None
    if mongo_url is not None:
        env.update(BENCH_MONGO_URL=mongo_url, BENCH_MONGO_DB=db_name)
        client = MongoClient(mongo_url, serverSelectionTimeoutMS=30000)
    log_dir = REPO / "var" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    worker_log = open(log_dir / "celery-worker.log", "ab")  # noqa: SIM115 (closed with the worker)
    worker = _worker(queue, workers, env, worker_log)
    try:
        _wait_for_consumers(queue, workers=1, timeout=60)
        app.conf.task_default_queue = queue
        batch = uuid.uuid4().hex[:12]
        recipients = [(f"c{i}@example.com", f"User c{i}") for i in range(n)]
        result: dict = {}
        if client is None:
            started = time.time()
            for to, name in recipients:
                send_email.apply_async((batch, to, name), queue=queue)
        else:
            deliveries = client[db_name]["deliveries"]
            deliveries.create_index("notification_id")  # a Django ForeignKey's index
            before = time.time()
            now = datetime.now(UTC)
            notification = {
                "_id": ObjectId(),
                "type": "mail",
                "is_express": False,
                "title": "Hello",
                "text": "Your weekly digest is ready.",
                "created_at": now,
                "updated_at": now,
            }
            client[db_name]["notifications"].insert_one(notification)
            documents = [
                {
                    "_id": ObjectId(),
                    "notification_id": notification["_id"],
                    "user_id": f"c{i}",
                    "contact": to,
                    "is_user_subscribed": True,
                    "is_correct_contacts": True,
                    "status": "pending",
                    "created_at": now,
                    "updated_at": now,
                }
                for i, (to, _name) in enumerate(recipients)
            ]
            deliveries.insert_many(documents)  # one bulk_create
            started = time.time()
            result["insert_seconds"] = started - before
            for document, (to, name) in zip(documents, recipients, strict=True):
                send_and_record.apply_async((batch, str(document["_id"]), to, name), queue=queue)
        stats = sink.wait_for(n, key=batch, timeout=max(600, n / 20))
        result["rate"] = n / (stats["last"] - started)
        if client is not None:
            deliveries = client[db_name]["deliveries"]
            deadline = time.monotonic() + 120
            while deliveries.count_documents({"status": "pending"}) and time.monotonic() < deadline:
                time.sleep(0.05)
            result["all_recorded_after"] = time.time() - started
            result["rate"] = n / (time.time() - before)
            result["statuses"] = {
                row["_id"]: row["count"]
                for row in deliveries.aggregate([{"$group": {"_id": "$status", "count": {"$sum": 1}}}])
            }
            assert result["statuses"].get("sent", 0) + result["statuses"].get("failed", 0) == n, result
        return result
    finally:
        worker.terminate()
        worker.wait(60)
        worker_log.close()
        with app.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)
        if client is not None:
            client.drop_database(db_name)
            client.close()
