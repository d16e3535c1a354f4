"""make_app: the tornado.web.Application with every route, bound to one process's Context."""

from __future__ import annotations

from pathlib import Path

import tornado.web

from .handlers import API_ROUTES, PAGE_ROUTES, docs
from .handlers.admin import UI_MODULES
from .handlers.base import NotFoundHandler

TEMPLATES = Path(__file__).parent / "templates"


def make_app(ctx) -> tornado.web.Application:
    return tornado.web.Application(
        [*API_ROUTES, *PAGE_ROUTES, *docs.routes(ctx.settings.assets_dir)],
        ctx=ctx,
        openapi=docs.build_spec(API_ROUTES),
        template_path=str(TEMPLATES),
        default_handler_class=NotFoundHandler,
        cookie_secret=ctx.keys.derive("admin-cookies").hex(),
        xsrf_cookies=True,
        xsrf_cookie_kwargs={"httponly": True, "samesite": "Strict",
                            "secure": ctx.settings.public_url.startswith("https://")},
        login_url="/admin/login",
        ui_modules=UI_MODULES,
    )
