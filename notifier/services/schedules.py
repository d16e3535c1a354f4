"""Recurring notifications, fired exactly once per occurrence.

Each occurrence is claimed with a run document whose id is `<schedule id>@<UTC instant>`: the unique _id
decides which instance (of any number sharing the database) fires it. Its deliveries carry the same key as
their occurrence, so a firing that is resumed after a crash adds only what is missing. Only then does
`next_run_at` advance, guarded by its previous value.

Misfires (occurrences due longer than MISFIRE_AFTER ago, e.g. while the service was down): `skip` drops
them; `run_once` fires the latest one once if it is within the schedule's grace window, then carries on.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from ..access import Principal
from ..clock import Clock
from ..errors import Invalid, NotFound
from ..recurrence import HORIZON, UNCOMPUTABLE, check_periodicity, recurrence_of
from ..settings import Settings
from ..store import Store
from . import object_id
from .notifications import NotificationService
from .paging import Page, newest_first
from .visibility import visible_to

log = logging.getLogger(__name__)

MISFIRE_AFTER = timedelta(seconds=60)
FIRING_AT_ONCE = 16
DUE_PER_TICK = 2000
ORPHAN_AFTER = timedelta(minutes=10)  # far longer than a create request takes


def run_key(schedule_id, at: datetime) -> str:
    return f"{schedule_id}@{at.strftime('%Y-%m-%dT%H:%M:%SZ')}"


class ScheduleService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Clock,
        notifications: NotificationService,
        instance: str = "server",
    ):
        self.store = store
        self.settings = settings
        self.clock = clock
        self.notifications = notifications
        self.instance = instance
        self.run_lease = timedelta(seconds=settings.schedule_run_lease)

    # --- managing schedules ---

    def _check(self, schedule: dict) -> None:
        errors = check_periodicity(
            schedule.get("cron"), schedule.get("interval_seconds"), schedule.get("timezone", "UTC")
        )
        start, end = schedule.get("start_at"), schedule.get("end_at")
        if start and end and end <= start:
            errors["end_at"] = ["must be after start_at"]
        if len(schedule["user_ids"]) > self.settings.max_recipients:
            errors["user_ids"] = [f"at most {self.settings.max_recipients} per schedule"]
        interval = schedule.get("interval_seconds")
        if interval is not None and interval < self.settings.schedule_min_interval:
            errors["interval_seconds"] = [f"must be at least {self.settings.schedule_min_interval} seconds"]
        if errors:
            raise Invalid("Invalid schedule", errors)
        if schedule.get("enabled", True):
            self._check_fires(schedule)

    def _check_fires(self, schedule: dict) -> None:
        """An enabled schedule must fire again within HORIZON (`0 0 31 2 *` never does)."""
        now = self.clock.now()
        after = max(now, schedule.get("last_run_at") or now)
        following = recurrence_of(schedule).next_after(after)
        if following is not None and following - now <= HORIZON:
            return
        unbounded = recurrence_of({**schedule, "end_at": None}).next_after(after)
        if unbounded is not None and unbounded - now <= HORIZON:
            raise Invalid.field("end_at", "is before the next fire time; disable the schedule instead")
        field = "cron" if schedule.get("cron") else "start_at"
        raise Invalid.field(field, f"gives no fire time in the next {HORIZON.days // 366} years")

    def _next_run(self, schedule: dict, after: datetime) -> datetime | None:
        if not schedule.get("enabled", True):
            return None
        return recurrence_of(schedule).next_after(after)

    async def create(self, author: Principal, data: dict) -> dict:
        """Validate everything, then write the inline notification (if any) and the schedule. If the schedule
        cannot be stored the notification is taken back; one left by a crash in between is reaped later
        (reap_orphans), as it stays marked `pending_schedule_since` until its schedule exists."""
        now = self.clock.now()
        data = dict(data)
        data["user_ids"] = list(dict.fromkeys(data["user_ids"]))
        content = data.pop("notification", None)
        notification_id = data.pop("notification_id", None)
        schedule = {
            **data,
            "author": author.as_author(),
            "created_at": now,
            "updated_at": now,
            "last_run_at": None,
            "fired": 0,
            "skipped": 0,
            "ended_at": None,
            "end_reason": None,
        }
        schedule.setdefault("timezone", "UTC")
        schedule.setdefault("enabled", True)
        self._check(schedule)
        if content is None:
            notification = await self.notifications.visible(author, notification_id)
        else:
            self.notifications.check(content, [])
            notification = {
                **content,
                "author": author.as_author(),
                "created_at": now,
                "recipient_count": 0,
                "complete": True,
                "scheduled": True,
                "pending_schedule_since": now,
            }
            await self.notifications.track(author, notification, completes=False)
        schedule["next_run_at"] = self._next_run(schedule, now)
        if content is not None:
            notification["_id"] = ObjectId()
        schedule["notification_id"] = notification["_id"]
        try:
            if content is not None:
                await self.notifications.counts.start(notification["_id"], now)
                await self.store.notifications.insert_one(notification)
            await self.store.schedules.insert_one(schedule)
        except BaseException:
            if content is not None:
                await self._forget_notification(notification["_id"])
            raise
        if content is not None:
            await self.store.notifications.update_one(
                {"_id": notification["_id"]}, {"$unset": {"pending_schedule_since": ""}}
            )
        return schedule

    async def _forget_notification(self, notification_id) -> None:
        try:
            await self.store.notifications.delete_one(
                {"_id": notification_id, "pending_schedule_since": {"$exists": True}}
            )
            # Its own, stored or not: the notification was made by this create (its counts came first).
            await self.notifications.counts.forget_safely(notification_id)
        except Exception:
            log.warning("notification %s of a schedule that was not stored stays until reaped", notification_id)

    async def reap_orphans(self, older_than: timedelta = ORPHAN_AFTER) -> int:
        """Delete inline notifications whose schedule was never stored (the server stopped in between)."""
        cutoff = self.clock.now() - older_than
        reaped = 0
        async for notification in self.store.notifications.find(
            {"pending_schedule_since": {"$lt": cutoff}}, {"_id": 1}
        ).limit(1000):
            if await self.store.schedules.find_one({"notification_id": notification["_id"]}, {"_id": 1}):
                await self.store.notifications.update_one(
                    {"_id": notification["_id"]}, {"$unset": {"pending_schedule_since": ""}}
                )
                continue
            deleted = await self.store.notifications.delete_one(
                {"_id": notification["_id"], "pending_schedule_since": {"$lt": cutoff}}
            )
            if deleted.deleted_count:
                await self.notifications.counts.forget_safely(notification["_id"])
            reaped += deleted.deleted_count
        if reaped:
            log.warning("deleted %d notifications whose schedule was never stored", reaped)
        return reaped

    async def get(self, principal: Principal, schedule_id: str) -> dict:
        query = visible_to(principal, {"_id": object_id(schedule_id, "Schedule")})
        schedule = await self.store.schedules.find_one(query)
        if schedule is None:
            raise NotFound(f"Schedule {schedule_id!r} not found")
        return schedule

    async def page(self, principal: Principal, query: dict) -> Page:
        conditions: dict = {}
        if "enabled" in query:
            conditions["enabled"] = query["enabled"]
        if "notification_id" in query:
            if not ObjectId.is_valid(query["notification_id"]):
                raise Invalid.field("notification_id", "is not a notification id")
            conditions["notification_id"] = ObjectId(query["notification_id"])
        return await newest_first(
            self.store.schedules, visible_to(principal, conditions), query["limit"], query.get("cursor")
        )

    async def update(self, principal: Principal, schedule_id: str, changes: dict) -> dict:
        """Change a schedule; the new periodicity or state takes effect at the next scheduler tick."""
        schedule = await self.get(principal, schedule_id)
        if "user_ids" in changes:
            changes["user_ids"] = list(dict.fromkeys(changes["user_ids"]))
        if "cron" in changes and changes["cron"] is not None:
            changes.setdefault("interval_seconds", None)
        if "interval_seconds" in changes and changes["interval_seconds"] is not None:
            changes.setdefault("cron", None)
        updated = {**schedule, **changes}
        self._check(updated)
        now = self.clock.now()
        updated["next_run_at"] = self._next_run(updated, max(now, schedule.get("last_run_at") or now))
        updated["updated_at"] = now
        if updated["next_run_at"] is not None:
            updated["ended_at"], updated["end_reason"] = None, None
        await self.store.schedules.replace_one(visible_to(principal, {"_id": schedule["_id"]}), updated)
        return updated

    async def delete(self, principal: Principal, schedule_id: str) -> None:
        schedule = await self.get(principal, schedule_id)
        await self.store.schedules.delete_one(visible_to(principal, {"_id": schedule["_id"]}))

    async def preview(self, principal: Principal, schedule_id: str, count: int) -> dict:
        """The next fire times; for a disabled schedule, those it would have once enabled, and it says so."""
        schedule = await self.get(principal, schedule_id)
        enabled = schedule.get("enabled", True)
        try:
            recurrence = recurrence_of(schedule)
        except UNCOMPUTABLE as exc:  # stored before today's checks
            return {"enabled": enabled, "note": f"its periodicity cannot be computed ({exc})", "items": []}
        times = recurrence.preview(self.clock.now(), count)
        note = None if enabled else "disabled: it fires at these times only once enabled"
        if enabled and schedule.get("ended_at"):
            note = f"ended: {schedule.get('end_reason')}"
        return {
            "enabled": enabled,
            "note": note,
            "items": [
                {
                    "at": recurrence.local(t).isoformat(),
                    "utc": t.isoformat().replace("+00:00", "Z"),
                    "utc_offset": recurrence.local(t).strftime("%z"),
                }
                for t in times
            ],
        }

    async def runs(self, principal: Principal, schedule_id: str, limit: int, cursor: str | None) -> Page:
        schedule = await self.get(principal, schedule_id)
        return await newest_first(self.store.schedule_runs, {"schedule_id": schedule["_id"]}, limit, cursor)

    # --- firing ---

    async def fire_due(self) -> int:
        """Fire every due occurrence (each schedule on its own; one failure never stops the tick)."""
        now = self.clock.now()
        await self._resume_stalled(now)
        due = (
            await self.store.schedules.find({"enabled": True, "next_run_at": {"$lte": now}})
            .limit(DUE_PER_TICK)
            .to_list(DUE_PER_TICK)
        )
        if not due:
            return 0
        slots = asyncio.Semaphore(FIRING_AT_ONCE)
        notification_ids = list({schedule["notification_id"] for schedule in due})
        notifications = {n["_id"]: n async for n in self.store.notifications.find({"_id": {"$in": notification_ids}})}

        async def one(schedule: dict) -> bool:
            async with slots:
                try:
                    return await self._fire(schedule, now, notifications.get(schedule["notification_id"]))
                except Exception:
                    log.exception("schedule %s: firing failed; the next tick tries again", schedule["_id"])
                    return False

        fired = await asyncio.gather(*(one(schedule) for schedule in due))
        return sum(fired)

    async def _fire(self, schedule: dict, now: datetime, notification: dict | None) -> bool:
        due_at = schedule["next_run_at"]
        try:
            recurrence = recurrence_of(schedule)
            recurrence.next_after(due_at)
        except UNCOMPUTABLE as exc:  # stored before today's checks (a 6-field cron, a zone that is gone)
            await self._end(schedule, due_at, f"its periodicity cannot be computed ({type(exc).__name__}: {exc})")
            return False
        occurrence = due_at
        if now - due_at > MISFIRE_AFTER:
            latest = due_at
            while (following := recurrence.next_after(latest)) is not None and following <= now:
                latest = following
            grace = timedelta(seconds=schedule.get("misfire_grace_seconds", 3600))
            if schedule.get("misfire_policy", "run_once") == "skip" or now - latest > grace:
                log.warning("schedule %s: skipping occurrences missed since %s", schedule["_id"], due_at)
                await self._advance(schedule, due_at, recurrence.next_after(now), skipped=True)
                return False
            occurrence = latest
        if not await self._claim_run(schedule, occurrence, now):
            return False
        await self._deliver(schedule, occurrence, notification)
        await self.store.schedule_runs.update_one(
            {"_id": run_key(schedule["_id"], occurrence)}, {"$set": {"status": "done", "finished_at": self.clock.now()}}
        )
        await self._advance(schedule, due_at, recurrence.next_after(max(occurrence, now)), fired_at=occurrence)
        return True

    async def _resume_stalled(self, now: datetime) -> None:
        """Finish firings whose instance stopped half-way (their claim outlived the lease)."""
        stalled = (
            await self.store.schedule_runs.find({"status": "firing", "claimed_at": {"$lt": now - self.run_lease}})
            .limit(100)
            .to_list(100)
        )
        for run in stalled:
            try:
                taken = await self.store.schedule_runs.update_one(
                    {"_id": run["_id"], "status": "firing", "claimed_at": run["claimed_at"]},
                    {"$set": {"claimed_at": now, "instance": self.instance}},
                )
                if not taken.modified_count:
                    continue  # another instance took it over
                schedule = await self.store.schedules.find_one({"_id": run["schedule_id"]})
                if schedule is not None:
                    log.warning("schedule %s: finishing the stalled firing %s", schedule["_id"], run["_id"])
                    notification = await self.store.notifications.find_one({"_id": schedule["notification_id"]})
                    await self._deliver(schedule, run["at"], notification)
                await self.store.schedule_runs.update_one(
                    {"_id": run["_id"]}, {"$set": {"status": "done", "finished_at": self.clock.now()}}
                )
            except Exception:
                log.exception("could not finish the stalled firing %s", run["_id"])

    async def _claim_run(self, schedule: dict, occurrence: datetime, now: datetime) -> bool:
        """True when this instance is the one to fire `occurrence` (or to finish a firing that stalled)."""
        key = run_key(schedule["_id"], occurrence)
        try:
            await self.store.schedule_runs.insert_one(
                {
                    "_id": key,
                    "schedule_id": schedule["_id"],
                    "at": occurrence,
                    "status": "firing",
                    "claimed_at": now,
                    "instance": self.instance,
                    "recipients": len(schedule["user_ids"]),
                }
            )
            return True
        except DuplicateKeyError:
            pass
        run = await self.store.schedule_runs.find_one({"_id": key})
        if run is None:
            return False
        if run["status"] == "done":
            await self._advance(
                schedule,
                schedule["next_run_at"],
                recurrence_of(schedule).next_after(max(occurrence, now)),
                fired_at=occurrence,
                count=False,
            )
            return False
        if now - run["claimed_at"] < self.run_lease:
            return False  # another instance is firing it right now
        taken = await self.store.schedule_runs.update_one(
            {"_id": key, "claimed_at": run["claimed_at"]}, {"$set": {"claimed_at": now, "instance": self.instance}}
        )
        return taken.modified_count == 1

    async def _deliver(self, schedule: dict, occurrence: datetime, notification: dict | None) -> None:
        """The occurrence's deliveries, one per user (the notification's counts include them; its
        recipient_count stays the number of recipients it was sent to directly)."""
        if notification is None:
            log.error("schedule %s: its notification is gone; disabling it", schedule["_id"])
            await self.store.schedules.update_one({"_id": schedule["_id"]}, {"$set": {"enabled": False}})
            return
        await self.notifications.add_deliveries(
            notification, schedule["user_ids"], run_key(schedule["_id"], occurrence)
        )

    async def _end(self, schedule: dict, due_at: datetime, reason: str) -> None:
        """Stop firing a schedule for good, saying why, instead of failing on every tick."""
        log.warning("schedule %s: ended: %s", schedule["_id"], reason)
        await self.store.schedules.update_one(
            {"_id": schedule["_id"], "next_run_at": due_at},
            {"$set": {"next_run_at": None, "ended_at": self.clock.now(), "end_reason": reason}},
        )

    async def _advance(
        self,
        schedule: dict,
        due_at: datetime,
        following: datetime | None,
        fired_at: datetime | None = None,
        skipped: bool = False,
        count: bool = True,
    ) -> None:
        """Move next_run_at on, only if nobody else did (an edit, or another instance)."""
        changes: dict = {"next_run_at": following}
        if following is None:
            changes.update(
                ended_at=self.clock.now(),
                end_reason="no fire time after the last one (end_at passed, "
                "or the cron expression matches no later date)",
            )
        increments: dict = {}
        if fired_at is not None:
            changes["last_run_at"] = fired_at
            if count:
                increments["fired"] = 1
        if skipped:
            increments["skipped"] = 1
        update: dict = {"$set": changes}
        if increments:
            update["$inc"] = increments
        await self.store.schedules.update_one({"_id": schedule["_id"], "next_run_at": due_at}, update)
