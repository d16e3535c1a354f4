"""A real SMTP server on loopback (aiosmtpd) that records what it accepts and can be told to refuse."""

from __future__ import annotations

import asyncio
import email
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller

from notifier.procs import free_port


@dataclass
class Received:
    recipient: str
    notification_id: str
    delivery_id: str
    subject: str
    raw: bytes
    at: float


@dataclass
class Behaviour:
    """How the server answers: the first `tempfail_next` messages get 451; a share `tempfail_rate` gets 451;
    recipients in `reject` get 550 at RCPT; recipients in `always_tempfail` always get 451; an accepted
    message's 250 comes `answer_delay` seconds after it is recorded (a server slower than the client's timeout)."""

    tempfail_next: int = 0
    tempfail_rate: float = 0.0
    reject: set[str] = field(default_factory=set)
    always_tempfail: set[str] = field(default_factory=set)
    answer_delay: float = 0.0


class RecordingHandler:
    def __init__(self):
        self.received: list[Received] = []
        self.behaviour = Behaviour()
        self.refused = 0
        self._lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.behaviour.reject:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        behaviour = self.behaviour
        with self._lock:
            temporary = (
                behaviour.tempfail_next > 0
                or random.random() < behaviour.tempfail_rate
                or any(r in behaviour.always_tempfail for r in envelope.rcpt_tos)
            )
            if behaviour.tempfail_next > 0:
                behaviour.tempfail_next -= 1
            if temporary:
                self.refused += 1
                return "451 4.3.0 Try again later"
        message = email.message_from_bytes(envelope.content)
        subject = str(email.header.make_header(email.header.decode_header(message["Subject"] or "")))
        for recipient in envelope.rcpt_tos:
            self.received.append(
                Received(
                    recipient,
                    message["X-Notifier-Notification"] or "",
                    message["X-Notifier-Delivery"] or "",
                    subject,
                    envelope.content,
                    time.time(),
                )
            )
        if behaviour.answer_delay:
            await asyncio.sleep(behaviour.answer_delay)
        return "250 OK"

    def count_by_recipient(self, notification_id: str | None = None) -> Counter:
        return Counter(
            r.recipient for r in self.received if notification_id is None or r.notification_id == notification_id
        )


class SmtpServer:
    def __init__(self):
        self.handler = RecordingHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    @property
    def behaviour(self) -> Behaviour:
        return self.handler.behaviour

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
