"""What a delivery's error tells an API caller: a short phrase from a fixed vocabulary, never the contact's
address, a host, a port or an OS error text. The detail goes to the consumer's log line for that delivery.

A client application without `contacts:read` notifies users whose contacts it cannot read, through one
consumer in this process (so its log lines reach caplog), the real broker, database, SMTP server and sockets.
"""

from __future__ import annotations

import logging
import socket

import pytest
from bson import ObjectId

from ..queue.conftest import consumer, pipeline_settings, settled, smtp  # noqa: F401  (shared pipeline fixtures)
from ..support import TEST_ADMIN

# Linux routes all of 127/8 to the loopback interface: 127.0.0.2 is the operator's allowed internal hook host.
HOOK_HOST = "127.0.0.2"
# What must never reach a caller: OS error texts, exception names and connection words.
INFRASTRUCTURE = [
    "Errno",
    "error",
    "refused",
    "connect",
    "Name or service",
    "gaierror",
    "OSError",
    "127.0.0",
    "port",
    "Timeout",
]


@pytest.fixture
def settings_overrides(pipeline_settings, request):
    overrides = {**pipeline_settings, "outbound_allow": (HOOK_HOST,)}
    if "mail_server_down" in request.fixturenames:
        overrides["smtp_port"] = request.getfixturevalue("mail_server_down")
    return overrides


@pytest.fixture
def mail_server_down() -> int:
    """SMTP_PORT is a port nobody listens on."""
    return closed_port("127.0.0.1")


def closed_port(host: str) -> int:
    """A port on `host` nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


async def notify(api, ctx, app, channel: str, users: dict[str, dict], expected: dict) -> list[dict]:
    """`app` notifies `users` (stored as the directory holds them); their deliveries as `app` lists them."""
    await ctx.users.bulk_upsert(TEST_ADMIN, [{"user_id": uid, **contact} for uid, contact in users.items()])
    created = await api.post(
        "/api/v1/notifications",
        {"title": "t", "text": "x", "channel": channel, "recipients": list(users)},
        auth=app.header,
    )
    assert created.status == 201, created.body
    await ctx.publisher.drain(10)
    assert await settled(ctx, ObjectId(created.body["id"]), len(users)) == expected
    listed = await api.get(f"/api/v1/notifications/{created.body['id']}/deliveries", auth=app.header)
    assert listed.status == 200, listed.body
    return listed.body["items"]


def logged_for(caplog, delivery: dict) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if getattr(r, "delivery_id", None) == delivery["id"])


def assert_generic(text: str, *secrets: str) -> None:
    for secret in [*INFRASTRUCTURE, *secrets]:
        assert secret.lower() not in text.lower(), (secret, text)


@pytest.mark.gen_test(timeout=90)
async def test_an_address_no_message_can_be_built_for_is_not_shown(api, ctx, client_app, smtp, consumer, caplog):
    with caplog.at_level(logging.INFO):
        [delivery] = await notify(api, ctx, client_app, "email", {"uni": {"email": "ä@example.com"}}, {"failed": 1})
    assert (delivery["reason"], delivery["last_error"]) == ("invalid_contact", "invalid address")
    assert_generic(delivery["last_error"], "ä@example.com", "example.com", "ASCII")
    assert "ä@example.com" in logged_for(caplog, delivery)


@pytest.mark.gen_test(timeout=90)
async def test_an_unreachable_mail_server_is_not_described(api, ctx, client_app, mail_server_down, consumer, caplog):
    with caplog.at_level(logging.INFO):
        [delivery] = await notify(
            api, ctx, client_app, "email", {"plain": {"email": "plain@example.com"}}, {"failed": 1}
        )
    assert delivery["reason"] == "attempts_exhausted" and delivery["attempts"] == ctx.settings.max_attempts
    assert delivery["last_error"] == "mail server unavailable"
    assert_generic(delivery["last_error"], str(mail_server_down), "SMTP server")
    logged = logged_for(caplog, delivery)
    assert "127.0.0.1" in logged and str(mail_server_down) in logged


@pytest.mark.gen_test(timeout=90)
async def test_webhook_errors_do_not_tell_internal_names_or_ports_apart(api, ctx, client_app, consumer, caplog):
    port = closed_port(HOOK_HOST)
    users = {
        "internal-name": {"webhook_url": "http://localhost/hook"},
        "internal-name-dot": {"webhook_url": "http://localhost./hook"},
        "no-such-name": {"webhook_url": "http://no-such-host.invalid/hook"},
        "closed-port": {"webhook_url": f"http://{HOOK_HOST}:{port}/hook"},
    }
    with caplog.at_level(logging.INFO):
        listed = await notify(api, ctx, client_app, "webhook", users, {"failed": 4})
    by_user = {d["user_id"]: d for d in listed}
    # A name that resolves inward and one that does not resolve at all are refused alike, at once.
    for uid in ("internal-name", "internal-name-dot", "no-such-name"):
        delivery = by_user[uid]
        assert (delivery["reason"], delivery["last_error"], delivery["attempts"]) == (
            "destination_refused",
            "destination not allowed",
            1,
        ), uid
    assert "does not resolve" in logged_for(caplog, by_user["no-such-name"])
    # A closed port on the allowed host is retried like any unreachable destination, and says only that.
    closed = by_user["closed-port"]
    assert (closed["reason"], closed["attempts"]) == ("attempts_exhausted", ctx.settings.max_attempts)
    assert closed["last_error"] == "destination unreachable"
    for delivery in listed:
        assert_generic(delivery["last_error"], str(port), "localhost", "invalid")
    assert str(port) in logged_for(caplog, closed)
