"""Words of the domain shared by every layer."""

CHANNELS = ("email", "telegram", "webhook", "inbox")

# A delivery's life: pending (stored, not yet confirmed by the broker) -> queued (in the broker)
# -> sending (claimed by one consumer) -> sent | skipped (with a reason) | failed (with a reason).
# A retry goes back to pending/queued with attempts + 1.
STATUSES = ("pending", "queued", "sending", "sent", "failed", "skipped")
FINAL_STATUSES = ("sent", "failed", "skipped")
