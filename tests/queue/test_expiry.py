"""expires_at: a delivery not sent by then ends `expired` with the reason, wherever it waited: behind a
backlog (here: no consumer ran), scheduled past its send_at while no server ran, or before a retry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from bson import ObjectId

from ..support import eventually
from .conftest import add_users, settled

N = 20


async def _passed(ctx, instant) -> bool:
    return ctx.clock.now() > instant


async def _create(api, admin, users, **fields) -> dict:
    body = {"title": "t", "text": "x", "channel": "email", "recipients": users}
    for name, value in fields.items():
        body[name] = value.isoformat()
    response = await api.post("/api/v1/notifications", body, auth=admin.header)
    assert response.status == 201, response.body
    return response.body


async def _detail(api, admin, created) -> dict:
    return (await api.get(f"/api/v1/notifications/{created['id']}", auth=admin.header)).body


@pytest.mark.gen_test(timeout=90)
async def test_deliveries_reached_after_expires_at_expire_unsent(api, admin, ctx, smtp):
    users = await add_users(ctx, N)
    expires_at = ctx.clock.now() + timedelta(seconds=1)
    created = await _create(api, admin, users, expires_at=expires_at)
    assert created["expires_at"] is not None
    await eventually(lambda: _passed(ctx, expires_at), timeout=10, message="expires_at passed")
    await ctx.start_workers()
    try:
        assert await settled(ctx, ObjectId(created["id"]), N) == {"expired": N}
        detail = await _detail(api, admin, created)
        assert detail["counts"] == {"expired": N} and detail["reasons"] == {"expired_before_send": N}
        assert smtp.handler.count_by_recipient(created["id"]) == {}
    finally:
        await ctx.stop_workers()


@pytest.mark.gen_test(timeout=90)
async def test_scheduled_deliveries_woken_after_their_expiry_expire(api, admin, ctx, smtp):
    """No server ran across both send_at and expires_at: woken late, they expire instead of going out."""
    users = await add_users(ctx, N)
    send_at = ctx.clock.now() + timedelta(seconds=1)
    created = await _create(api, admin, users, send_at=send_at, expires_at=send_at + timedelta(seconds=1))
    await eventually(lambda: _passed(ctx, send_at + timedelta(seconds=1)), timeout=10, message="expiry passed")
    await ctx.start_workers()
    try:
        assert await settled(ctx, ObjectId(created["id"]), N) == {"expired": N}
        assert smtp.handler.count_by_recipient(created["id"]) == {}
    finally:
        await ctx.stop_workers()


@pytest.fixture
def settings_overrides(pipeline_settings):
    return {**pipeline_settings, "retry_delays": (30.0, 60.0)}


@pytest.mark.gen_test(timeout=90)
async def test_a_retry_that_would_end_after_expires_at_expires_now(api, admin, ctx, smtp, workers):
    """The SMTP server answers 451 once each; the retry would come 30 s later, after expires_at: expired now,
    with that reason, rather than left queued until then."""
    users = await add_users(ctx, N)
    smtp.behaviour.tempfail_next = N
    created = await _create(api, admin, users, expires_at=ctx.clock.now() + timedelta(seconds=10))
    assert await settled(ctx, ObjectId(created["id"]), N, timeout=20) == {"expired": N}
    assert (await _detail(api, admin, created))["reasons"] == {"expired_before_retry": N}


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"expires_at": -5}, "expires_at"),  # in the past
        ({"send_at": 60, "expires_at": 30}, "expires_at"),  # before its own send_at
        ({"send_at": 60, "expires_at": 60}, "expires_at"),
    ],
)
async def test_expires_at_must_come_after_now_and_after_send_at(api, admin, ctx, fields, field):
    now = ctx.clock.now()
    instants = {name: now + timedelta(seconds=seconds) for name, seconds in fields.items()}
    body = {"title": "t", "text": "x", "channel": "email", "recipients": ["u1"]}
    response = await api.post(
        "/api/v1/notifications", {**body, **{k: v.isoformat() for k, v in instants.items()}}, auth=admin.header
    )
    assert response.status == 400 and field in response.body["errors"], response.body
    assert await ctx.store.notifications.count_documents({}) == 0
