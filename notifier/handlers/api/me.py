"""The calling end user's own inbox, history and preferences (identified by their token only), and the live
stream of their inbox."""

from __future__ import annotations

import asyncio
import random
import re

from tornado.http1connection import HTTP1Connection
from tornado.iostream import StreamClosedError

from ...access import Principal
from ...errors import Invalid
from ...schemas import (
    BulkChangeSchema,
    InboxCountsSchema,
    InboxItemSchema,
    InboxQuerySchema,
    PreferencesSchema,
    StreamQuerySchema,
    StreamTicketSchema,
    page_of,
)
from ...streams import Stream
from ..base import APIHandler, decode_query, endpoint

TAGS = ("me",)
# The path's word for each change of one item (services/inbox.py CHANGES).
ITEM_CHANGES = {"seen": "seen", "read": "read", "unread": "unread", "archive": "archived", "unarchive": "unarchived"}
BULK = {"read-all": "read_all", "seen-all": "seen_all"}
RECONNECT_MS = 2000
EVENT_ID = re.compile(r"[0-9]{1,16}")  # ASCII digits only (str.isdigit takes "²")


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
        filters = {name: query.get(name) for name in ("channel", "unread", "unseen", "archived")}
        self.respond(await self.ctx.users.inbox(self.caller.id, query["limit"], query.get("cursor"), **filters))


class MyNotificationChangeHandler(APIHandler):
    @endpoint(
        "me",
        "Mark one of my notifications seen, read or unread; archive or unarchive it",
        status=204,
        tags=TAGS,
        errors=(401, 403, 404, 409),
    )
    async def post(self, delivery_id, change):
        await self.ctx.inbox.change(self.caller.id, delivery_id, ITEM_CHANGES[change])
        self.respond()


class MyNotificationsBulkHandler(APIHandler):
    @endpoint("me", "Mark all my notifications read, or seen", response=BulkChangeSchema, tags=TAGS, errors=(401, 403))
    async def post(self, change):
        self.respond({"changed": await self.ctx.inbox.change_all(self.caller.id, BULK[change])})


class MyCountsHandler(APIHandler):
    @endpoint(
        "me",
        "How many of my in-app notifications there are, unread and unseen",
        response=InboxCountsSchema,
        tags=TAGS,
        errors=(401, 403),
    )
    async def get(self):
        self.respond(await self.ctx.inbox.counts(self.caller.id))


class MyStreamTicketHandler(APIHandler):
    @endpoint(
        "me",
        "A short-lived ticket that opens my inbox stream (for EventSource, which cannot send headers)",
        response=StreamTicketSchema,
        tags=TAGS,
        errors=(401, 403),
    )
    async def post(self):
        ticket, ttl = self.ctx.auth.stream_tickets.issue(self.caller)
        self.respond({"ticket": ticket, "expires_in": ttl})


class MyStreamHandler(APIHandler):
    """Server-Sent Events: every change of my inbox, numbered; resumes after `Last-Event-ID`."""

    stream: Stream | None = None

    async def authenticate(self, authorization: str | None) -> Principal | None:
        """The Authorization header, or else a stream ticket (`?ticket=`), which opens this and nothing else."""
        ticket = decode_query(self.request.query_arguments).get("ticket")
        if ticket is None or authorization is not None:
            return await super().authenticate(authorization)
        return self.ctx.auth.stream_tickets.verify(ticket)

    def _resume_after(self, query: dict) -> int | None:
        header = self.request.headers.get("Last-Event-ID")
        if header is None:
            return query.get("last_event_id")
        if not EVENT_ID.fullmatch(header.strip()):
            raise Invalid.field("Last-Event-ID", "must be an event id this stream sent")
        return int(header.strip())

    @endpoint(
        "me",
        "My inbox as a stream of Server-Sent Events (see the README's stream protocol)",
        query=StreamQuerySchema,
        produces="text/event-stream",
        tags=TAGS,
        errors=(400, 401, 403),
    )
    async def get(self):
        after = self._resume_after(self.load_query())
        self.stream = stream = await self.ctx.streams.open(self.caller.id, after, self.caller.expires_at)
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("X-Accel-Buffering", "no")  # a proxy must pass each event on at once
        timeout = self.ctx.settings.stream_write_timeout
        try:
            # Spread over a few seconds: thousands of clients of a stopped server do not all come back at once.
            self.write(f"retry: {random.randint(RECONNECT_MS, 3 * RECONNECT_MS)}\n\n")
            await asyncio.wait_for(self.flush(), timeout)
            while (text := await stream.next()) is not None:
                self.write(text)
                await asyncio.wait_for(self.flush(), timeout)
        except (StreamClosedError, TimeoutError):  # gone, or not reading: the client resumes by id
            if isinstance(self.request.connection, HTTP1Connection):  # the only kind tornado's HTTPServer makes
                self.request.connection.close()
            return
        finally:
            self.ctx.streams.close(stream)
        self.finish()

    def on_connection_close(self) -> None:
        if self.stream is not None:
            self.ctx.streams.close(self.stream)


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
    (r"/api/v1/me/notifications/counts", MyCountsHandler),
    (rf"/api/v1/me/notifications/(?P<change>{'|'.join(BULK)})", MyNotificationsBulkHandler),
    (
        rf"/api/v1/me/notifications/(?P<delivery_id>[^/]+)/(?P<change>{'|'.join(ITEM_CHANGES)})",
        MyNotificationChangeHandler,
    ),
    (r"/api/v1/me/stream", MyStreamHandler),
    (r"/api/v1/me/stream/ticket", MyStreamTicketHandler),
    (r"/api/v1/me/preferences", MyPreferencesHandler),
]
