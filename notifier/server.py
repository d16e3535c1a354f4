"""Composition root of `notifier serve`: settings -> embedded services -> clients -> app -> jobs -> signals.

Shutdown runs the same steps in reverse: stop accepting HTTP, finish in-flight requests, stop the jobs,
drain the consumers, close AMQP, close MongoDB, stop the embedded services.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from urllib.parse import urlsplit

from tornado.httpserver import HTTPServer

from .app import make_app
from .assets import redoc_present
from .context import Context, create_context
from .embedded import EmbeddedError, EmbeddedMongo, EmbeddedProcess, EmbeddedRabbit
from .errors import DomainError
from .handlers.metrics import metrics_app
from .settings import Settings

log = logging.getLogger(__name__)

HTTP_DRAIN_SECONDS = 10.0
SUPERVISE_SECONDS = 5.0


def make_http_server(app, settings: Settings) -> HTTPServer:
    # The API and the admin stream bodies and refuse one past their own limit with a 413 (handlers/base.py);
    # this ceiling is for the handlers that take no body, which tornado would otherwise read whole.
    return HTTPServer(
        app,
        xheaders=settings.trust_proxy_headers,
        max_body_size=settings.max_form_bytes,
        max_buffer_size=max(settings.max_body_bytes, settings.max_upload_bytes) + 1024 * 1024,
        idle_connection_timeout=settings.http_idle_timeout,
        body_timeout=settings.http_body_timeout,
    )


async def bootstrap_admin(ctx: Context) -> None:
    try:
        created = await ctx.admins.ensure(ctx.settings.notifier_admin_username, ctx.settings.notifier_admin_password)
    except DomainError as exc:
        raise SystemExit(f"NOTIFIER_ADMIN_PASSWORD: {exc.message}") from None
    if created:
        log.info("created admin %r from NOTIFIER_ADMIN_USERNAME", ctx.settings.notifier_admin_username)


async def run(settings: Settings, embedded: Sequence[EmbeddedProcess] = ()) -> None:
    ctx: Context = await create_context(settings, settings.mongo_url)
    if settings.notifier_admin_username:
        await bootstrap_admin(ctx)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    http_server = make_http_server(make_app(ctx), settings)
    http_server.listen(settings.http_port, settings.http_host)
    servers = [http_server]
    if settings.metrics_port:
        metrics_server = make_http_server(metrics_app(ctx), settings)
        metrics_server.listen(settings.metrics_port, settings.metrics_host)
        servers.append(metrics_server)
    await ctx.broker.wait_connected(10)
    await ctx.start_workers()
    if not redoc_present(settings.assets_dir):
        log.warning(
            "ReDoc assets missing in %s: run `notifier fetch-assets` for /api/schema/redoc/", settings.assets_dir
        )
    log.info(
        "notifier listening on http://%s:%d (API docs at /api/schema/redoc/)", settings.http_host, settings.http_port
    )
    supervisor = asyncio.create_task(supervise(list(embedded)))
    await stop.wait()
    log.info("shutting down")
    supervisor.cancel()
    for server in servers:
        server.stop()
    await ctx.streams.close_all()  # each stream's last frame says so, before the connections close
    try:
        await asyncio.wait_for(asyncio.gather(*(s.close_all_connections() for s in servers)), HTTP_DRAIN_SECONDS)
    except TimeoutError:
        log.warning("in-flight requests did not finish in %.0fs", HTTP_DRAIN_SECONDS)
    await ctx.stop_workers()
    await ctx.close()
    log.info("stopped")


async def supervise(embedded: list[EmbeddedProcess]) -> None:
    """Start an embedded service again when it dies; the server reconnects on its own."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(SUPERVISE_SECONDS)
        for service in embedded:
            try:
                await loop.run_in_executor(None, service.supervise)
            except EmbeddedError:
                log.exception("embedded %s could not be started again", service.name)


def serve(settings: Settings) -> None:
    embedded: list[EmbeddedProcess] = []
    try:
        if settings.embedded_rabbitmq:
            rabbit = EmbeddedRabbit(settings.embedded_rabbitmq_dir, urlsplit(settings.amqp_url).port or 5672)
            embedded.append(rabbit)
            rabbit.start()
        if not settings.mongo_url:
            mongo = EmbeddedMongo(settings.embedded_db_dir, settings.embedded_db_port)
            embedded.append(mongo)
            settings = settings.replace(mongo_url=mongo.start())
        asyncio.run(run(settings, embedded))
    finally:
        for service in reversed(embedded):
            service.stop()
