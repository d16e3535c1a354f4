"""The calling end user's own inbox, history and preferences (identified by their token only)."""

from __future__ import annotations

from ...schemas import InboxItemSchema, InboxQuerySchema, PreferencesSchema, page_of
from ..base import APIHandler, endpoint

TAGS = ("me",)


class MyNotificationsHandler(APIHandler):
    @endpoint(
        "me",
        "My notifications on every channel, newest first",
        query=InboxQuerySchema,
        response=page_of(InboxItemSchema),
        tags=TAGS,
        errors=(400, 401, 403),
    )
    async def get(self):
        query = self.load_query()
        self.respond(
            await self.ctx.users.inbox(
                self.caller.id, query["limit"], query.get("cursor"), query.get("channel"), query.get("unread")
            )
        )


class MyNotificationReadHandler(APIHandler):
    @endpoint("me", "Mark one of my notifications read", status=204, tags=TAGS, errors=(401, 403, 404))
    async def post(self, delivery_id):
        await self.ctx.users.mark_read(self.caller.id, delivery_id)
        self.respond()


class MyPreferencesHandler(APIHandler):
    @endpoint("me", "My subscription preferences", response=PreferencesSchema, tags=TAGS, errors=(401, 403))
    async def get(self):
        self.respond(await self.ctx.users.preferences(self.caller.id))

    @endpoint(
        "me",
        "Unsubscribe from channels, or from everything (only the fields sent change)",
        body=PreferencesSchema,
        response=PreferencesSchema,
        tags=TAGS,
        errors=(400, 401, 403, 415),
    )
    async def put(self):
        self.respond(await self.ctx.users.set_preferences(self.caller.id, self.load_body()))


routes = [
    (r"/api/v1/me/notifications", MyNotificationsHandler),
    (r"/api/v1/me/notifications/(?P<delivery_id>[^/]+)/read", MyNotificationReadHandler),
    (r"/api/v1/me/preferences", MyPreferencesHandler),
]
