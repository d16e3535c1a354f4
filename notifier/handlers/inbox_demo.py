"""The inbox bell demo at /inbox/demo (INBOX_DEMO): a page an end user opens with their token, fed by their
stream. Off by default: it is a sample of what a product's own page does, not part of the service."""

from __future__ import annotations

from pathlib import Path

import tornado.web

from .base import PageHandler, StaticFiles

ASSETS = Path(__file__).resolve().parent.parent / "static" / "inbox"
# Its own script, style and API calls only; the token stays in the page's memory.
CSP_DEMO = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; form-action 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


def refuse_unless_enabled(application: tornado.web.Application) -> None:
    """The page and its files are a 404 unless INBOX_DEMO is on."""
    if not application.settings["ctx"].settings.inbox_demo:
        raise tornado.web.HTTPError(404)


class InboxDemoHandler(PageHandler):
    content_security_policy = CSP_DEMO
    referrer_policy = "no-referrer"

    def prepare(self):
        super().prepare()
        refuse_unless_enabled(self.application)

    def get(self):
        self.render("inbox_demo.html")


class InboxAssets(StaticFiles):
    def prepare(self):
        refuse_unless_enabled(self.application)


routes = [
    (r"/inbox/demo", InboxDemoHandler),
    (r"/inbox/static/(.*)", InboxAssets, {"path": str(ASSETS)}),
]
