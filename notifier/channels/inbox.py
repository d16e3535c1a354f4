"""The in-app inbox: the delivery record is the message; users read it at /api/v1/me/notifications."""

from __future__ import annotations

from .base import Commit, Message


class InboxChannel:
    name = "inbox"
    contact_field = None
    repeat_safe = True

    @staticmethod
    def valid_contact(value: str) -> bool:
        return True

    async def send(self, message: Message, commit: Commit) -> None:
        commit()

    async def close(self) -> None:
        pass
