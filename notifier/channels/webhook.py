"""Webhooks: a signed JSON POST to the user's URL, through the outbound policy (notifier/outbound.py).

Receivers check `X-Notifier-Signature: sha256=<hex>`, the HMAC-SHA256 of `<timestamp>.<body>` with the
shared WEBHOOK_SECRET, and drop repeats by `Idempotency-Key` (the delivery id).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from ..outbound import DestinationRefused, OutboundHTTP, check_url
from .base import Commit, Message
from .http import post_json


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookChannel:
    name = "webhook"
    contact_field = "webhook_url"
    repeat_safe = True

    def __init__(self, http: OutboundHTTP, secret: bytes, timeout: float):
        self.http = http
        self.secret = secret
        self.timeout = timeout

    @staticmethod
    def valid_contact(value: str) -> bool:
        try:
            check_url(value)
            return True
        except DestinationRefused:
            return False

    async def send(self, message: Message, commit: Commit) -> None:
        body = {
            "delivery_id": message.delivery_id,
            "notification_id": message.notification_id,
            "user_id": message.user_id,
            "title": message.title,
            "text": message.text,
            "is_express": message.is_express,
            "unsubscribe_url": message.unsubscribe_url,
        }
        raw = json.dumps(body).encode()
        timestamp = str(int(time.time()))
        headers = {
            "X-Notifier-Timestamp": timestamp,
            "X-Notifier-Signature": signature(self.secret, timestamp, raw),
            "Idempotency-Key": message.delivery_id,
            "User-Agent": "notifier-webhook",
        }
        commit()
        await post_json(self.http, message.address, body, headers, self.timeout)

    async def close(self) -> None:
        pass
