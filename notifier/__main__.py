"""The `notifier` command: serve | createsuperuser | create-client | user-token | fetch-assets."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import sys

from .settings import Settings, SettingsError


@contextlib.contextmanager
def database(settings: Settings):
    """The MongoDB URL to use: MONGO_URL, the running server's embedded one, or a temporary embedded one."""
    if settings.mongo_url:
        yield settings.mongo_url
        return
    from .embedded import EmbeddedMongo

    embedded = EmbeddedMongo(settings.embedded_db_dir, settings.embedded_db_port)
    running = embedded.running_url()
    if running:
        yield running
        return
    try:
        yield embedded.start()
    finally:
        embedded.stop()


async def _with_store(settings: Settings, mongo_url: str, work):
    from .context import open_store

    store = await open_store(settings, mongo_url, wait=10)
    try:
        return await work(store)
    finally:
        store.close()


def _read_password(args) -> str:
    if args.username and not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    while True:
        password = getpass.getpass("Password: ")
        if password == getpass.getpass("Password (again): "):
            return password
        print("The passwords differ; try again.", file=sys.stderr)


def createsuperuser(settings: Settings, args) -> int:
    from .clock import Clock
    from .errors import DomainError
    from .services.admins import AdminService

    username = args.username or input("Username: ").strip()
    password = _read_password(args)

    async def work(store):
        await AdminService(store, Clock()).create(username, password)

    with database(settings) as url:
        try:
            asyncio.run(_with_store(settings, url, work))
        except DomainError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
    print(f"Admin {username!r} created.")
    return 0


def create_client(settings: Settings, args) -> int:
    from marshmallow import ValidationError

    from .access import Principal, Role
    from .clock import Clock
    from .errors import DomainError
    from .schemas import ClientCreateSchema

    try:
        data = ClientCreateSchema().load({"login": args.login, "name": args.name or args.login})
    except ValidationError as exc:
        print(f"error: {exc.messages}", file=sys.stderr)
        return 1

    async def work(store):
        from .services.clients import ClientService

        return await ClientService(store, Clock()).create(
            data["login"], data["name"], Principal(Role.ADMIN, "cli", "cli")
        )

    with database(settings) as url:
        try:
            _, password = asyncio.run(_with_store(settings, url, work))
        except DomainError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
    print(f"Client {data['login']!r} created. Its password (shown only now):\n{password}")
    return 0


def user_token(settings: Settings, args) -> int:
    from .keys import load_keys
    from .tokens import UserTokens

    async def work(store):
        keys = await load_keys(store, settings)
        tokens = UserTokens(settings, keys)
        return "\n".join(tokens.issue(user_id, args.ttl) for user_id in args.user_ids)

    with database(settings) as url:
        print(asyncio.run(_with_store(settings, url, work)))
    return 0


def fetch_assets(settings: Settings, args) -> int:
    from .assets import fetch_redoc, redoc_present

    if redoc_present(settings.assets_dir) and not args.force:
        print(f"ReDoc already in {settings.assets_dir}")
        return 0
    print(f"ReDoc fetched into {fetch_redoc(settings.assets_dir)}")
    return 0


def serve(settings: Settings, args) -> int:
    from .server import serve as run_server

    run_server(settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="notifier", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the API, the admin, the scheduler and the consumer pool")
    superuser = commands.add_parser("createsuperuser", help="create an admin account")
    superuser.add_argument("--username", help="with it, the password is read from stdin when not a terminal")
    client = commands.add_parser("create-client", help="register a client application; prints its password")
    client.add_argument("login")
    client.add_argument("--name", help="display name (default: the login)")
    token = commands.add_parser(
        "user-token", help="sign end-user tokens with USER_JWT_SECRET (local testing), one line per user"
    )
    token.add_argument("user_ids", nargs="+", metavar="user_id")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    assets = commands.add_parser("fetch-assets", help="download ReDoc from the npm registry into ASSETS_DIR")
    assets.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"notifier: configuration error: {exc}", file=sys.stderr)
        return 2
    from .logs import setup_logging

    setup_logging(settings.log_level, settings.log_format)
    handlers = {
        "serve": serve,
        "createsuperuser": createsuperuser,
        "create-client": create_client,
        "user-token": user_token,
        "fetch-assets": fetch_assets,
    }
    return handlers[args.command](settings, args)


if __name__ == "__main__":
    sys.exit(main())
