"""The peer: the same emails sent by a minimal Celery app, written the way a good Celery user would.

RabbitMQ broker, one task per email, late acks, and one SMTP connection per worker process, reused.
Run as a worker with `celery -A tests.bench.celery_peer worker`; `run()` drives a whole measurement.
"""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
import time
import uuid
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from celery import Celery

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


def _connection() -> smtplib.SMTP:
    global _smtp
    if _smtp is None:
        _smtp = smtplib.SMTP("127.0.0.1", int(os.environ["BENCH_SMTP_PORT"]), timeout=30)
    return _smtp


@app.task(bind=True, max_retries=5, default_retry_delay=1)
def send_email(self, batch: str, to: str, name: str) -> None:
    global _smtp
    message = MIMEMultipart("alternative")
    message["From"] = "bench@localhost"
    message["To"] = to
    message["Subject"] = f"Hello {name}"
    message["X-Bench-Batch"] = batch
    message.attach(MIMEText("Your weekly digest is ready.", "plain", "utf-8"))
    message.attach(MIMEText("<p>Your weekly digest is ready.</p>", "html", "utf-8"))
    try:
        _connection().send_message(message)
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        _smtp = None
        raise self.retry(exc=exc) from exc


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


def run(sink, n: int, workers: int) -> float:
    """Emails per second from the first enqueue to the last one received by the sink."""
    queue = f"bench-celery-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "BENCH_SMTP_PORT": str(sink.smtp_port), "BENCH_CELERY_QUEUE": queue}
    log_dir = REPO / "var" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    worker_log = open(log_dir / "celery-worker.log", "ab")  # noqa: SIM115 (closed with the worker)
    worker = subprocess.Popen(
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
        stderr=worker_log,
    )
    try:
        _wait_for_consumers(queue, workers=1, timeout=60)
        app.conf.task_default_queue = queue
        batch = uuid.uuid4().hex[:12]
        started = time.time()
        for i in range(n):
            send_email.apply_async((batch, f"c{i}@example.com", f"User c{i}"), queue=queue)
        stats = sink.wait_for(n, key=batch)
        return n / (stats["last"] - started)
    finally:
        worker.terminate()
        worker.wait(60)
        worker_log.close()
        with app.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)
