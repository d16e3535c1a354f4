"""Operational views for admins."""

from __future__ import annotations

from marshmallow import Schema, fields

from ..base import APIHandler, endpoint


class ConsumerSchema(Schema):
    id = fields.Str()
    pid = fields.Int()
    ready = fields.Bool()
    stopping = fields.Bool()
    started_at = fields.Str()


class PoolSchema(Schema):
    min = fields.Int()
    max = fields.Int()
    start = fields.Int()
    restarts = fields.Int()
    consumers = fields.List(fields.Nested(ConsumerSchema))
    others = fields.Int(allow_none=True, metadata={"description": "Consumers of other instances on the queues"})
    queued = fields.Dict(keys=fields.Str(), values=fields.Int(), allow_none=True)


class ConsumersHandler(APIHandler):
    @endpoint(
        "system:read",
        "The consumer pool: processes, bounds, and the queues' backlog",
        response=PoolSchema,
        tags=("system",),
        errors=(401, 403, 503),
    )
    async def get(self):
        pool = self.ctx.pool
        if pool is None:
            self.respond(
                {
                    "min": self.ctx.settings.consumers_min,
                    "max": self.ctx.settings.consumers_max,
                    "start": self.ctx.settings.consumers_start,
                    "restarts": 0,
                    "consumers": [],
                    "others": None,
                    "queued": None,
                }
            )
            return
        pool.last_stats = await pool.queue_stats()
        self.respond(pool.describe())


routes = [(r"/api/v1/system/consumers", ConsumersHandler)]
