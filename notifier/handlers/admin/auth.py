"""Logging in and out of the admin."""

from __future__ import annotations

import re

from ...errors import TooManyAttempts, Unauthenticated
from .base import AdminHandler

SAFE_NEXT = re.compile(r"^/admin(/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$")


def safe_next(target: str | None) -> str:
    """Where to go after logging in: an admin path of this site (no scheme, host, `//`, backslash or
    control character), else the dashboard."""
    if target and SAFE_NEXT.fullmatch(target) and "//" not in target:
        return target
    return "/admin/"


class LoginHandler(AdminHandler):
    login_required = False

    def get(self):
        if self.current_user is not None:
            self.redirect("/admin/")
            return
        self.page(
            "login.html", values={}, errors={}, message=None, next=safe_next(self.get_query_argument("next", "/admin/"))
        )

    async def submit(self):
        values = self.form()
        target = safe_next(values.get("next"))
        try:
            admin = await self.ctx.auth.login_admin(
                values.get("username", ""), values.get("password", ""), self.request.remote_ip
            )
        except (Unauthenticated, TooManyAttempts) as exc:
            if isinstance(exc, TooManyAttempts):
                self.set_header("Retry-After", str(exc.retry_after))
            self.page(
                "login.html",
                status=429 if isinstance(exc, TooManyAttempts) else 401,
                values={"username": values.get("username", "")},
                errors={},
                message=exc.message,
                next=target,
            )
            return
        await self.start_session(admin)
        self.redirect(target)


class LogoutHandler(AdminHandler):
    async def submit(self):
        await self.end_session()
        self.redirect(self.get_login_url())
