"""Admin tokens: login/password in, a short-lived JWT out."""

from __future__ import annotations

from ...auth import PUBLIC
from ...schemas import TokenRequestSchema, TokenSchema
from ..base import APIHandler, endpoint


def _token(token: str, ttl: int) -> dict:
    return {"access_token": token, "token_type": "Bearer", "expires_in": ttl}


class TokenHandler(APIHandler):
    @endpoint(PUBLIC, "Exchange an admin username and password for a JWT", body=TokenRequestSchema,
              response=TokenSchema, tags=("auth",), errors=(400, 401, 413, 429))
    async def post(self):
        data = self.load_body()
        admin = await self.ctx.login.login(data["username"], data["password"], self.request.remote_ip)
        self.respond(_token(*await self.ctx.auth.issue_admin_token(admin)))


class TokenRefreshHandler(APIHandler):
    @endpoint("auth:refresh", "Exchange a valid admin token for a fresh one", response=TokenSchema,
              tags=("auth",), errors=(401, 403))
    async def post(self):
        self.respond(_token(*await self.ctx.auth.issue_admin_token(self.principal)))


routes = [
    (r"/api/v1/auth/token", TokenHandler),
    (r"/api/v1/auth/token/refresh", TokenRefreshHandler),
]
