"""Admin tokens: login/password in, a short-lived JWT out."""

from __future__ import annotations

from ...access import PUBLIC
from ...authenticator import Scheme, parse_authorization
from ...schemas import TokenRequestSchema, TokenSchema
from ..base import APIHandler, endpoint


def _token(token: str, ttl: int) -> dict:
    return {"access_token": token, "token_type": "Bearer", "expires_in": ttl}


class TokenHandler(APIHandler):
    @endpoint(
        PUBLIC,
        "Exchange an admin username and password for a JWT",
        body=TokenRequestSchema,
        response=TokenSchema,
        tags=("auth",),
        errors=(400, 401, 413, 429),
    )
    async def post(self):
        data = self.load_body()
        admin = await self.ctx.auth.login_admin(data["username"], data["password"], self.request.remote_ip)
        self.respond(_token(*await self.ctx.auth.issue_admin_token(admin)))


class TokenRefreshHandler(APIHandler):
    @endpoint(
        "auth:refresh",
        "Exchange a valid admin token for a fresh one of the same session (refused once "
        "the session is ADMIN_SESSION_MAX old)",
        response=TokenSchema,
        tags=("auth",),
        errors=(401, 403),
    )
    async def post(self):
        credentials = parse_authorization(self.request.headers["Authorization"])
        if credentials.kind is Scheme.BEARER:
            self.respond(_token(*await self.ctx.auth.refresh_admin_token(credentials.secret)))
        else:  # HTTP Basic: the password was just given, so a new session begins
            self.respond(_token(*await self.ctx.auth.issue_admin_token(self.principal)))


routes = [
    (r"/api/v1/auth/token", TokenHandler),
    (r"/api/v1/auth/token/refresh", TokenRefreshHandler),
]
