"""One delivery attempt, decided and carried out: skip (with a reason), send, retry later, or fail."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from bson import ObjectId

from ..channels.base import AnswerLost, Channel, Message, PermanentFailure, TemporaryFailure
from ..links import Links
from ..recurrence import check_timezone
from ..rendering import recipient_values, render
from ..store import Store
from .contacts import Contacts
from .outcomes import ANSWER_LOST_ERROR, EXPIRED_BEFORE_SEND, QUIET_HOURS, OutcomeKind
from .quiet_hours import quiet_until

log = logging.getLogger(__name__)

NOTIFICATION_CACHE_SECONDS = 60.0
NOTIFICATION_CACHE_SIZE = 10000  # past this, expired entries are dropped


@dataclass
class Outcome:
    """What one attempt came to; services/outcomes.py decides what follows."""

    delivery: dict
    kind: OutcomeKind
    reason: str | None = None
    error: str | None = None
    seconds: float | None = None  # how long the channel took, when it was asked
    until: datetime | None = None  # a quiet-hours deferral: the end of the window


@dataclass
class LookedUp:
    notifications: dict[ObjectId, dict]
    users: dict[str, dict] = field(default_factory=dict)
    contacts_down: set[str] = field(default_factory=set)  # the user service could not say

    def expires_at(self, delivery: dict) -> datetime | None:
        """When the delivery's notification stops being worth sending (its expires_at), if it has one."""
        return (self.notifications.get(delivery["notification_id"]) or {}).get("expires_at")

    def tracked(self, delivery: dict) -> bool:
        """Whether the delivery's state changes record status events (services/events.py)."""
        return (self.notifications.get(delivery["notification_id"]) or {}).get("events") is True


class JournalLike(Protocol):
    def begin(self, delivery_id: str, token: str, repeat_safe: bool) -> None: ...

    def sent(self, delivery_id: str, token: str) -> None: ...


class Sender:
    def __init__(
        self,
        store: Store,
        channels: dict[str, Channel],
        contacts: Contacts,
        links: Links,
        journal: JournalLike,
        default_timezone: str = "UTC",
    ):
        self.default_timezone = default_timezone  # a recipient's zone when their user has none (quiet hours)
        self.channels = channels
        self.contacts = contacts
        self.links = links
        self.journal = journal
        self.store = store
        # Notifications are immutable once created, so a consumer keeps the ones it sends for a while:
        # id -> (monotonic expiry, notification).
        self._notifications: dict[ObjectId, tuple[float, dict]] = {}

    async def look_up(self, claimed: list[dict]) -> LookedUp:
        """Everything a batch reads before it sends: its notifications and recipients. Nothing is sent here,
        so a database outage in the middle can be waited out by running it again."""
        ids = {d["notification_id"] for d in claimed}
        now = time.monotonic()
        cached = self._notifications
        unknown = [i for i in ids if i not in cached or cached[i][0] < now]
        if unknown:
            async for notification in self.store.notifications.find({"_id": {"$in": unknown}}):
                cached[notification["_id"]] = (now + NOTIFICATION_CACHE_SECONDS, notification)
            if len(cached) > NOTIFICATION_CACHE_SIZE:
                self._notifications = {k: v for k, v in cached.items() if v[0] >= now}
        looked_up = LookedUp({i: cached[i][1] for i in ids if i in cached})
        by_channel: dict[str, list[str]] = {}
        for delivery in claimed:
            by_channel.setdefault(delivery["channel"], []).append(delivery["user_id"])
        for channel_name, user_ids in by_channel.items():
            channel = self.channels.get(channel_name)
            found, missing = await self.contacts.lookup(user_ids, channel.contact_field if channel else None)
            looked_up.users.update(found)
            looked_up.contacts_down |= missing
        return looked_up

    async def attempt(
        self,
        delivery: dict,
        looked_up: LookedUp,
        token: str,
        send_before: float = math.inf,
        now: datetime | None = None,
    ) -> Outcome:
        """Try one claimed delivery (a batch tries all of its own at once) and say what came of it.

        No send starts after `send_before` (time.monotonic()): past it the claim's lease could run out
        before the outcome is written, and the lease reconciler could hand the delivery to someone else.
        None starts at `now` or later if its notification's expires_at is past."""
        notification = looked_up.notifications.get(delivery["notification_id"])
        channel = self.channels.get(delivery["channel"])
        decided = before_sending(delivery, notification, channel, looked_up, now, self.default_timezone)
        if decided is not None:
            return decided
        assert notification is not None and channel is not None  # before_sending skips a delivery without
        user_id = delivery["user_id"]
        user = looked_up.users.get(user_id)
        address = (user or {})[channel.contact_field] if channel.contact_field else user_id
        unsubscribe_url = self.links.unsubscribe_url(user_id, channel.name)
        values = recipient_values(user_id, user, notification, unsubscribe_url)
        message = Message(
            delivery_id=str(delivery["_id"]),
            notification_id=str(notification["_id"]),
            user_id=user_id,
            address=address,
            title=render(notification["title"], values),
            text=render(notification["text"], values),
            display_name=values["name"],
            unsubscribe_url=unsubscribe_url,
            is_express=notification["is_express"],
        )
        delivery_id = message.delivery_id
        context = {
            "request_id": notification.get("request_id"),
            "delivery_id": delivery_id,
            "notification_id": message.notification_id,
        }
        started = time.monotonic()
        if started > send_before:
            return Outcome(delivery, OutcomeKind.ABANDONED, error="the claim's lease ran short before the send")
        try:
            await channel.send(message, lambda: self.journal.begin(delivery_id, token, channel.repeat_safe))
        # The outcome's error is what API callers read back: the failure's public phrase only; its detail
        # (addresses, hosts, server answers) stays in this log line, which names the delivery.
        except TemporaryFailure as exc:
            if isinstance(exc, AnswerLost) and not channel.repeat_safe:
                log.warning(
                    "%s to %s may have arrived, its answer was lost; not sent again: %s (%s)",
                    channel.name,
                    user_id,
                    exc,
                    exc.detail,
                    extra=context,
                )
                return Outcome(
                    delivery, OutcomeKind.INTERRUPTED, error=ANSWER_LOST_ERROR, seconds=time.monotonic() - started
                )
            log.info("%s to %s failed for now: %s (%s)", channel.name, user_id, exc, exc.detail, extra=context)
            return Outcome(delivery, OutcomeKind.RETRY, error=str(exc), seconds=time.monotonic() - started)
        except PermanentFailure as exc:
            log.info("%s to %s failed: %s (%s)", channel.name, user_id, exc, exc.detail, extra=context)
            return Outcome(delivery, OutcomeKind.FAILED, exc.reason, str(exc), seconds=time.monotonic() - started)
        except Exception:  # a bug in one send must not take the batch down; it is retried and logged
            log.exception("unexpected error sending delivery %s", delivery_id, extra=context)
            return Outcome(delivery, OutcomeKind.RETRY, error="unexpected error", seconds=time.monotonic() - started)
        self.journal.sent(delivery_id, token)
        log.info("%s to %s sent", channel.name, user_id, extra=context)
        return Outcome(delivery, OutcomeKind.SENT, seconds=time.monotonic() - started)


