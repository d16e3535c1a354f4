"""Words of the domain shared by every layer."""

import re

CHANNELS = ("email", "telegram", "webhook", "inbox")

# A delivery's life: pending (stored, not yet confirmed by the broker) -> queued (in the broker)
# -> sending (claimed by one consumer) -> sent | skipped (with a reason) | failed (with a reason).
# A retry goes back to pending/queued with attempts + 1.
STATUSES = ("pending", "queued", "sending", "sent", "failed", "skipped")
FINAL_STATUSES = ("sent", "failed", "skipped")

# What may never be part of a one-line value (a name, an address, a title): C0 controls (tab too), DEL, C1
# and the Unicode line and paragraph separators. In a mail header they would end the line or start another.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(value: str) -> str:
    """`value` with each control character replaced by a space."""
    return CONTROL_CHARACTERS.sub(" ", value)
