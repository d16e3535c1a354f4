"""The public unsubscribe page behind the signed link in every message (no login; the link is the proof).

GET only shows what will happen (mail scanners follow links); POST does it. A POST with the body
`List-Unsubscribe=One-Click` is the RFC 8058 one-click unsubscribe mail clients send.
"""

from __future__ import annotations

from .base import PageHandler


class UnsubscribeHandler(PageHandler):
    referrer_policy = "no-referrer"  # the page's URL is the signed token

    def check_xsrf_cookie(self) -> None:
        """The signed token in the URL authorizes this form; mail clients post it without cookies."""

    def get(self, token):
        user_id, channel = self.ctx.links.read_unsubscribe_token(token)
        self.render("unsubscribe.html", user_id=user_id, channel=channel, done=False)

    async def post(self, token):
        user_id, channel = self.ctx.links.read_unsubscribe_token(token)
        await self.ctx.users.unsubscribe(user_id, channel)
        self.render("unsubscribe.html", user_id=user_id, channel=channel, done=True)


routes = [(r"/unsubscribe/(?P<token>[^/]+)", UnsubscribeHandler)]