def _respects_quiet_hours(notification: dict) -> bool:
    """Regular notifications wait out quiet hours; express ones go through unless their sender asked otherwise."""
    asked = notification.get("respect_quiet_hours")
    return (not notification["is_express"]) if asked is None else bool(asked)


def zone_of(user: dict | None, default_timezone: str) -> str:
    """The recipient's time zone: their user's, when it is a valid one, else the default."""
    zone = (user or {}).get("timezone")
    return zone if zone and not check_timezone(zone) else default_timezone


def before_sending(
    delivery: dict,
    notification: dict | None,
    channel: Channel | None,
    looked_up: LookedUp,
    now: datetime | None,
    default_timezone: str,
) -> Outcome | None:
    """What comes of a delivery at `now` before anything is sent: expired, skipped (with the reason), deferred
    to the end of quiet hours or until the user service answers; None when it is to be sent. The consumer's
    attempt and the plan (services/plans.py) both decide with this, so a dry run decides as the real run."""
    if notification is None or channel is None:
        return Outcome(delivery, OutcomeKind.SKIPPED, "notification_missing")
    expires_at = notification.get("expires_at")
    if expires_at is not None and now is not None and now >= expires_at:
        return Outcome(delivery, OutcomeKind.EXPIRED, EXPIRED_BEFORE_SEND)
    user_id = delivery["user_id"]
    user = looked_up.users.get(user_id)
    if user and (user.get("unsubscribed_all") or channel.name in (user.get("unsubscribed_channels") or [])):
        return Outcome(delivery, OutcomeKind.SKIPPED, "unsubscribed")
    if user and user.get("quiet_hours") and now is not None and _respects_quiet_hours(notification):
        until = quiet_until(user["quiet_hours"], zone_of(user, default_timezone), now)
        if until is not None:
            return Outcome(delivery, OutcomeKind.QUIET, QUIET_HOURS, until=until)
    if channel.contact_field:
        address = (user or {}).get(channel.contact_field)
        if not address:
            if user_id in looked_up.contacts_down:
                return Outcome(delivery, OutcomeKind.DEFER, error="the user service is unavailable")
            return Outcome(delivery, OutcomeKind.SKIPPED, "no_contact")
        if not channel.valid_contact(address):
            return Outcome(delivery, OutcomeKind.SKIPPED, "invalid_contact")
    return None
