"""Liveness and readiness for orchestrators and load balancers."""

from __future__ import annotations

import asyncio

from ..access import PUBLIC
from ..schemas import HealthSchema
from .base import APIHandler, endpoint

CHECK_TIMEOUT = 2.0


class LivenessHandler(APIHandler):
    @endpoint(PUBLIC, "The process is alive", response=HealthSchema, tags=("health",))
    async def get(self):
        self.respond({"status": "ok", "checks": {}})


class ReadinessHandler(APIHandler):
    @endpoint(
        PUBLIC,
        "MongoDB and RabbitMQ are reachable (503 otherwise)",
        response=HealthSchema,
        tags=("health",),
        errors=(503,),
    )
    async def get(self):
        checks = self.ctx.readiness_checks
        results = await asyncio.gather(
            *(asyncio.wait_for(check(), CHECK_TIMEOUT) for check in checks.values()), return_exceptions=True
        )
        report = {
            name: "ok" if result is None else f"down: {type(result).__name__} {result}".strip()
            for name, result in zip(checks, results, strict=True)
        }
        ready = all(result is None for result in results)
        self.respond({"status": "ready" if ready else "unavailable", "checks": report}, status=200 if ready else 503)


routes = [
    (r"/healthz", LivenessHandler),
    (r"/readyz", ReadinessHandler),
]
