"""Email headers cannot be injected: control characters are refused at the API and replaced when a message
is built, the message is built with EmailMessage and the SMTP policy, and an address no message can be
built for fails at once as invalid_contact."""

from __future__ import annotations

import email
import email.policy

import pytest

from notifier.channels.base import Message, PermanentFailure
from notifier.channels.email import EmailChannel
from notifier.settings import Settings

from ..queue.conftest import pipeline_settings, settled, smtp, workers  # noqa: F401  (shared pipeline fixtures)
from ..support import TEST_ADMIN

INJECTIONS = [
    "Eve\r\nBcc: victim@example.com",
    "Eve\nBcc: victim@example.com",
    "Eve\rBcc: victim@example.com",
    "Eve\x00\r\n\r\n<html>forged body",
    "Eve\u2028Bcc: victim@example.com",
    "Eve\x85Bcc: x@example.com",
]


@pytest.fixture
def settings_overrides(pipeline_settings):
    return pipeline_settings


def _message(**changes) -> Message:
    fields = dict(
        delivery_id="d1",
        notification_id="n1",
        user_id="u1",
        address="eve@example.com",
        title="Hello",
        text="Body",
        display_name="Eve",
        unsubscribe_url="https://n.example/unsubscribe/t",
        is_express=False,
    )
    return Message(**{**fields, **changes})


def _headers(raw: bytes) -> list[tuple[str, str]]:
    return email.message_from_bytes(raw, policy=email.policy.SMTP).items()


@pytest.mark.parametrize("injection", INJECTIONS)
def test_control_characters_never_reach_a_header(injection):
    channel = EmailChannel(Settings.from_env({}))
    _, raw = channel.build(_message(display_name=injection, title=f"Hi {injection}"))
    names = [name.lower() for name, _ in _headers(raw)]
    assert "bcc" not in names
    assert names.count("to") == 1 and names.count("subject") == 1
    mail = email.message_from_bytes(raw, policy=email.policy.SMTP)
    assert mail["To"].addresses[0].addr_spec == "eve@example.com"
    assert "victim" not in mail["To"].addresses[0].addr_spec
    assert "\n" not in str(mail["Subject"]) and "\r" not in str(mail["Subject"])


def test_display_names_are_quoted_not_parsed():
    channel = EmailChannel(Settings.from_env({}))
    _, raw = channel.build(_message(display_name='Mallory <mallory@evil.example>, "x" y@evil.example'))
    mail = email.message_from_bytes(raw, policy=email.policy.SMTP)
    [address] = mail["To"].addresses
    assert address.addr_spec == "eve@example.com"


@pytest.mark.parametrize(
    "address", ["ä@example.com", "Zoë@example.com", "eve@example.com\r\nBcc: x@example.com", "no-at-sign"]
)
def test_an_address_no_message_can_be_built_for_is_an_invalid_contact(address):
    channel = EmailChannel(Settings.from_env({}))
    with pytest.raises(PermanentFailure) as failed:
        channel.build(_message(address=address))
    assert failed.value.reason == "invalid_contact"


def test_an_international_domain_is_sent_as_idna():
    channel = EmailChannel(Settings.from_env({}))
    recipient, raw = channel.build(_message(address="zoe@exämple.com"))
    assert recipient == "zoe@xn--exmple-cua.com"
    assert email.message_from_bytes(raw, policy=email.policy.SMTP)["To"].addresses[0].domain == "xn--exmple-cua.com"


@pytest.mark.gen_test(timeout=90)
async def test_through_the_pipeline_one_to_header_and_bad_addresses_fail_once(ctx, smtp, workers):
    # Stored directly, as the user service or an old row could hold them: the API would refuse these.
    await ctx.users.bulk_upsert(
        TEST_ADMIN,
        [
            {
                "user_id": "eve",
                "email": "eve@example.com",
                "display_name": "Eve\r\nBcc: victim@example.com\r\nX-Forged: 1",
            },
            {"user_id": "umlaut", "email": "ä@example.com"},
        ],
    )
    created, _ = await ctx.notifications.create(
        TEST_ADMIN,
        {
            "title": "Hello {{ name }} {{ extra }}",
            "text": "Body",
            "channel": "email",
            "recipients": ["eve", "umlaut"],
            "is_express": False,
            "content_id": None,
            "variables": {"extra": "\r\nBcc: other-victim@example.com"},
        },
    )
    assert await settled(ctx, created["_id"], 2) == {"sent": 1, "failed": 1}
    [received] = smtp.received
    assert received.recipient == "eve@example.com"
    names = [name.lower() for name, _ in _headers(received.raw)]
    assert names.count("to") == 1 and names.count("subject") == 1
    assert "bcc" not in names and "x-forged" not in names
    umlaut = await ctx.store.deliveries.find_one({"user_id": "umlaut"})
    assert (umlaut["status"], umlaut["reason"], umlaut["attempts"]) == ("failed", "invalid_contact", 1)


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "body, field",
    [
        ({"display_name": "Eve\r\nBcc: victim@example.com"}, "display_name"),
        ({"display_name": "Eve\x00"}, "display_name"),
        ({"display_name": "Eve\u2028Bcc: x"}, "display_name"),
        ({"email": "eve@example.com\r\nBcc: victim@example.com"}, "email"),
    ],
)
async def test_control_characters_in_contacts_are_400(api, admin, body, field):
    response = await api.put("/api/v1/users/eve", body, auth=admin.header)
    assert response.status == 400
    assert field in response.body["errors"]
    bulk = await api.post("/api/v1/users/bulk", {"users": [{"user_id": "eve", **body}]}, auth=admin.header)
    assert bulk.status == 400
    assert (await api.get("/api/v1/users/eve", auth=admin.header)).status == 404


@pytest.mark.gen_test
@pytest.mark.parametrize("title", ["Hi\r\nBcc: victim@example.com", "Hi\nthere", "Hi\x00", "Hi\tthere"])
async def test_control_characters_in_titles_are_400(api, admin, title):
    note = {"title": title, "text": "Body", "channel": "email"}
    response = await api.post("/api/v1/notifications", {**note, "recipients": ["eve"]}, auth=admin.header)
    assert response.status == 400 and "title" in response.body["errors"]
    schedule = await api.post(
        "/api/v1/schedules", {"notification": note, "user_ids": ["eve"], "interval_seconds": 60}, auth=admin.header
    )
    assert schedule.status == 400 and "title" in schedule.body["errors"]["notification"]
