"""The platform's contacts directory: read and written by admins, and by client applications an admin
granted `contacts:read` / `contacts:write`. Opt-outs are the user's: see services/users.py."""

from __future__ import annotations

from ...schemas import (
    InboxCountsSchema,
    UserListQuerySchema,
    UsersBulkResultSchema,
    UsersBulkSchema,
    UserSchema,
    UserWriteSchema,
    page_of,
)
from ..base import APIHandler, endpoint

TAGS = ("users",)


class UsersHandler(APIHandler):
    @endpoint(
        "contacts:read",
        "List users by id",
        query=UserListQuerySchema,
        response=page_of(UserSchema),
        tags=TAGS,
        errors=(400, 401, 403),
    )
    async def get(self):
        query = self.load_query()
        self.respond(await self.ctx.users.page(query["limit"], query.get("cursor")))


class UsersBulkHandler(APIHandler):
    @endpoint(
        "contacts:write",
        "Create or change many users at once (only the fields sent change)",
        body=UsersBulkSchema,
        response=UsersBulkResultSchema,
        tags=TAGS,
        errors=(400, 401, 403, 413, 415),
    )
    async def post(self):
        created, updated = await self.ctx.users.bulk_upsert(self.principal, self.load_body()["users"])
        self.respond({"created": created, "updated": updated})


class UserHandler(APIHandler):
    @endpoint(
        "contacts:read", "A user's contacts and preferences", response=UserSchema, tags=TAGS, errors=(401, 403, 404)
    )
    async def get(self, user_id):
        self.respond(await self.ctx.users.get(user_id))

    @endpoint(
        "contacts:write",
        "Create a user or change the contact fields sent (null clears one; absent ones stay)",
        body=UserWriteSchema,
        response=UserSchema,
        also=(201,),
        tags=TAGS,
        errors=(400, 401, 403, 413, 415),
    )
    async def put(self, user_id):
        user, created = await self.ctx.users.put(self.principal, user_id, self.load_body())
        self.respond(user, status=201 if created else 200)

    @endpoint(
        "contacts:write",
        "Forget a user's contacts (their opt-outs stay unless an admin deletes)",
        status=204,
        tags=TAGS,
        errors=(401, 403, 404),
    )
    async def delete(self, user_id):
        await self.ctx.users.delete(self.principal, user_id)
        self.respond()


class UserInboxRecountHandler(APIHandler):
    @endpoint(
        "inbox:repair",
        "Count a user's inbox items again and set their counts right (an `counts` event on their streams)",
        response=InboxCountsSchema,
        tags=TAGS,
        errors=(401, 403),
    )
    async def post(self, user_id):
        self.respond(await self.ctx.inbox.recount(user_id))


routes = [
    (r"/api/v1/users", UsersHandler),
    (r"/api/v1/users/bulk", UsersBulkHandler),
    (r"/api/v1/users/(?P<user_id>[^/]+)", UserHandler),
    (r"/api/v1/users/(?P<user_id>[^/]+)/inbox/recount", UserInboxRecountHandler),
]
