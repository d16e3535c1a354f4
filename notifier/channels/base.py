"""What every channel shares: the message it sends, the two ways a send can fail, and one interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol


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


class TemporaryFailure(Exception):
    """Worth trying again later (timeouts, 4xx from SMTP, 5xx or 429 over HTTP)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentFailure(Exception):
    """Trying again would fail the same way (a rejected address, a 4xx webhook answer)."""

    def __init__(self, message: str, reason: str = "rejected"):
        super().__init__(message)
        self.reason = reason


Commit = Callable[[], None]


class Channel(Protocol):
    name: str
    contact_field: str | None
    # True when sending twice is harmless (the receiver can tell): then an interrupted send is retried;
    # otherwise it is failed with reason "interrupted" rather than risk a second copy.
    repeat_safe: bool

    def valid_contact(self, value: str) -> bool: ...

    async def send(self, message: Message, commit: Commit) -> None:
        """Deliver, calling `commit()` right before the step after which it may have arrived."""

    async def close(self) -> None: ...
