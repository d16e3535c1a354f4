"""Recipients' contacts and preferences, written by admins and client applications."""

from __future__ import annotations

from ...schemas import UserListQuerySchema, UserSchema, UsersBulkResultSchema, UsersBulkSchema, page_of
from ..base import APIHandler, endpoint

TAGS = ("users",)


class UsersHandler(APIHandler):
    @endpoint("users:read", "List users by id", query=UserListQuerySchema, response=page_of(UserSchema),
              tags=TAGS, errors=(400, 401, 403))
    async def get(self):
        query = self.load_query()
        self.respond(await self.ctx.users.list(query["limit"], query.get("cursor")))


class UsersBulkHandler(APIHandler):
    @endpoint("users:write", "Create or replace many users at once", body=UsersBulkSchema,
              response=UsersBulkResultSchema, tags=TAGS, errors=(400, 401, 403, 413, 415))
    async def post(self):
        created, updated = await self.ctx.users.bulk_upsert(self.load_body()["users"])
        self.respond({"created": created, "updated": updated})


class UserHandler(APIHandler):
    @endpoint("users:read", "A user's contacts and preferences", response=UserSchema, tags=TAGS,
              errors=(401, 403, 404))
    async def get(self, user_id):
        self.respond(await self.ctx.users.get(user_id))

    @endpoint("users:write", "Create or replace a user's contacts and preferences", body=UserSchema,
              response=UserSchema, also=(201,), tags=TAGS, errors=(400, 401, 403, 413, 415))
    async def put(self, user_id):
        user, created = await self.ctx.users.put(user_id, self.load_body())
        self.respond(user, status=201 if created else 200)

    @endpoint("users:write", "Forget a user's contacts and preferences", status=204, tags=TAGS,
              errors=(401, 403, 404))
    async def delete(self, user_id):
        await self.ctx.users.delete(user_id)
        self.respond()


routes = [
    (r"/api/v1/users", UsersHandler),
    (r"/api/v1/users/bulk", UsersBulkHandler),
    (r"/api/v1/users/(?P<user_id>[^/]+)", UserHandler),
]
