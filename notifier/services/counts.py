"""A notification's deliveries counted by status and reason, kept up to date as they change state, so that
reading them costs one document whatever the size of the notification.

**Maintained.** Every write that moves deliveries between statuses (services/deliveries.py, and the
create in services/notifications.py) notes its moves in a `Tally`, which `Counts.apply` writes after it
as one `$inc` per notification on the `counts` collection (one document per notification, keyed by the
notification's id): a stored chunk of a create, one marking of the publisher, one consumer batch (its
claim and its outcomes together), one recovery step. Never one write per delivery, and never a document
shared by every notification.

The document holds `status.<status>` and, for skipped and failed deliveries, `reasons.<reason>`. A claim
takes deliveries from pending or queued without knowing which (one conditional update claims both), so
the increment takes them from queued as far as the counts have queued ones, then from pending (a consumer
takes the oldest messages first, and the publisher marks queued only what it published a while ago): an
update pipeline, still one write. So the number still waiting and every other status are exact, and the
split of what waits between pending and queued is close while a notification runs and exact once nothing
waits (`shown` keeps the two within what waits).

**Reconciled.** An increment is written after the transition it counts: a process killed between the two,
or a failed increment, loses it. The counts reconciler (`Counts.reconcile`, job "counts reconciler", run
by the server every COUNTS_RECONCILE_INTERVAL) repairs that: it recomputes from the deliveries, at most
COUNTS_RECONCILE_BATCH notifications per run, the counts of notifications whose counts document is open
(every increment opens it) and unchanged for COUNTS_QUIET seconds, when they changed since their last check
or were last checked COUNTS_RECHECK seconds ago. It writes the recomputed counts only if no increment came
in meanwhile (the `version` guard) and none of the deliveries was written within COUNTS_QUIET (a batch whose
deliveries are written but whose increment is still on its way would be counted twice), and closes the
document when nothing waits or is being sent; a notification still under way stays open (a lost increment
of its last batch would otherwise never be found). An increment slower than COUNTS_QUIET can still count
its batch twice; it reopens the document, so the next pass repairs it.

What the detail says (NotificationService.get): the maintained counts. Without a crash they are exact at
every moment but for the pending/queued split; once a notification is final and quiet for COUNTS_QUIET, the
reconciler has checked them (within COUNTS_QUIET + COUNTS_RECONCILE_INTERVAL; within COUNTS_RECHECK if a
process died between its last batch's write and its increment after an earlier check).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from urllib.parse import unquote

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from ..domain import DeliveryStatus
from ..store import Store

log = logging.getLogger(__name__)

PENDING, QUEUED, SENDING = DeliveryStatus.PENDING.value, DeliveryStatus.QUEUED.value, DeliveryStatus.SENDING.value
WAITING = "waiting"  # a claim's source: pending or queued, it cannot tell which
REASONED = (
    DeliveryStatus.SKIPPED.value,
    DeliveryStatus.FAILED.value,
    DeliveryStatus.EXPIRED.value,
)  # the statuses whose reasons are counted
UNDER_WAY = (DeliveryStatus.SCHEDULED.value, DeliveryStatus.DEFERRED.value, PENDING, QUEUED, SENDING)
CANDIDATES_PER_RUN = 10  # open documents read per notification the reconciler may check


def _key(reason: str) -> str:
    """A reason as a field name ('.' and '$' may not appear in one; '%' is escaped so it reads back)."""
    return reason.replace("%", "%25").replace(".", "%2E").replace("$", "%24")


class Tally:
    """Moves of deliveries between statuses, per notification, not yet written."""

    def __init__(self) -> None:
        self.deltas: dict[ObjectId, dict[str, int]] = {}

    def __bool__(self) -> bool:
        return bool(self.deltas)

    def _add(self, notification_id: ObjectId, field: str, n: int) -> None:
        deltas = self.deltas.setdefault(notification_id, {})
        deltas[field] = deltas.get(field, 0) + n

    def touch(self, notification_id: ObjectId) -> None:
        """Something changed that this write could not count: the reconciler is to look."""
        self.deltas.setdefault(notification_id, {})

    def move(
        self,
        notification_id: ObjectId,
        source: str | None,
        target: str | None,
        n: int = 1,
        source_reason: str | None = None,
        target_reason: str | None = None,
    ) -> None:
        """`n` deliveries went from `source` (None: they are new; WAITING: a claim) to `target` (None: gone)."""
        if not n or source == target and source_reason == target_reason:
            return
        if source == WAITING:
            self._add(notification_id, "taken", n)
        elif source is not None:
            self._add(notification_id, f"status.{source}", -n)
            if source in REASONED and source_reason:
                self._add(notification_id, f"reasons.{_key(source_reason)}", -n)
        if target is not None:
            self._add(notification_id, f"status.{target}", n)
            if target in REASONED and target_reason:
                self._add(notification_id, f"reasons.{_key(target_reason)}", n)

    def merge(self, other: Tally) -> None:
        for notification_id, deltas in other.deltas.items():
            self.touch(notification_id)
            for field, n in deltas.items():
                self._add(notification_id, field, n)


def _current(field: str) -> dict:
    return {"$ifNull": [f"${field}", 0]}


def _increments(deltas: Mapping[str, int], now: datetime) -> dict:
    """The `$set` stage of one notification's increment: every delta added, and the claims (`taken`) taken
    from queued as far as there are queued ones, the rest from pending."""
    deltas = dict(deltas)
    taken = deltas.pop("taken", 0)
    fields: dict = {field: {"$add": [_current(field), n]} for field, n in deltas.items()}
    if taken:
        queued, pending = f"status.{QUEUED}", f"status.{PENDING}"
        from_queued = {"$min": [taken, {"$max": [0, _current(queued)]}]}
        fields[queued] = {"$subtract": [{"$add": [_current(queued), deltas.get(queued, 0)]}, from_queued]}
        fields[pending] = {
            "$subtract": [{"$add": [_current(pending), deltas.get(pending, 0)]}, {"$subtract": [taken, from_queued]}]
        }
    return {**fields, "version": {"$add": [_current("version"), 1]}, "changed_at": now, "open": True}


def shown(document: Mapping | None) -> tuple[dict[str, int], dict[str, int]]:
    """The API's counts and reasons from a counts document (statuses and reasons with none are left out)."""
    document = document or {}
    raw = {status: int(n) for status, n in (document.get("status") or {}).items()}
    waiting = max(0, raw.get(PENDING, 0) + raw.get(QUEUED, 0))
    pending = min(max(0, raw.get(PENDING, 0)), waiting)
    counts = {**raw, PENDING: pending, QUEUED: waiting - pending}
    reasons = {unquote(key): int(n) for key, n in (document.get("reasons") or {}).items()}
    return (
        {status: n for status, n in counts.items() if n > 0},
        {reason: n for reason, n in reasons.items() if n > 0},
    )


