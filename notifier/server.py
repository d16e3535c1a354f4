"""Composition root of `notifier serve`: settings -> embedded services -> clients -> app -> jobs -> signals.

Shutdown runs the same steps in reverse: stop accepting HTTP, finish in-flight requests, stop the jobs,
drain the consumers, close AMQP, close MongoDB, stop the embedded services.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from tornado.httpserver import HTTPServer

from .app import make_app
from .assets import redoc_present
from .context import Context, create_context
from .embedded import EmbeddedMongo
from .settings import Settings

log = logging.getLogger(__name__)

HTTP_DRAIN_SECONDS = 10.0


def make_http_server(app, settings: Settings) -> HTTPServer:
    # Handlers enforce MAX_BODY_BYTES themselves with a JSON 413; this is only the hard ceiling.
    return HTTPServer(app, xheaders=settings.trust_proxy_headers,
                      max_body_size=max(settings.max_body_bytes, 16 * 1024 * 1024))


async def run(settings: Settings) -> None:
    ctx: Context = await create_context(settings, settings.mongo_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    http_server = make_http_server(make_app(ctx), settings)
    http_server.listen(settings.http_port, settings.http_host)
    await ctx.broker.wait_connected(10)
    await ctx.start_workers()
    if not redoc_present(settings.assets_dir):
        log.warning("ReDoc assets missing in %s: run `notifier fetch-assets` for /api/schema/redoc/",
                    settings.assets_dir)
    log.info("notifier listening on http://%s:%d (API docs at /api/schema/redoc/)",
             settings.http_host, settings.http_port)
    await stop.wait()
    log.info("shutting down")
    http_server.stop()
    try:
        await asyncio.wait_for(http_server.close_all_connections(), HTTP_DRAIN_SECONDS)
    except asyncio.TimeoutError:
        log.warning("in-flight requests did not finish in %.0fs", HTTP_DRAIN_SECONDS)
    await ctx.stop_workers()
    await ctx.close()
    log.info("stopped")


def serve(settings: Settings) -> None:
    embedded = None
    if not settings.mongo_url:
        embedded = EmbeddedMongo(settings.embedded_db_dir, settings.embedded_db_port)
        settings = settings.replace(mongo_url=embedded.start())
    try:
        asyncio.run(run(settings))
    finally:
        if embedded is not None:
            embedded.stop()
