"""Prometheus metrics: at /metrics for admins, and unauthenticated on METRICS_PORT when that is set."""

from __future__ import annotations

import tornado.web

from ..access import PUBLIC
from ..metrics import exposition, refresh_gauges
from .base import APIHandler, endpoint


class MetricsHandler(APIHandler):
    @endpoint("system:read", "Prometheus metrics (text exposition format)", tags=("system",), errors=(401, 403))
    async def get(self):
        ctx = self.ctx
        await refresh_gauges(ctx.settings, ctx.pool, ctx.broker, ctx.topology)
        body, content_type = exposition()
        self.set_header("Content-Type", content_type)
        self.finish(body)


class OpenMetricsHandler(MetricsHandler):
    """The same on the separate metrics port, which only a scraper should be able to reach."""

    @endpoint(PUBLIC, "Prometheus metrics (text exposition format)", tags=("system",))
    async def get(self):
        await super().get()


routes = [(r"/metrics", MetricsHandler)]


def metrics_app(ctx) -> tornado.web.Application:
    return tornado.web.Application([(r"/metrics", OpenMetricsHandler)], ctx=ctx)
