"""Test harness: real RabbitMQ, a real MongoDB-protocol server (SecantusDB, or MONGO_URL), real HTTP.

Every test gets a database and a queue prefix no other test is using, so tests and runs never see each
other's data. One database server serves a whole session (each pytest-xdist worker has its own); a test's
database is emptied and its queues purged afterwards, and the next test gets them again: creating indexes
in a new database and declaring new durable queues cost more than emptying the ones there are.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiormq
import pytest

from notifier import passwords
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
PRODUCTION_SCRYPT_N = passwords.SCRYPT_N
# Accounts made in the test process hash at 1/16 of the production cost (about three scrypt runs per test
# were a fifth of the suite's CPU). The stored hash names its cost, so every check runs the same code; the
# services the tests start as processes (tests/served.py) keep the production cost.
passwords.SCRYPT_N = 2**10
passwords.DUMMY_HASH = passwords.hash_password("dummy")


class Recycled:
    """Emptied databases and purged queue prefixes of this session, handed to the next test that needs one."""

    def __init__(self):
        self.databases: list[str] = []
        self.prefixes: list[str] = []
        self.topologies: dict[str, list] = {}  # every topology a prefix had, to delete at the end of the session

    def database(self) -> str:
        return self.databases.pop() if self.databases else f"nt_{RUN}_{next(_numbers)}"

    def prefix(self) -> str:
        return self.prefixes.pop() if self.prefixes else f"test.{RUN}.{next(_numbers)}."


@pytest.fixture(scope="session")
def recycled(amqp_url):
    pool = Recycled()
    yield pool
    asyncio.run(_delete_topologies(amqp_url, [t for ts in pool.topologies.values() for t in ts]))


@dataclass
class Credentials:
    login: str
    password: str
    header: str
    id: str = ""


# Modules holding the longest single tests (the route walk: ~2 minutes alone), run first so that no worker
# starts one of them while the others are already done. Their order within the module stays.
STARTED_FIRST = ("tests/security/test_route_walk.py", "tests/queue/test_pool.py", "tests/queue/test_delivery.py")


def pytest_itemcollected(item):
    """Under `--dist loadgroup` (pytest-xdist) the tests that share a module-scoped fixture (a served service,
    a fault rig) run on one worker, so that fixture is built once rather than once per worker. (Marked as
    each test is collected: xdist reads the marks in its own pytest_collection_modifyitems.)"""
    definitions = getattr(item, "_fixtureinfo", None)
    if definitions is None:
        return
    shared = sorted(
        name
        for name, chain in definitions.name2fixturedefs.items()
        if any(fixture.scope == "module" for fixture in chain)
    )
    if shared:
        item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}:{'+'.join(shared)}"))


def pytest_collection_modifyitems(config, items):
    if os.environ.get("NOTIFIER_IMAGE_TESTS") != "1":
        # The image's tests need the image .ci/image builds first; it runs them as its own step of .ci/run.
        image = [item for item in items if item.get_closest_marker("image")]
        if image:
            config.hook.pytest_deselected(items=image)
            items[:] = [item for item in items if not item.get_closest_marker("image")]
    rank = {module: place for place, module in enumerate(STARTED_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


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
        raise RuntimeError(
            f"RabbitMQ is not reachable at {parts.hostname}:{parts.port or 5672} ({exc}); "
            f"start it with `rabbitmq-server -detached`"
        ) from None
    return url


@pytest.fixture
def settings_overrides():
    """Override in a test module to change settings for its tests."""
    return {}


@pytest.fixture
def settings(mongo_url, amqp_url, settings_overrides, recycled):
    return Settings.from_env(
        {},
        mongo_url=mongo_url,
        mongo_db=recycled.database(),
        amqp_url=amqp_url,
        queue_prefix=recycled.prefix(),
        secret_key="test-root-secret",
        user_jwt_secret=USER_SECRET,
        assets_dir=str(REPO / "var" / "assets"),
        public_url="http://notifier.test",
        **settings_overrides,
    )


def _queues(topology) -> list[str]:
    return [*topology.all_queues(), *(topology.pace_queue(ms) for ms in topology.pace_declared)]


async def _delete_topologies(amqp_url: str, topologies: list) -> None:
    if not topologies:
        return
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel()
        for topology in topologies:
            for queue in _queues(topology):
                await channel.queue_delete(queue)
            for exchange in topology.exchanges():
                await channel.exchange_delete(exchange)
    finally:
        await connection.close()


# A database with more documents than this is dropped rather than emptied, and not handed out again.
EMPTY_AT_MOST = 2000


async def _empty_database(store) -> bool:
    """Delete every document (the indexes stay); False when the database was big enough to drop instead."""
    names = [name for name in await store.db.list_collection_names() if not name.startswith("system.")]
    sizes = [await store.db[name].estimated_document_count() for name in names]
    if sum(sizes) > EMPTY_AT_MOST:
        await store.client.drop_database(store.db.name)
        return False
    for name, size in zip(names, sizes, strict=True):
        if size:
            await store.db[name].delete_many({})
    return True


async def _purge_queues(amqp_url: str, topology) -> bool:
    """Purge every queue of the topology; False when it declared pace tiers, or when a consumer is still
    attached (one still stopping would count as another instance's in the next test): those are deleted
    instead (a consumer of an earlier connection may have declared tiers this topology no longer knows of)."""
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel()
        attached = [
            (await channel.queue_declare(queue, passive=True)).consumer_count for queue in topology.all_queues()
        ]
        if topology.pace_declared or any(attached):
            for queue in _queues(topology):
                await channel.queue_delete(queue)
            for exchange in topology.exchanges():
                await channel.exchange_delete(exchange)
            return False
        for queue in topology.all_queues():
            await channel.queue_purge(queue)
        return True
    finally:
        await connection.close()


async def _teardown(context, recycled: Recycled) -> None:
    settings = context.settings
    await context.publisher.drain(timeout=5)
    if await _empty_database(context.store):
        recycled.databases.append(settings.mongo_db)
    await context.close()
    topologies = recycled.topologies.setdefault(settings.queue_prefix, [])
    if await _purge_queues(settings.amqp_url, context.topology):
        if not any(t.all_queues() == context.topology.all_queues() for t in topologies):
            topologies.append(context.topology)
        recycled.prefixes.append(settings.queue_prefix)


@pytest.fixture
def ctx(io_loop, settings, recycled):
    context = io_loop.run_sync(lambda: create_context(settings, settings.mongo_url))
    assert io_loop.run_sync(lambda: context.broker.wait_connected(10)), "no RabbitMQ connection"
    yield context
    io_loop.run_sync(lambda: _teardown(context, recycled))


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
