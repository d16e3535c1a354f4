"""Every route of the app (API, admin, docs, health) with every HTTP method, as every kind of caller, with
path parameters that exist and junk ones, and with empty, trivial, broken and deeply nested bodies:
no answer is ever a 5xx, and every answer refuses sniffing and framing."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import quote, urlencode

import pytest
from bson import ObjectId
from tornado.httpclient import HTTPRequest
from tornado.simple_httpclient import HTTPTimeoutError

from notifier.access import Principal, Role

from ..handlers.admin.conftest import Browser
from ..support import TEST_ADMIN

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
BODIES = (
    None,
    b"{}",
    b'{"junk": [1, "x", null], ',
    b"[" * 64 + b"]" * 64,
    b'{"title": "\\ud800", "recipients": ["\\udfff"], "users": [{"user_id": "\\ud800"}]}',
    b'{"webhook_url": "http://[::1", "users": [{"user_id": "w1", "webhook_url": "http://a]/"}]}',
)
FORM_FIELDS = (
    "title",
    "text",
    "channel",
    "is_express",
    "content_id",
    "variables",
    "recipients",
    "notification_id",
    "user_ids",
    "kind",
    "cron",
    "interval_seconds",
    "timezone",
    "start_at",
    "end_at",
    "enabled",
    "misfire_policy",
    "misfire_grace_seconds",
    "user_id",
    "email",
    "telegram_chat_id",
    "webhook_url",
    "display_name",
    "locale",
    "unsub_email",
    "unsubscribed_all",
    "login",
    "name",
    "username",
    "next",
    "scope",
    "delivery_id",
    "reason",
    "status",
    "cursor",
    "q",
    "created_after",
    "List-Unsubscribe",
)


def form(value: str, **fields: str) -> bytes:
    """Every field an admin form reads, set to one hostile value (the password stays too short to change
    anyone's: the walk must keep its own session)."""
    return urlencode({**{name: value for name in FORM_FIELDS}, "password": "x", **fields}).encode()


FORMS = (
    form("-1", kind="interval"),
    form("America"),
    form("0 0 31 2 *"),
    form("* * * * * *"),
    form("9999-12-31T23:59:59-12:00", kind="interval"),
    form("1.5", kind="interval"),
    form("\x00"),
    form("x" * 300),
    form("http://[::1"),
)
JUNK_IDS = ("x", str(ObjectId()), "%00", "%ff%fe", "A" * 2000, "..%2F..%2Fetc%2Fpasswd", "-1")
PARAMETER = re.compile(r"\(\?P<(\w+)>([^)]*)\)|\([^)]*\)")
CHOICE = re.compile(r"[\w-]+(\|[\w-]+)+")


def paths(pattern: str, existing: dict[str, str]) -> list[tuple[str, str | None]]:
    """The route's path with its parameters filled: once with existing values, then once per junk value
    (paired with the junk value, None for the existing ones)."""
    pattern = pattern.rstrip("$").replace("/?", "/")

    def fill(value_of) -> str:
        return PARAMETER.sub(lambda match: value_of(match.group(1), match.group(2) or ""), pattern)

    def existing_value(name: str | None, body: str) -> str:
        if CHOICE.fullmatch(body):  # a choice of words: the first one
            return body.split("|")[0]
        return quote(existing.get(name or "", "admin.css"), safe="")

    if not PARAMETER.search(pattern):
        return [(pattern, None)]
    return [
        (fill(existing_value), None),
        *((fill(lambda name, body, junk=junk: junk), junk) for junk in JUNK_IDS),
    ]


@pytest.fixture
def callers(io_loop, ctx, http_client, base_url, admin, client_app, contacts_app, end_user):
    """Authorization headers (and cookies) of each kind of caller, and ids of things that exist."""

    async def setup():
        browser = Browser(base_url, http_client)
        assert (await browser.login()).status == 302
        writer = Principal(Role.CLIENT, client_app.id, "shop")
        await ctx.users.bulk_upsert(TEST_ADMIN, [{"user_id": "ann", "email": "ann@example.com"}])
        notification, _ = await ctx.notifications.create(
            writer,
            {
                "title": "t",
                "text": "x",
                "channel": "inbox",
                "is_express": False,
                "content_id": None,
                "variables": {},
                "recipients": ["ann"],
            },
        )
        schedule = await ctx.schedules.create(
            writer, {"notification_id": str(notification["_id"]), "user_ids": ["ann"], "cron": "0 9 * * *"}
        )
        delivery = await ctx.store.deliveries.find_one({"user_id": "ann"})
        session = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
        identities = {
            "anonymous": {},
            "admin basic": {"Authorization": admin.header},
            "client app": {"Authorization": client_app.header},
            "client app with contacts": {"Authorization": contacts_app.header},
            "end user": {"Authorization": end_user("ann")},
            "admin session": {"Cookie": session, "X-XSRFToken": browser.xsrf()},
            # Bytes that are not UTF-8 (tornado reads headers as Latin-1), and a cookie that is not ours.
            "garbage": {
                "Authorization": "Basic \xff\xfe",
                "Cookie": "notifier_admin=\xff; _xsrf=\xfe",
                "X-XSRFToken": "\xff",
                "X-Request-Id": "\xff" * 80,
            },
        }
        existing = {
            "notification_id": str(notification["_id"]),
            "schedule_id": str(schedule["_id"]),
            "user_id": "ann",
            "client_id": client_app.id,
            "admin_id": admin.id,
            "delivery_id": str(delivery["_id"]),
            "token": ctx.links.unsubscribe_url("ann", "email").rpartition("/")[2],
        }
        return identities, existing

    return io_loop.run_sync(setup)


# Three shards, so that three test workers share the walk.
SHARDS = {
    "anonymous, garbage, end user": ("anonymous", "garbage", "end user"),
    "admins": ("admin basic", "admin session"),
    "client apps": ("client app", "client app with contacts"),
}


@pytest.mark.gen_test(timeout=300)
@pytest.mark.parametrize("shard", SHARDS)
async def test_no_route_answers_5xx_or_without_security_headers(app, http_client, base_url, callers, shard):
    identities, existing = callers
    identities = {name: identities[name] for name in SHARDS[shard]}
    requests = []
    for rule in app.wildcard_router.rules:
        for path, junk in paths(rule.matcher.regex.pattern, existing):
            long_id = junk == "A" * 2000
            for method in METHODS:
                bodies = BODIES if method in ("POST", "PUT", "PATCH") else (None,)
                if long_id:
                    bodies = bodies[:1]  # a long id once per method and caller is enough
                elif junk is not None:
                    bodies = bodies[:2]  # every body meets the existing ids; a junk id, no body and a trivial one
                for identity, headers in identities.items():
                    for body in bodies[:1] if identity == "garbage" else bodies:
                        requests.append((method, path, identity, headers, body, "application/json"))
                    if method == "POST" and identity in ("anonymous", "admin session") and not long_id:
                        requests.extend(
                            (method, path, identity, headers, body, "application/x-www-form-urlencoded")
                            for body in (FORMS if junk is None else FORMS[:2])
                        )
    # Deletes last, so the other methods meet the existing ids while they still exist.
    requests.sort(key=lambda request: request[0] == "DELETE")
    assert len(requests) > 1000
    failures = []
    slots = asyncio.Semaphore(8)

    async def one(method, path, identity, headers, body, content_type):
        headers = dict(headers)
        if body is not None:
            headers["Content-Type"] = content_type
        # An event stream that opens never ends: its status line and headers are the answer.
        streams = method == "GET" and path.split("?")[0] == "/api/v1/me/stream"
        received: list[str] = []
        async with slots:
            fetching = http_client.fetch(
                HTTPRequest(
                    base_url + path,
                    method=method,
                    headers=headers,
                    body=body,
                    follow_redirects=False,
                    allow_nonstandard_methods=True,
                    request_timeout=3 if streams else 60,
                    header_callback=received.append if streams else None,
                ),
                raise_error=False,
            )
            try:
                response = await fetching
            except HTTPTimeoutError:
                opened = "".join(received).lower()
                if not streams or not received or received[0].split()[1] != "200":
                    raise
                if (
                    "text/event-stream" not in opened
                    or "nosniff" not in opened
                    or "frame-ancestors 'none'" not in opened
                ):
                    failures.append(f"an event stream without its headers: {method} {path[:120]} as {identity}")
                return
        if response.code >= 500 or response.code == 599:
            failures.append(f"{response.code} {method} {path[:120]} as {identity} with {(body or b'')[:40]!r}")
        elif response.headers.get(
            "X-Content-Type-Options"
        ) != "nosniff" or "frame-ancestors 'none'" not in response.headers.get("Content-Security-Policy", ""):
            failures.append(f"no security headers: {response.code} {method} {path[:120]} as {identity}")

    for start in range(0, len(requests), 400):
        await asyncio.gather(*(one(*request) for request in requests[start : start + 400]))
    assert not failures, f"{len(failures)} of {len(requests)} requests failed:\n" + "\n".join(failures[:60])