def _raw(counts: Mapping[str, int], reasons: Mapping[str, int]) -> dict:
    """Exact counts as the document's fields (no claims outstanding)."""
    return {"status": dict(counts), "reasons": {_key(reason): n for reason, n in reasons.items()}}


def _final(counts: Mapping[str, int]) -> bool:
    return not any(counts.get(status, 0) for status in UNDER_WAY)


class Counts:
    """The `counts` collection: increments after delivery writes, the detail's read, the reconciler."""

    def __init__(self, store: Store, maintained: bool = True):
        self.collection = store.counts
        self.deliveries = store.deliveries
        self.maintained = maintained  # COUNTS_MAINTAINED: off, nothing is written and reads recompute

    # --- maintained ---

    async def start(self, notification_id: ObjectId, now: datetime) -> None:
        """The counts document of a notification about to be stored, before any of its deliveries: a detail
        read while its first deliveries are stored, not yet counted, then finds it (and does not count them
        from the deliveries, which their increment would count a second time)."""
        if not self.maintained:
            return
        try:
            await self.collection.insert_one(
                {"_id": notification_id, "status": {}, "version": 0, "changed_at": now, "open": True}
            )
        except DuplicateKeyError:
            pass

    async def apply(self, tally: Tally, now: datetime) -> None:
        """One `$inc` per notification of the tally (one request for all of them)."""
        if not self.maintained or not tally:
            return
        updates = [
            UpdateOne({"_id": notification_id}, [{"$set": _increments(deltas, now)}], upsert=True)
            for notification_id, deltas in tally.deltas.items()
        ]
        try:
            await self.collection.bulk_write(updates, ordered=False)
        except BulkWriteError as exc:
            # Two first increments of one notification at once: one upsert inserted, the other lost the race
            # on the _id and changed nothing. Now the document exists, so the second attempt updates it.
            failed = [error["index"] for error in exc.details.get("writeErrors", [])]
            if any(error.get("code") != 11000 for error in exc.details.get("writeErrors", [])):
                raise
            await self.collection.bulk_write([updates[i] for i in failed], ordered=False)

    async def apply_safely(self, tally: Tally, now: datetime) -> None:
        """`apply`, once, never raising: an increment that fails is the reconciler's to repair (trying it
        again could count it twice)."""
        try:
            await self.apply(tally, now)
        except PyMongoError as exc:
            log.warning(
                "counts of %d notifications not incremented (%s); the counts reconciler repairs them",
                len(tally.deltas),
                exc,
            )

    # --- reading ---

    async def read(self, notification_id: ObjectId, now: datetime) -> tuple[dict[str, int], dict[str, int]]:
        """The notification's counts by status and its skips and failures by reason."""
        if not self.maintained:
            return await self.exact(notification_id)
        document = await self.collection.find_one({"_id": notification_id})
        if document is None:  # a notification stored before counts were maintained (Counts.start): counted once
            counts, reasons = await self.exact(notification_id)
            try:
                await self.collection.insert_one(
                    {
                        "_id": notification_id,
                        **_raw(counts, reasons),
                        "version": 0,
                        "changed_at": now,
                        "checked_at": now,
                    }
                )
            except DuplicateKeyError:
                pass
            return counts, reasons
        return shown(document)

    async def exact(self, notification_id: ObjectId) -> tuple[dict[str, int], dict[str, int]]:
        """Counted from the deliveries: one aggregation over all of the notification's deliveries."""
        counts, reasons, _ = await self._count(notification_id)
        return counts, reasons

    async def _count(self, notification_id: ObjectId) -> tuple[dict[str, int], dict[str, int], datetime | None]:
        """`exact`, and the last instant one of the deliveries was written at."""
        counts: dict[str, int] = {}
        reasons: dict[str, int] = {}
        latest: datetime | None = None
        pipeline: list[dict] = [
            {"$match": {"notification_id": notification_id}},
            {
                "$group": {
                    "_id": {"status": "$status", "reason": "$reason"},
                    "n": {"$sum": 1},
                    "latest": {"$max": "$updated_at"},
                }
            },
        ]
        async for group in self.deliveries.aggregate(pipeline):
            status, reason = group["_id"]["status"], group["_id"].get("reason")
            counts[status] = counts.get(status, 0) + group["n"]
            if reason and status in REASONED:
                reasons[reason] = reasons.get(reason, 0) + group["n"]
            if group.get("latest") is not None and (latest is None or group["latest"] > latest):
                latest = group["latest"]
        return counts, reasons, latest

    # --- the counts reconciler ---

    async def reconcile(self, now: datetime, quiet: float, recheck: float, limit: int) -> int:
        """Recompute the counts of up to `limit` notifications that are due (see the module docstring);
        returns how many were repaired."""
        if not self.maintained:
            return 0
        query = {"open": True, "changed_at": {"$lte": now - timedelta(seconds=quiet)}}
        candidates = await self.collection.find(query).limit(limit * CANDIDATES_PER_RUN).to_list(None)
        repaired = 0
        for document in [d for d in candidates if _due(d, now, recheck)][:limit]:
            try:
                repaired += await self.recompute(document, now, quiet)
            except PyMongoError:
                raise
            except Exception:  # one bad document never stops the run
                log.exception("counts reconciler: notification %s", document["_id"])
        if repaired:
            log.warning("counts reconciler: repaired the counts of %d notifications", repaired)
        return repaired

    async def recompute(self, document: Mapping, now: datetime, quiet: float = 0) -> bool:
        """Write the exact counts over `document` (as read), unless an increment came in since or one of the
        deliveries was written within `quiet` seconds (its batch's increment may be on its way: counted now,
        it would count twice); True when they differed."""
        counts, reasons, latest = await self._count(document["_id"])
        if latest is not None and latest > now - timedelta(seconds=quiet):
            return False
        exact = _raw(counts, reasons)
        differed = shown(document) != shown(exact)
        update: dict = {"$set": {**exact, "checked_at": now}}
        if _final(counts):
            update["$unset"] = {"open": ""}
        result = await self.collection.update_one({"_id": document["_id"], "version": document.get("version")}, update)
        if differed and result.modified_count:
            log.warning(
                "counts reconciler: notification %s had %s %s, recomputed %s %s",
                document["_id"],
                *shown(document),
                counts,
                reasons,
            )
            return True
        return False

    async def recount(self, notification_ids: Iterable[ObjectId], now: datetime) -> None:
        """Recompute these notifications' counts now (after a write that could not count what it changed)."""
        for notification_id in notification_ids:
            document = await self.collection.find_one({"_id": notification_id})
            if document is None:
                document = {"_id": notification_id, "version": 0}
                try:
                    await self.collection.insert_one({**document, "changed_at": now, "open": True})
                except DuplicateKeyError:
                    document = await self.collection.find_one({"_id": notification_id}) or document
            await self.recompute(document, now)

    async def forget(self, notification_id: ObjectId) -> None:
        await self.collection.delete_one({"_id": notification_id})

    async def forget_safely(self, notification_id: ObjectId) -> None:
        """`forget`, never raising (a create that failed): a counts document left behind counts nothing."""
        try:
            await self.forget(notification_id)
        except PyMongoError:
            log.warning("the counts document of %s stays behind", notification_id, exc_info=True)


def _due(document: Mapping, now: datetime, recheck: float) -> bool:
    checked = document.get("checked_at")
    if checked is None or document.get("changed_at") is None or document["changed_at"] > checked:
        return True
    return checked <= now - timedelta(seconds=recheck)
