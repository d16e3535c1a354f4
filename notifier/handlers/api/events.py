"""Status events: the caller's feed, and the event endpoints they are POSTed to."""

from __future__ import annotations

from ...schemas import (
    EventEndpointCreatedSchema,
    EventEndpointCreateSchema,
    EventEndpointSchema,
    EventEndpointUpdateSchema,
    EventFeedQuerySchema,
    EventFeedSchema,
    PageQuerySchema,
    ReplaySchema,
    SecretRotateSchema,
    page_of,
)
from ...services.event_endpoints import event_body
from ..base import APIHandler, endpoint

TAGS = ("events",)


class EventFeedHandler(APIHandler):
    @endpoint(
        "events:read",
        "Status events of your notifications, oldest first, after the last one you have",
        query=EventFeedQuerySchema,
        response=EventFeedSchema,
        tags=TAGS,
        errors=(400, 401, 403),
    )
    async def get(self):
        query = self.load_query()
        after = query.get("after")
        events = await self.ctx.event_log.feed(
            self.principal, after, query.get("types"), query["limit"], query.get("since")
        )
        last = str(events[-1]["_id"]) if events else (str(after) if after else None)
        self.respond({"items": [event_body(event) for event in events], "next_after": last})


class EventEndpointsHandler(APIHandler):
    @endpoint(
        "events:manage",
        "List your event endpoints",
        query=PageQuerySchema,
        response=page_of(EventEndpointSchema),
        tags=TAGS,
        errors=(400, 401, 403),
    )
    async def get(self):
        query = self.load_query()
        self.respond(await self.ctx.event_endpoints.page(self.principal, query["limit"], query.get("cursor")))

    @endpoint(
        "events:manage",
        "Add an event endpoint: your notifications' status events are POSTed to it, signed; its secret is "
        "shown only here",
        body=EventEndpointCreateSchema,
        response=EventEndpointCreatedSchema,
        status=201,
        tags=TAGS,
        errors=(400, 401, 403, 409, 415),
    )
    async def post(self):
        created, secret = await self.ctx.event_endpoints.create(self.principal, self.load_body())
        self.set_header("Location", f"/api/v1/event-endpoints/{created['_id']}")
        self.respond({**created, "secret": secret})


class EventEndpointHandler(APIHandler):
    @endpoint("events:manage", "An event endpoint", response=EventEndpointSchema, tags=TAGS, errors=(401, 403, 404))
    async def get(self, endpoint_id):
        self.respond(await self.ctx.event_endpoints.get(self.principal, endpoint_id))

    @endpoint(
        "events:manage",
        "Change an event endpoint, or enable a disabled one again",
        body=EventEndpointUpdateSchema,
        response=EventEndpointSchema,
        tags=TAGS,
        errors=(400, 401, 403, 404, 415),
    )
    async def patch(self, endpoint_id):
        self.respond(await self.ctx.event_endpoints.update(self.principal, endpoint_id, self.load_body()))

    @endpoint("events:manage", "Remove an event endpoint", status=204, tags=TAGS, errors=(401, 403, 404))
    async def delete(self, endpoint_id):
        await self.ctx.event_endpoints.delete(self.principal, endpoint_id)
        self.respond()


class SecretRotationHandler(APIHandler):
    @endpoint(
        "events:manage",
        "A new signing secret (shown only here); the old ones stay valid for grace_seconds",
        body=SecretRotateSchema,
        response=EventEndpointCreatedSchema,
        tags=TAGS,
        errors=(400, 401, 403, 404, 415),
    )
    async def post(self, endpoint_id):
        grace = self.load_body(optional=True)["grace_seconds"]
        rotated, secret = await self.ctx.event_endpoints.rotate(self.principal, endpoint_id, grace)
        self.respond({**rotated, "secret": secret})


class ReplayHandler(APIHandler):
    @endpoint(
        "events:manage",
        "Send the endpoint's events since an instant again, with the same ids (audited)",
        body=ReplaySchema,
        response=EventEndpointSchema,
        tags=TAGS,
        errors=(400, 401, 403, 404, 415),
    )
    async def post(self, endpoint_id):
        since = self.load_body()["since"]
        self.respond(await self.ctx.event_endpoints.replay(self.principal, endpoint_id, since))


routes = [
    (r"/api/v1/events", EventFeedHandler),
    (r"/api/v1/event-endpoints", EventEndpointsHandler),
    (r"/api/v1/event-endpoints/(?P<endpoint_id>[^/]+)", EventEndpointHandler),
    (r"/api/v1/event-endpoints/(?P<endpoint_id>[^/]+)/rotate-secret", SecretRotationHandler),
    (r"/api/v1/event-endpoints/(?P<endpoint_id>[^/]+)/replay", ReplayHandler),
]
