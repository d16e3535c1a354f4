"""/healthz and /readyz."""

from __future__ import annotations

import pytest


@pytest.mark.gen_test
async def test_liveness(api):
    response = await api.get("/healthz")
    assert response.status == 200 and response.body["status"] == "ok"


@pytest.mark.gen_test
async def test_ready_when_database_and_broker_answer(api):
    response = await api.get("/readyz")
    assert response.status == 200
    assert response.body == {"status": "ready", "checks": {"mongodb": "ok", "rabbitmq": "ok"}}


@pytest.mark.gen_test
async def test_not_ready_without_broker(api, ctx):
    await ctx.broker.close()
    response = await api.get("/readyz")
    assert response.status == 503
    assert response.body["checks"]["mongodb"] == "ok"
    assert response.body["checks"]["rabbitmq"].startswith("down")


@pytest.mark.gen_test
async def test_unknown_path_and_method_are_json(api, admin):
    missing = await api.get("/api/v1/nothing-here")
    assert missing.status == 404 and missing.body["message"] == "No such path: /api/v1/nothing-here"
    wrong_method = await api.call("PATCH", "/api/v1/notifications", auth=admin.header)
    assert wrong_method.status == 405 and wrong_method.body["message"]
