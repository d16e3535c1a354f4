"""The dashboard: queues, consumers, deliveries by status, latest failures."""

from __future__ import annotations

from ...errors import Unavailable
from ...queue.monitor import queue_depths
from .base import AdminHandler


class DashboardHandler(AdminHandler):
    async def get(self):
        ctx = self.ctx
        try:
            queues = await queue_depths(ctx.broker, ctx.topology)
            broker_error = None
        except Unavailable as exc:
            queues, broker_error = [], exc.message
        pool = ctx.pool.describe() if ctx.pool is not None else None
        self.page(
            "dashboard.html",
            queues=queues,
            broker_error=broker_error,
            pool=pool,
            settings=ctx.settings,
            stats=await ctx.stats.deliveries(),
            jobs=ctx.jobs.describe(),
        )
