"""RabbitMQ restarted in the middle of a fan-out: nothing is lost, nothing is sent twice."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from bson import ObjectId

from ..support import eventually
from .conftest import add_users, settled


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


@pytest.mark.faults
@pytest.mark.gen_test(timeout=240)
async def test_broker_restart_mid_run(api, admin, ctx, smtp, workers):
    users = await add_users(ctx, 1500)
    created = (await api.post("/api/v1/notifications", {"title": "t", "text": "x", "channel": "email",
                                                         "recipients": users}, auth=admin.header)).body
    await eventually(lambda: _received(smtp, 300), timeout=60, message="traffic flowing")
    await asyncio.get_running_loop().run_in_executor(None, rabbitmqctl, "stop_app")
    try:
        await asyncio.sleep(2)  # the outage itself: the broker stays down for a while
        during = await api.get("/readyz")
        assert during.status == 503
        accepted = await api.post("/api/v1/notifications", {"title": "during", "text": "x", "channel": "email",
                                                             "recipients": ["u1"]}, auth=admin.header)
        assert accepted.status == 201
    finally:
        await asyncio.get_running_loop().run_in_executor(None, rabbitmqctl, "start_app")
    await settled(ctx, ObjectId(created["id"]), 1500, timeout=150)
    await settled(ctx, ObjectId(accepted.body["id"]), 1, timeout=60)
    received = smtp.handler.count_by_recipient(created["id"])
    deliveries = await ctx.store.deliveries.find({"notification_id": ObjectId(created["id"])}).to_list(None)
    assert {d["status"] for d in deliveries} == {"sent"}
    assert received == {f"{u}@example.com": 1 for u in users}
    assert smtp.handler.count_by_recipient(accepted.body["id"]) == {"u1@example.com": 1}


async def _received(smtp, count):
    return len(smtp.received) >= count
