"""Event endpoints: every caller's, with their state, recent attempts, replay and enable/disable."""

from __future__ import annotations

from ...schemas import PageQuerySchema, ReplaySchema
from .base import AdminHandler


class EventEndpointsHandler(AdminHandler):
    async def get(self):
        filters = self.query()
        query = self.validate(PageQuerySchema, {k: v for k, v in filters.items() if k == "cursor" and v})
        page = await self.ctx.event_endpoints.page(self.admin, query["limit"], query.get("cursor"))
        self.page("event_endpoints.html", page=page, filters=filters)


class EventEndpointHandler(AdminHandler):
    async def get(self, endpoint_id):
        endpoint = await self.ctx.event_endpoints.get(self.admin, endpoint_id)
        attempts = await self.ctx.event_endpoints.attempts(endpoint["_id"])
        self.page("event_endpoint.html", endpoint=endpoint, attempts=attempts, values=self.query(), errors={})


class EventEndpointReplayHandler(AdminHandler):
    async def submit(self, endpoint_id):
        since = self.validate(ReplaySchema, {"since": self.form().get("since", "")})["since"]
        await self.ctx.event_endpoints.replay(self.admin, endpoint_id, since)
        self.after(f"/admin/event-endpoints/{endpoint_id}", f"Events since {since:%Y-%m-%d %H:%M} UTC are sent again.")


class EventEndpointToggleHandler(AdminHandler):
    async def submit(self, endpoint_id):
        endpoint = await self.ctx.event_endpoints.get(self.admin, endpoint_id)
        enabled = not endpoint["enabled"]
        await self.ctx.event_endpoints.update(self.admin, endpoint_id, {"enabled": enabled})
        self.after(f"/admin/event-endpoints/{endpoint_id}", f"Endpoint {'enabled' if enabled else 'disabled'}.")
