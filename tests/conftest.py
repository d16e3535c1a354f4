"""Test harness: real RabbitMQ, a real MongoDB-protocol server (SecantusDB, or MONGO_URL), real HTTP.

Every test gets its own database and queue prefix, so tests and runs never see each other's data.
"""

from __future__ import annotations

import itertools
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiormq
import pytest

from notifier.access import GRANTABLE, Principal, Role
from notifier.app import make_app
from notifier.context import create_context
from notifier.embedded import EmbeddedMongo
from notifier.server import make_http_server
from notifier.settings import Settings

from .http_peer import Peer
from .support import Api, basic, user_token

RUN = uuid.uuid4().hex[:8]
REPO = Path(__file__).resolve().parent.parent
USER_SECRET = "end-user-signing-secret-for-tests"
ADMIN_PASSWORD = "admin-password-1"
_numbers = itertools.count()


@dataclass
class Credentials:
    login: str
    password: str
    header: str
    id: str = ""


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory):
    """MONGO_URL when set (a real MongoDB), else one SecantusDB server for the whole session."""
    url = os.environ.get("MONGO_URL")
    if url:
        yield url
        return
    server = EmbeddedMongo(str(tmp_path_factory.mktemp("secantus") / "db"))
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def amqp_url():
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or 5672), timeout=2).close()
    except OSError as exc:
        raise RuntimeError(f"RabbitMQ is not reachable at {parts.hostname}:{parts.port or 5672} ({exc}); "
                           f"start it with `rabbitmq-server -detached`") from None
    return url


@pytest.fixture
def settings_overrides():
    """Override in a test module to change settings for its tests."""
    return {}


@pytest.fixture
def settings(mongo_url, amqp_url, settings_overrides):
    number = next(_numbers)
    return Settings.from_env(
        {}, mongo_url=mongo_url, mongo_db=f"nt_{RUN}_{number}", amqp_url=amqp_url,
        queue_prefix=f"test.{RUN}.{number}.", secret_key="test-root-secret", user_jwt_secret=USER_SECRET,
        assets_dir=str(REPO / "var" / "assets"), public_url="http://notifier.test", **settings_overrides)


async def delete_topology(amqp_url: str, topology) -> None:
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel()
        pace = [topology.pace_queue(ms) for ms in topology.pace_declared]
        for queue in [*topology.all_queues(), *pace]:
            await channel.queue_delete(queue)
        await channel.exchange_delete(topology.exchange)
    finally:
        await connection.close()


async def _teardown(context) -> None:
    await context.publisher.drain(timeout=5)
    await context.store.client.drop_database(context.settings.mongo_db)
    await context.close()
    await delete_topology(context.settings.amqp_url, context.topology)


@pytest.fixture
def ctx(io_loop, settings):
    context = io_loop.run_sync(lambda: create_context(settings, settings.mongo_url))
    assert io_loop.run_sync(lambda: context.broker.wait_connected(10)), "no RabbitMQ connection"
    yield context
    io_loop.run_sync(lambda: _teardown(context))


@pytest.fixture
def app(ctx):
    return make_app(ctx)


@pytest.fixture
def http_server(request, io_loop, _unused_port, app, settings):
    """The app behind the same HTTPServer settings as `notifier serve`."""
    server = make_http_server(app, settings)
    server.add_socket(_unused_port[0])
    yield server
    server.stop()
    io_loop.run_sync(server.close_all_connections, timeout=10)


@pytest.fixture
def api(http_client, base_url):
    return Api(base_url, http_client)


@pytest.fixture
def admin(io_loop, ctx) -> Credentials:
    doc = io_loop.run_sync(lambda: ctx.admins.create("root", ADMIN_PASSWORD))
    return Credentials("root", ADMIN_PASSWORD, basic("root", ADMIN_PASSWORD), str(doc["_id"]))


@pytest.fixture
def client_app(io_loop, ctx) -> Credentials:
    creator = Principal(Role.ADMIN, "test", "test")
    doc, password = io_loop.run_sync(lambda: ctx.clients.create("shop", "Shop", creator))
    return Credentials("shop", password, f"shop {password}", str(doc["_id"]))


@pytest.fixture
def other_client_app(io_loop, ctx) -> Credentials:
    creator = Principal(Role.ADMIN, "test", "test")
    doc, password = io_loop.run_sync(lambda: ctx.clients.create("crm", "CRM", creator))
    return Credentials("crm", password, f"crm {password}", str(doc["_id"]))


@pytest.fixture
def end_user():
    """Authorization header of an end user, as the external auth server would sign it."""
    return lambda user_id, **claims: user_token(USER_SECRET, user_id, **claims)


@pytest.fixture
def contacts_app(io_loop, ctx) -> Credentials:
    """A client application an admin granted every permission there is (today: the contacts directory)."""
    creator = Principal(Role.ADMIN, "test", "test")
    doc, password = io_loop.run_sync(lambda: ctx.clients.create("directory", "Directory", creator, GRANTABLE))
    return Credentials("directory", password, f"directory {password}", str(doc["_id"]))


@pytest.fixture
def peer(io_loop):
    """A real HTTP server on loopback that records what it is sent (webhooks, the Telegram API)."""
    server = Peer().start()
    yield server
    server.stop()
