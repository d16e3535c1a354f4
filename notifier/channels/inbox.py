"""The in-app inbox: the delivery record is the message; users read it at /api/v1/me/notifications, and their
open streams (/api/v1/me/stream) are told of it by the `new` event that `arrive` writes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .base import Commit, Message

Arrive = Callable[[Message], Awaitable[None]]


class InboxChannel:
    name = "inbox"
    contact_field = None
    repeat_safe = True  # `arrive` writes the item's event once, however often it is asked

    def __init__(self, arrive: Arrive | None = None):
        self.arrive = arrive  # services/inbox.InboxLog.arrive in a consumer; None where nothing is sent

    @staticmethod
    def valid_contact(value: str) -> bool:
        return True

    async def send(self, message: Message, commit: Commit) -> None:
        commit()
        if self.arrive is not None:
            await self.arrive(message)

    async def close(self) -> None:
        pass
