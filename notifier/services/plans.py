"""The plan of a notification: per recipient, what will happen, why, and when (in UTC and in the recipient's
zone). For a stored notification it covers its deliveries still under way (a final one shows its status);
a dry run plans a create without storing or sending anything.

Each decision is the consumer's own: `before_sending` (services/sending.py) says what comes of a delivery
before anything is sent, and `decide` (services/outcomes.py) what follows, taken at the instant the delivery
is due (now, its send_at, its local time, the end of a deferral). So a dry run decides as the real run on the
same data; what only the send can tell (an SMTP server refusing an address) it cannot know.

A recipient's time zone is contact data: the plan shows it (and the local instant) only to callers who may
read the contacts directory (admins, client applications granted `contacts:read`); others see UTC only.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast
from zoneinfo import ZoneInfo

from bson import ObjectId

from ..access import Principal, allowed
from ..channels.base import Channel
from ..channels.email import EmailChannel
from ..channels.inbox import InboxChannel
from ..channels.telegram import TelegramChannel
from ..channels.webhook import WebhookChannel
from ..clock import Clock
from ..domain import FINAL_STATUSES, DeliveryStatus
from ..rendering import recipient_values, render
from ..settings import Settings
from .contacts import Contacts
from .notifications import ONE_OFF, NotificationService
from .outcomes import OutcomeKind, RetryPolicy, decide
from .paging import Page
from .sending import LookedUp, before_sending, zone_of

# The channels' rules (their contact field and its check), without the clients a send needs.
CHANNEL_RULES = {
    "email": EmailChannel,
    "telegram": TelegramChannel,
    "webhook": WebhookChannel,
    "inbox": InboxChannel,
}
DECISION = {
    DeliveryStatus.SKIPPED: "skip",
    DeliveryStatus.EXPIRED: "expire",
    DeliveryStatus.DEFERRED: "defer",
    DeliveryStatus.QUEUED: "defer",  # the user service could not say: asked again later
}
SAMPLE = 3  # recipients whose content a dry run renders
DRY_RUN_ITEMS = 100  # plan items a dry run lists (its summary counts every recipient)
CHUNK = 1000


class Planner:
    def __init__(self, settings: Settings, clock: Clock, contacts: Contacts, notifications: NotificationService):
        self.settings = settings
        self.clock = clock
        self.contacts = contacts
        self.notifications = notifications
        self.policy = RetryPolicy.of(settings.max_attempts, settings.retry_delays)

    async def plan(self, principal: Principal, notification_id: str, query: dict) -> Page:
        """The plan of a stored notification, one page of its deliveries."""
        notification = await self.notifications.visible(principal, notification_id)
        page = await self.notifications.deliveries(principal, notification_id, query)
        items = await self._decide(notification, page.items, self.clock.now(), _sees_contacts(principal))
        return Page(items, page.next_cursor)

    async def dry_run(self, principal: Principal, data: dict) -> dict:
        """What a create would do: its checks, then the plan of every recipient (counted; the first
        DRY_RUN_ITEMS listed) and the content rendered for the first SAMPLE. Nothing is stored or sent."""
        recipients = list(dict.fromkeys(data["recipients"]))
        self.notifications.check(data, recipients)
        notification = self.notifications.new_notification(principal, data, len(recipients))
        notification["_id"] = ObjectId()  # a stand-in: nothing is stored under it
        now = self.clock.now()
        items: list[dict] = []
        summary: dict[str, int] = {}
        for start in range(0, len(recipients), CHUNK):
            chunk = recipients[start : start + CHUNK]
            deliveries = await self.notifications.new_deliveries(notification, chunk, ONE_OFF, now)
            decided = await self._decide(notification, deliveries, now, _sees_contacts(principal))
            for item in decided:
                key = item["decision"] if not item["reason"] else f"{item['decision']}:{item['reason']}"
                summary[key] = summary.get(key, 0) + 1
            items += decided[: max(0, DRY_RUN_ITEMS - len(items))]
        return {
            "recipient_count": len(recipients),
            "summary": summary,
            "items": items,
            "sample": await self._sample(notification, recipients[:SAMPLE]),
        }

    async def _decide(
        self, notification: dict, deliveries: list[dict], now: datetime, sees_contacts: bool
    ) -> list[dict]:
        channel = cast(Channel, CHANNEL_RULES[notification["channel"]])
        users, down = await self.contacts.lookup([d["user_id"] for d in deliveries], channel.contact_field)
        looked_up = LookedUp({notification["_id"]: notification}, users, down)
        zone_default = self.settings.default_timezone
        items = []
        for delivery in deliveries:
            user = users.get(delivery["user_id"])
            zone = zone_of(user, zone_default)
            status = delivery["status"]
            item = {
                "user_id": delivery["user_id"],
                "delivery_id": str(delivery["_id"]) if "_id" in delivery else None,
                "status": status,
                "zone": zone if sees_contacts else None,
                "dst": (delivery.get("local_time") or {}).get("dst"),
            }
            if status in FINAL_STATUSES:
                items.append({**item, "decision": None, "reason": delivery.get("reason"), "at": None, "local": None})
                continue
            due = max(now, delivery.get("available_at") or now)
            outcome = before_sending(delivery, notification, channel, looked_up, due, zone_default)
            reason: str | None
            if outcome is None:
                decision, reason, at = "send", _why_then(notification, delivery, due, now), due
            else:
                decided = decide(
                    outcome.kind,
                    due,
                    self.policy,
                    reason=outcome.reason,
                    expires_at=notification.get("expires_at"),
                    until=outcome.until,
                )
                decision = DECISION.get(decided.status, "skip")
                reason = decided.fields.get("reason") or (
                    "contacts_unavailable" if outcome.kind is OutcomeKind.DEFER else None
                )
                at = decided.fields.get("deferred_until") or due
            local = at.astimezone(ZoneInfo(zone)).isoformat() if sees_contacts else None
            items.append({**item, "decision": decision, "reason": reason, "at": at, "local": local})
        return items

    async def _sample(self, notification: dict, user_ids: list[str]) -> list[dict]:
        channel = cast(Channel, CHANNEL_RULES[notification["channel"]])
        users, _ = await self.contacts.lookup(user_ids, channel.contact_field)
        sample = []
        for user_id in user_ids:
            # The unsubscribe link is shown as a placeholder: a real one would let a dry run unsubscribe anyone.
            values = recipient_values(user_id, users.get(user_id), notification, "{{ unsubscribe_url }}")
            sample.append(
                {
                    "user_id": user_id,
                    "title": render(notification["title"], values),
                    "text": render(notification["text"], values),
                }
            )
        return sample


def _sees_contacts(principal: Principal) -> bool:
    return allowed("contacts:read", principal)


def _why_then(notification: dict, delivery: dict, due: datetime, now: datetime) -> str:
    """Why a delivery to be sent goes at `due`."""
    if delivery.get("local_time"):
        return delivery["local_time"].get("dst") or "local_time"
    if notification.get("send_at") and due > now:
        return "send_at"
    if delivery["status"] == DeliveryStatus.DEFERRED:
        return "quiet_hours_end"
    return "now"
