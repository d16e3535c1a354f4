"""Client applications, managed by admins."""

from __future__ import annotations

from ...schemas import (
    ClientCreatedSchema,
    ClientCreateSchema,
    ClientPermissionsSchema,
    ClientSchema,
    PageQuerySchema,
    page_of,
)
from ..base import APIHandler, endpoint

TAGS = ("clients",)


class ClientsHandler(APIHandler):
    @endpoint(
        "clients:manage",
        "List client applications",
        query=PageQuerySchema,
        response=page_of(ClientSchema),
        tags=TAGS,
        errors=(400, 401, 403),
    )
    async def get(self):
        query = self.load_query()
        self.respond(await self.ctx.clients.page(query["limit"], query.get("cursor")))

    @endpoint(
        "clients:manage",
        "Register a client application; its password is shown only here",
        body=ClientCreateSchema,
        response=ClientCreatedSchema,
        status=201,
        tags=TAGS,
        errors=(400, 401, 403, 409, 415),
    )
    async def post(self):
        data = self.load_body()
        client, password = await self.ctx.clients.create(
            data["login"], data["name"], self.principal, data["permissions"]
        )
        self.set_header("Location", f"/api/v1/clients/{client['_id']}")
        self.respond({**client, "password": password})


class ClientHandler(APIHandler):
    @endpoint("clients:manage", "A client application", response=ClientSchema, tags=TAGS, errors=(401, 403, 404))
    async def get(self, client_id):
        self.respond(await self.ctx.clients.get(client_id))

    @endpoint("clients:manage", "Remove a client application", status=204, tags=TAGS, errors=(401, 403, 404))
    async def delete(self, client_id):
        await self.ctx.clients.delete(client_id)
        self.respond()


class ClientPermissionsHandler(APIHandler):
    @endpoint(
        "clients:manage",
        "Set what a client application may do beyond its own notifications (audited)",
        body=ClientPermissionsSchema,
        response=ClientSchema,
        tags=TAGS,
        errors=(400, 401, 403, 404, 415),
    )
    async def put(self, client_id):
        permissions = self.load_body()["permissions"]
        self.respond(await self.ctx.clients.set_permissions(client_id, permissions, self.principal))


routes = [
    (r"/api/v1/clients", ClientsHandler),
    (r"/api/v1/clients/(?P<client_id>[^/]+)", ClientHandler),
    (r"/api/v1/clients/(?P<client_id>[^/]+)/permissions", ClientPermissionsHandler),
]
