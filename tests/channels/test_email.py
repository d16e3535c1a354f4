"""Building mail: headers, encodings, both parts (no network); building in turns against the real SMTP test server."""

from __future__ import annotations

import asyncio
import email
from email.header import decode_header, make_header

import pytest

from notifier.channels.base import Message, PermanentFailure
from notifier.channels.email import EmailChannel
from notifier.settings import Settings


def test_non_ascii_and_markup_are_encoded_and_escaped():
    channel = EmailChannel(Settings.from_env({}, smtp_from="Notifier <no-reply@example.com>"))
    _, raw = channel.build(
        Message(
            delivery_id="d1",
            notification_id="n1",
            user_id="u1",
            address="zoe@example.com",
            title="Grüße, Zoë <b>",
            text="Line one\n<script>alert(1)</script>",
            display_name="Zoë Ünal",
            unsubscribe_url="https://n.example/unsubscribe/t",
            is_express=False,
        )
    )
    mail = email.message_from_bytes(raw)
    assert str(make_header(decode_header(mail["Subject"]))) == "Grüße, Zoë <b>"
    assert str(make_header(decode_header(mail["To"]))) == "Zoë Ünal <zoe@example.com>"
    assert mail["Message-ID"] == "<d1@notifier>"
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in mail.walk() if not p.is_multipart()}
    assert "<script>alert(1)</script>" in parts["text/plain"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in parts["text/html"] and "<script>" not in parts["text/html"]
    assert "Line one<br>" in parts["text/html"]


def test_contact_validation():
    channel = EmailChannel(Settings.from_env({}))
    assert channel.valid_contact("a@example.com")
    assert not channel.valid_contact("not an email")


def test_a_long_unsubscribe_url_is_written_as_it_is():
    url = "https://n.example/unsubscribe/" + "t" * 300
    channel = EmailChannel(Settings.from_env({}))
    _, raw = channel.build(
        Message(
            delivery_id="d1",
            notification_id="n1",
            user_id="u1",
            address="zoe@example.com",
            title="Hi",
            text="Body",
            display_name="Zoë",
            unsubscribe_url=url,
            is_express=False,
        )
    )
    assert email.message_from_bytes(raw)["List-Unsubscribe"] == f"<{url}>"


def _message(i: int) -> Message:
    return Message(
        delivery_id=f"d{i}",
        notification_id="n1",
        user_id=f"u{i}",
        address=f"u{i}@example.com",
        title="Hi",
        text="Body",
        display_name="",
        unsubscribe_url="",
        is_express=False,
    )


@pytest.mark.gen_test
async def test_a_batchs_messages_are_built_in_turns_not_all_before_the_first_send(smtp):
    """Building a message takes CPU; built all at once, a batch's messages hold the consumer's event loop (and
    an express claim's answer waiting in it) for the whole batch."""
    channel = EmailChannel(Settings.from_env({}, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_connections=2))
    built, finished, most_waiting = 0, 0, 0
    build = channel.build

    def counting_build(message: Message):
        nonlocal built, most_waiting
        built += 1
        most_waiting = max(most_waiting, built - finished)
        return build(message)

    channel.build = counting_build  # type: ignore[method-assign]

    async def send(i: int) -> None:
        nonlocal finished
        await channel.send(_message(i), lambda: None)
        finished += 1

    try:
        await asyncio.gather(*(send(i) for i in range(20)))
    finally:
        await channel.close()
    assert finished == 20 and len(smtp.received) == 20
    assert most_waiting <= 2  # never more built and unsent than there are connections


@pytest.mark.gen_test
async def test_a_stale_connection_is_replaced_and_the_new_one_kept_and_a_refusal_keeps_it(smtp):
    channel = EmailChannel(Settings.from_env({}, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_connections=1))
    pool = channel.pools[False]
    try:
        await channel.send(_message(1), lambda: None)
        (stale,) = pool._idle
        stale.close()  # as when the server drops an idle connection
        await channel.send(_message(2), lambda: None)
        (kept,) = pool._idle
        assert kept is not stale and kept.is_connected
        smtp.behaviour.reject.add("u3@example.com")
        with pytest.raises(PermanentFailure):
            await channel.send(_message(3), lambda: None)
        assert pool._idle == [kept] and kept.is_connected  # reset for the next message, not closed
        await channel.send(_message(4), lambda: None)
        assert pool._idle == [kept]
    finally:
        await channel.close()
    assert [r.recipient for r in smtp.received] == ["u1@example.com", "u2@example.com", "u4@example.com"]
