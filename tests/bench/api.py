"""The API under load (wrk, 32 connections, 10 s): create and list, beside a trivial Tornado handler and the
same I/O done bare with motor + aiormq in a loop at the same concurrency."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiormq
from aiormq.abc import Basic
from bson import ObjectId

from notifier.procs import free_port
from notifier.store import Store, connect

from .express import percentile
from .harness import AMQP_URL, REPO, Infra, admin_header

CONNECTIONS = 32
SECONDS = 10


def wrk(url: str, script: str | None = None) -> dict:
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", url]
    if script:
        command[1:1] = ["-s", script]
    output = subprocess.run(command, capture_output=True, text=True, timeout=SECONDS + 60).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rate": rate, "p99_ms": float(p99.group(1)) * scale, "non_2xx": int(errors.group(1)) if errors else 0}


def lua(method: str, auth: str, body: dict | None = None) -> str:
    path = Path(tempfile.mkstemp(suffix=".lua")[1])
    lines = [f'wrk.method = "{method}"', f'wrk.headers["Authorization"] = "{auth}"']
    if body is not None:
        lines += [f"wrk.body = {json.dumps(json.dumps(body))}", 'wrk.headers["Content-Type"] = "application/json"']
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def trivial() -> dict:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.trivial", str(port)], cwd=REPO, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout.readline().strip() == b"ready"
        return wrk(f"http://127.0.0.1:{port}/")
    finally:
        process.terminate()
        process.wait(10)


async def _bare(mongo_url: str) -> dict:
    """Insert a notification and its delivery, publish with confirm: in a loop, 32 at a time, 10 s."""
    store = Store(connect(mongo_url, 5000), f"bench_bare_api_{uuid.uuid4().hex[:8]}")
    await store.ensure_indexes()
    connection = await aiormq.connect(AMQP_URL)
    channel = await connection.channel(publisher_confirms=True)
    queue = f"bench.bare.{uuid.uuid4().hex[:8]}"
    await channel.queue_declare(queue, durable=True)
    latencies: list[float] = []
    deadline = time.monotonic() + SECONDS

    async def worker():
        while time.monotonic() < deadline:
            started = time.monotonic()
            notification = {"_id": ObjectId(), "title": "t", "text": "x", "channel": "inbox", "recipient_count": 1}
            await store.notifications.insert_one(notification)
            delivery = {"_id": ObjectId(), "notification_id": notification["_id"], "user_id": "u1", "status": "pending"}
            await store.deliveries.insert_one(delivery)
            await channel.basic_publish(
                json.dumps({"delivery_id": str(delivery["_id"])}).encode(),
                routing_key=queue,
                properties=Basic.Properties(delivery_mode=2),
            )
            latencies.append((time.monotonic() - started) * 1000)

    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    await channel.queue_delete(queue)
    await connection.close()
    await store.client.drop_database(store.db.name)
    store.close()
    return {"rate": len(latencies) / SECONDS, "p99_ms": percentile(latencies, 0.99)}


def run(infra: Infra) -> dict:
    results = {"trivial": trivial(), "bare_io": asyncio.run(_bare(infra.mongo_url))}
    service = infra.service(CONSUMERS_START="0", CONSUMERS_MIN="0")
    try:
        service.start()
        auth = admin_header(service)
        base = service.url + "/api/v1/notifications"
        results["create"] = wrk(
            base, lua("POST", auth, {"title": "t", "text": "x", "channel": "inbox", "recipients": ["u1"]})
        )
        results["list"] = wrk(base + "?limit=20", lua("GET", auth))
    finally:
        service.stop()
        service.cleanup()
    return results
