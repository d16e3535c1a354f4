"""Telegram: the Bot API's sendMessage over HTTPS."""

from __future__ import annotations

import re

from tornado.httpclient import AsyncHTTPClient

from .base import CHANNEL_NOT_CONFIGURED, Commit, Message, PermanentFailure
from .http import post_json

CHAT_ID = re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$")
TELEGRAM_LIMIT = 4096


class TelegramChannel:
    name = "telegram"
    contact_field = "telegram_chat_id"
    repeat_safe = False

    def __init__(self, http: AsyncHTTPClient, api_url: str, bot_token: str, timeout: float):
        self.http = http
        self.url = f"{api_url.rstrip('/')}/bot{bot_token}/sendMessage"
        self.configured = bool(bot_token)
        self.timeout = timeout

    @staticmethod
    def valid_contact(value: str) -> bool:
        return bool(CHAT_ID.fullmatch(value))

    async def send(self, message: Message, commit: Commit) -> None:
        if not self.configured:
            raise PermanentFailure(
                CHANNEL_NOT_CONFIGURED, reason="channel_not_configured", detail="TELEGRAM_BOT_TOKEN is not set"
            )
        text = f"{message.title}\n\n{message.text}"
        if message.unsubscribe_url:
            text += f"\n\nUnsubscribe: {message.unsubscribe_url}"
        body = {"chat_id": message.address, "text": text[:TELEGRAM_LIMIT], "disable_web_page_preview": True}
        commit()
        await post_json(self.http, self.url, body, {}, self.timeout)

    async def close(self) -> None:
        pass
