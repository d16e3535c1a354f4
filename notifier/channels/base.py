"""What every channel shares: the message it sends, the two ways a send can fail, and one interface."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Message:
    """One rendered notification for one recipient on one channel."""

    delivery_id: str
    notification_id: str
    user_id: str
    address: str
    title: str
    text: str
    display_name: str
    unsubscribe_url: str
    is_express: bool


# What a failed send may tell an API caller (a delivery's last_error): one of these short phrases, never the
# contact's address nor a host, port or OS error text. The detail goes to the consumer's log line instead.
INVALID_ADDRESS = "invalid address"
MAIL_SERVER_UNAVAILABLE = "mail server unavailable"
DESTINATION_REFUSED = "destination not allowed"
DESTINATION_UNREACHABLE = "destination unreachable"
CHANNEL_NOT_CONFIGURED = "channel not configured"


def smtp_answer(code: int) -> str:
    return f"SMTP {code} from the mail server"  # the code only: the server's text may quote the address


def http_answer(status: int) -> str:
    return f"HTTP {status} from destination"


class SendFailure(Exception):
    """A send that did not happen: `str()` is the public phrase, `detail` is for the log only."""

    def __init__(self, public: str, detail: str = ""):
        super().__init__(public)
        self.detail = detail


class TemporaryFailure(SendFailure):
    """Worth trying again later (timeouts, 4xx from SMTP, 5xx or 429 over HTTP)."""

    def __init__(self, public: str, retry_after: float | None = None, detail: str = ""):
        super().__init__(public, detail)
        self.retry_after = retry_after


class AnswerLost(TemporaryFailure):
    """The message went out but the receiver's answer never came (the connection dropped or timed out after
    the commit point): it may have arrived. Retried only where a repeat is harmless, else failed as
    interrupted, as journal replay does for a consumer that died at the same point."""


class PermanentFailure(SendFailure):
    """Trying again would fail the same way (a rejected address, a 4xx webhook answer)."""

    def __init__(self, public: str, reason: str = "rejected", detail: str = ""):
        super().__init__(public, detail)
        self.reason = reason


Commit = Callable[[], None]


class Channel(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def contact_field(self) -> str | None: ...

    @property
    def repeat_safe(self) -> bool:
        """True when sending twice is harmless (the receiver can tell): then an interrupted send is retried;
        otherwise it is failed with reason "interrupted" rather than risk a second copy."""
        ...

    def valid_contact(self, value: str) -> bool: ...

    async def send(self, message: Message, commit: Commit) -> None:
        """Deliver, calling `commit()` right before the step after which it may have arrived."""

    async def close(self) -> None: ...
