"""Words of the domain shared by every layer."""

import enum
import re

CHANNELS = ("email", "telegram", "webhook", "inbox")

# A delivery's life: pending (stored, not yet confirmed by the broker) -> queued (in the broker)
# -> sending (claimed by one consumer) -> sent | skipped (with a reason) | failed (with a reason).
# A retry goes back to pending/queued with attempts + 1 (services/outcomes.py decides each step).
# pending | queued -> cancelled: the sender cancelled it (a guarded write like the claim: one of them wins).
# scheduled -> queued: its send_at came (the scheduled wake-up publishes it then); scheduled -> cancelled.
# sending -> deferred: due inside the user's quiet hours, until their end (then woken like a scheduled one).
# sending -> expired: its notification's expires_at passed before it could go (or before a retry would).


class DeliveryStatus(enum.StrEnum):
    """The status stored on a delivery (the strings are what the database and the API hold)."""

    SCHEDULED = "scheduled"
    DEFERRED = "deferred"
    PENDING = "pending"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


STATUSES = tuple(status.value for status in DeliveryStatus)
FINAL_STATUSES = (
    DeliveryStatus.SENT.value,
    DeliveryStatus.FAILED.value,
    DeliveryStatus.SKIPPED.value,
    DeliveryStatus.CANCELLED.value,
    DeliveryStatus.EXPIRED.value,
)

# What may never be part of a one-line value (a name, an address, a title): C0 controls (tab too), DEL, C1
# and the Unicode line and paragraph separators. In a mail header they would end the line or start another.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(value: str) -> str:
    """`value` with each control character replaced by a space."""
    return CONTROL_CHARACTERS.sub(" ", value)
