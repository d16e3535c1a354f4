"""Recurring notifications: cron or interval, in a time zone, changed live."""

from __future__ import annotations

from ...schemas import (
    PageQuerySchema,
    PeriodicitySchema,
    PreviewQuerySchema,
    PreviewSchema,
    ScheduleCreateSchema,
    ScheduleListQuerySchema,
    ScheduleRunSchema,
    ScheduleSchema,
    page_of,
)
from ..base import APIHandler, endpoint

TAGS = ("schedules",)


class SchedulesHandler(APIHandler):
    @endpoint(
        "schedules:read",
        "List schedules",
        query=ScheduleListQuerySchema,
        response=page_of(ScheduleSchema),
        tags=TAGS,
        errors=(400, 401, 403),
    )
    async def get(self):
        self.respond(await self.ctx.schedules.page(self.principal, self.load_query()))

    @endpoint(
        "schedules:write",
        "Create a schedule: a notification, its recipients and a periodicity",
        body=ScheduleCreateSchema,
        response=ScheduleSchema,
        status=201,
        tags=TAGS,
        errors=(400, 401, 403, 404, 413, 415),
    )
    async def post(self):
        schedule = await self.ctx.schedules.create(self.principal, self.load_body())
        self.set_header("Location", f"/api/v1/schedules/{schedule['_id']}")
        self.respond(schedule)


class ScheduleHandler(APIHandler):
    @endpoint("schedules:read", "A schedule", response=ScheduleSchema, tags=TAGS, errors=(401, 403, 404))
    async def get(self, schedule_id):
        self.respond(await self.ctx.schedules.get(self.principal, schedule_id))

    @endpoint(
        "schedules:write",
        "Change a schedule; it takes effect at the next scheduler tick",
        body=PeriodicitySchema,
        response=ScheduleSchema,
        tags=TAGS,
        errors=(400, 401, 403, 404, 415),
    )
    async def patch(self, schedule_id):
        self.respond(await self.ctx.schedules.update(self.principal, schedule_id, self.load_body()))

    @endpoint("schedules:write", "Delete a schedule", status=204, tags=TAGS, errors=(401, 403, 404))
    async def delete(self, schedule_id):
        await self.ctx.schedules.delete(self.principal, schedule_id)
        self.respond()


class ScheduleEnableHandler(APIHandler):
    enabled = True

    @endpoint(
        "schedules:write",
        "Enable (or, at /disable, disable) a schedule",
        response=ScheduleSchema,
        tags=TAGS,
        errors=(401, 403, 404),
    )
    async def post(self, schedule_id):
        self.respond(await self.ctx.schedules.update(self.principal, schedule_id, {"enabled": self.enabled}))


class ScheduleDisableHandler(ScheduleEnableHandler):
    enabled = False


class SchedulePreviewHandler(APIHandler):
    @endpoint(
        "schedules:read",
        "The next n fire times, local with their UTC offsets (for a disabled schedule, "
        "those it would have once enabled)",
        query=PreviewQuerySchema,
        response=PreviewSchema,
        tags=TAGS,
        errors=(400, 401, 403, 404),
    )
    async def get(self, schedule_id):
        count = self.load_query()["n"]
        self.respond(await self.ctx.schedules.preview(self.principal, schedule_id, count))


class ScheduleRunsHandler(APIHandler):
    @endpoint(
        "schedules:read",
        "The schedule's firings, newest first",
        query=PageQuerySchema,
        response=page_of(ScheduleRunSchema),
        tags=TAGS,
        errors=(400, 401, 403, 404),
    )
    async def get(self, schedule_id):
        query = self.load_query()
        self.respond(await self.ctx.schedules.runs(self.principal, schedule_id, query["limit"], query.get("cursor")))


ID = r"(?P<schedule_id>[^/]+)"
routes = [
    (r"/api/v1/schedules", SchedulesHandler),
    (rf"/api/v1/schedules/{ID}", ScheduleHandler),
    (rf"/api/v1/schedules/{ID}/enable", ScheduleEnableHandler),
    (rf"/api/v1/schedules/{ID}/disable", ScheduleDisableHandler),
    (rf"/api/v1/schedules/{ID}/preview", SchedulePreviewHandler),
    (rf"/api/v1/schedules/{ID}/runs", ScheduleRunsHandler),
]
