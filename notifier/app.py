"""make_app: the tornado.web.Application with every route, bound to one process's Context."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import tornado.web
from tornado.log import access_log

from . import metrics
from .handlers import API_ROUTES, PAGE_ROUTES, docs
from .handlers.admin import UI_MODULES
from .handlers.base import NotFoundHandler

TEMPLATES = Path(__file__).parent / "templates"
TICKET = re.compile(r"([?&]ticket=)[^&]*")  # a stream ticket opens a stream for a minute: not for the log


def request_logger(routes: list) -> Callable[[tornado.web.RequestHandler], None]:
    """Tornado's log_function: the access log line, and the HTTP metrics labelled by route pattern."""
    patterns: dict[type, str] = {}
    for rule in routes:
        patterns.setdefault(rule[1], rule[0])

    def log_request(handler: tornado.web.RequestHandler) -> None:
        status = handler.get_status()
        seconds = handler.request.request_time()
        method = handler.request.method if handler.request.method in handler.SUPPORTED_METHODS else "other"
        route = patterns.get(type(handler), "unmatched")
        metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
        metrics.HTTP_SECONDS.labels(method, route).observe(seconds)
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        access_log.log(
            level,
            "%d %s %s (%s) %.1fms",
            status,
            handler.request.method,
            TICKET.sub(r"\1[hidden]", handler.request.uri or ""),
            handler.request.remote_ip,
            1000 * seconds,
        )

    return log_request


def make_app(ctx) -> tornado.web.Application:
    routes = [*API_ROUTES, *PAGE_ROUTES, *docs.routes(ctx.settings.assets_dir)]
    return tornado.web.Application(
        routes,
        ctx=ctx,
        log_function=request_logger(routes),
        openapi=docs.build_spec(API_ROUTES),
        template_path=str(TEMPLATES),
        default_handler_class=NotFoundHandler,
        cookie_secret=ctx.keys.derive("admin-cookies").hex(),
        xsrf_cookies=True,
        xsrf_cookie_kwargs={
            "httponly": True,
            "samesite": "Strict",
            "secure": ctx.settings.public_url.startswith("https://"),
        },
        login_url="/admin/login",
        ui_modules=UI_MODULES,
    )
