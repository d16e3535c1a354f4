"""Email over SMTP (aiosmtplib): reused connections, HTML and text parts, one-click unsubscribe headers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email import policy
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path

import aiosmtplib
from marshmallow import ValidationError, validate
from tornado.template import Loader

from ..domain import one_line
from ..settings import Settings
from .base import (
    INVALID_ADDRESS,
    MAIL_SERVER_UNAVAILABLE,
    AnswerLost,
    Commit,
    Message,
    PermanentFailure,
    TemporaryFailure,
    smtp_answer,
)

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "email"
_is_email = validate.Email()
# The SMTP policy, except that a value stored with set_raw() is written as it is: it would otherwise fold a
# long token such as the List-Unsubscribe URL into encoded words, which no mail client reads as a URL.
MAIL_POLICY = policy.SMTP.clone(refold_source="none")
DISCONNECTED = (
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPTimeoutError,
    asyncio.TimeoutError,
    OSError,
)


@dataclass
class Lease:
    """The connection a send holds; `SmtpPool.fresh` may replace it."""

    smtp: aiosmtplib.SMTP


class SmtpPool:
    """At most `size` SMTP connections, kept open between messages."""

    def __init__(self, settings: Settings, size: int):
        self.settings = settings
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(size)

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            use_tls=s.smtp_ssl,
            start_tls=s.smtp_starttls,
            username=s.smtp_username or None,
            password=s.smtp_password or None,
            timeout=s.smtp_timeout,
        )
        try:
            await smtp.connect()
        except DISCONNECTED as exc:
            raise TemporaryFailure(MAIL_SERVER_UNAVAILABLE, detail=f"SMTP server unreachable: {exc}") from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise TemporaryFailure(MAIL_SERVER_UNAVAILABLE, detail=f"SMTP login refused: {exc}") from None
        return smtp

    def turn(self) -> asyncio.Semaphore:
        """One of `size` turns; a message is built and sent in its turn. Built all at once, a batch's messages
        would hold the event loop (and an express claim's answer with it) for a whole batch's worth of CPU."""
        return self._slots

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Lease]:
        """A connection for the caller's turn, kept for the next message unless it broke; an SMTP answer
        that refused the message resets it for the next one."""
        lease = Lease(self._idle.pop() if self._idle else await self._connect())
        reusable = False
        try:
            yield lease
            reusable = lease.smtp.is_connected
        except aiosmtplib.SMTPResponseException:
            reusable = lease.smtp.is_connected and await _reset(lease.smtp)
            raise
        finally:
            if reusable:
                self._idle.append(lease.smtp)
            else:
                await _quietly_close(lease.smtp)

    async def fresh(self, lease: Lease) -> None:
        """Replace the lease's connection (an idle one the server had closed) with a new one."""
        await _quietly_close(lease.smtp)
        lease.smtp = await self._connect()

    async def close(self) -> None:
        while self._idle:
            smtp = self._idle.pop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(smtp.quit(), 2)
            await _quietly_close(smtp)


def ascii_address(address: str) -> str:
    """`address` as SMTP without SMTPUTF8 carries it: the domain in IDNA; ValueError if the local part is not ASCII."""
    local, at, domain = address.rpartition("@")
    if not at or not local.isascii() or one_line(address) != address:
        raise ValueError("not an ASCII address")
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError as exc:
        raise ValueError(f"domain: {exc}") from None


async def _reset(smtp: aiosmtplib.SMTP) -> bool:
    try:
        await smtp.rset()
        return True
    except aiosmtplib.SMTPException:
        return False


async def _quietly_close(smtp: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        smtp.close()


class EmailChannel:
    name = "email"
    contact_field = "email"
    repeat_safe = False

    def __init__(self, settings: Settings):
        self.settings = settings
        self.sender = parseaddr(settings.smtp_from)[1] or settings.smtp_from
        self.pools = {False: SmtpPool(settings, settings.smtp_connections), True: SmtpPool(settings, 1)}
        self.html = Loader(str(TEMPLATES)).load("notification.html")
        self.text = Loader(str(TEMPLATES), autoescape=None).load("notification.txt")

    @staticmethod
    def valid_contact(value: str) -> bool:
        try:
            _is_email(value)
            return True
        except ValidationError:
            return False

    def build(self, message: Message) -> tuple[str, bytes]:
        """The envelope recipient and the message, or PermanentFailure "invalid_contact" when the address
        cannot be written (a non-ASCII local part needs SMTPUTF8, which is not used)."""
        try:
            recipient = ascii_address(message.address)
            mail = EmailMessage(policy=MAIL_POLICY)
            mail["From"] = self.settings.smtp_from
            mail["To"] = Address(display_name=one_line(message.display_name), addr_spec=recipient)
            mail["Subject"] = one_line(message.title)
        except (ValueError, TypeError, MessageError) as exc:
            raise PermanentFailure(
                INVALID_ADDRESS, reason="invalid_contact", detail=f"cannot address {message.address!r}: {exc}"
            ) from None
        mail["Date"] = formatdate(usegmt=True)
        mail["Message-ID"] = f"<{message.delivery_id}@notifier>"
        mail["X-Notifier-Notification"] = message.notification_id
        mail["X-Notifier-Delivery"] = message.delivery_id
        if message.unsubscribe_url:
            mail.set_raw("List-Unsubscribe", f"<{one_line(message.unsubscribe_url)}>")
            mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        mail.set_content(self.text.generate(m=message).decode())
        mail.add_alternative(self.html.generate(m=message).decode(), subtype="html")
        return recipient, mail.as_bytes()

    async def send(self, message: Message, commit: Commit) -> None:
        pool = self.pools[message.is_express]
        async with pool.turn():
            recipient, raw = self.build(message)
            committed = False
            try:
                async with pool.connection() as lease:
                    try:
                        await lease.smtp.mail(self.sender)
                    except aiosmtplib.SMTPServerDisconnected:
                        await pool.fresh(lease)  # an idle connection went stale
                        await lease.smtp.mail(self.sender)
                    await lease.smtp.rcpt(recipient)
                    commit()
                    committed = True
                    await lease.smtp.data(raw)
            except aiosmtplib.SMTPResponseException as exc:
                detail = f"SMTP {exc.code}: {exc.message}"
                if 500 <= exc.code < 600:
                    raise PermanentFailure(smtp_answer(exc.code), detail=detail) from None
                raise TemporaryFailure(smtp_answer(exc.code), detail=detail) from None
            except DISCONNECTED as exc:
                failure = AnswerLost if committed else TemporaryFailure
                raise failure(
                    MAIL_SERVER_UNAVAILABLE, detail=f"SMTP connection lost: {type(exc).__name__} {exc}"
                ) from None

    async def close(self) -> None:
        for pool in self.pools.values():
            await pool.close()
