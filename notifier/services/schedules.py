"""Recurring notifications (the original's NotificationFrequency), fired exactly once per occurrence.

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

from ..auth import Principal
from ..clock import Clock
from ..errors import Invalid, NotFound
from ..recurrence import check_periodicity, recurrence_of
from ..settings import Settings
from ..store import Store
from . import object_id
from .notifications import NotificationService
from .paging import Page, newest_first
from .visibility import visible_to

log = logging.getLogger(__name__)

MISFIRE_AFTER = timedelta(seconds=60)
RUN_LEASE = timedelta(minutes=5)
FIRING_AT_ONCE = 16
DUE_PER_TICK = 2000
PERIODICITY_FIELDS = ("cron", "interval_seconds", "timezone", "start_at", "end_at")


def run_key(schedule_id, at: datetime) -> str:
    return f"{schedule_id}@{at.strftime('%Y-%m-%dT%H:%M:%SZ')}"


class ScheduleService:
    def __init__(self, store: Store, settings: Settings, clock: Clock, notifications: NotificationService,
                 instance: str = "server"):
        self.store = store
        self.settings = settings
        self.clock = clock
        self.notifications = notifications
        self.instance = instance

    # --- managing schedules ---

    def _check(self, schedule: dict) -> None:
        errors = check_periodicity(schedule.get("cron"), schedule.get("interval_seconds"),
                                   schedule.get("timezone", "UTC"))
        start, end = schedule.get("start_at"), schedule.get("end_at")
        if start and end and end <= start:
            errors["end_at"] = ["must be after start_at"]
        if len(schedule["user_ids"]) > self.settings.max_recipients:
            errors["user_ids"] = [f"at most {self.settings.max_recipients} per schedule"]
        if errors:
            raise Invalid("Invalid schedule", errors)

    def _next_run(self, schedule: dict, after: datetime) -> datetime | None:
        if not schedule.get("enabled", True):
            return None
        return recurrence_of(schedule).next_after(after)

    async def create(self, author: Principal, data: dict) -> dict:
        now = self.clock.now()
        data = dict(data)
        data["user_ids"] = list(dict.fromkeys(data["user_ids"]))
        if "notification" in data:
            content = data.pop("notification")
            notification = {**content, "author": author.as_author(), "created_at": now, "recipient_count": 0,
                            "complete": True, "scheduled": True}
            self._check({**data, "user_ids": data["user_ids"]})
            self.notifications.check(content, [])
            await self.store.notifications.insert_one(notification)
        else:
            notification = await self.notifications.visible(author, data.pop("notification_id"))
        schedule = {**data, "notification_id": notification["_id"], "author": author.as_author(),
                    "created_at": now, "updated_at": now, "last_run_at": None, "fired": 0, "skipped": 0}
        schedule.setdefault("timezone", "UTC")
        schedule.setdefault("enabled", True)
        self._check(schedule)
        schedule["next_run_at"] = self._next_run(schedule, now)
        await self.store.schedules.insert_one(schedule)
        return schedule

    async def get(self, principal: Principal, schedule_id: str) -> dict:
        query = visible_to(principal, {"_id": object_id(schedule_id, "Schedule")})
        schedule = await self.store.schedules.find_one(query)
        if schedule is None:
            raise NotFound(f"Schedule {schedule_id!r} not found")
        return schedule

    async def list(self, principal: Principal, query: dict) -> Page:
        conditions: dict = {}
        if "enabled" in query:
            conditions["enabled"] = query["enabled"]
        if "notification_id" in query:
            if not ObjectId.is_valid(query["notification_id"]):
                raise Invalid.field("notification_id", "is not a notification id")
            conditions["notification_id"] = ObjectId(query["notification_id"])
        return await newest_first(self.store.schedules, visible_to(principal, conditions), query["limit"],
                                  query.get("cursor"))

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
        await self.store.schedules.replace_one(visible_to(principal, {"_id": schedule["_id"]}), updated)
        return updated

    async def delete(self, principal: Principal, schedule_id: str) -> None:
        schedule = await self.get(principal, schedule_id)
        await self.store.schedules.delete_one(visible_to(principal, {"_id": schedule["_id"]}))

    async def preview(self, principal: Principal, schedule_id: str, count: int) -> list[dict]:
        schedule = await self.get(principal, schedule_id)
        recurrence = recurrence_of(schedule)
        after = self.clock.now()
        times = recurrence.preview(after, count)
        return [{"at": recurrence.local(t).isoformat(), "utc": t.isoformat().replace("+00:00", "Z"),
                 "utc_offset": recurrence.local(t).strftime("%z")} for t in times]

    async def runs(self, principal: Principal, schedule_id: str, limit: int, cursor: str | None) -> Page:
        schedule = await self.get(principal, schedule_id)
        return await newest_first(self.store.schedule_runs, {"schedule_id": schedule["_id"]}, limit, cursor)

    # --- firing ---

    async def fire_due(self) -> int:
        """Fire every due occurrence (each schedule on its own; one failure never stops the tick)."""
        now = self.clock.now()
        await self._resume_stalled(now)
        due = await self.store.schedules.find({"enabled": True, "next_run_at": {"$lte": now}}
                                              ).limit(DUE_PER_TICK).to_list(DUE_PER_TICK)
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
        recurrence = recurrence_of(schedule)
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
        await self.store.schedule_runs.update_one({"_id": run_key(schedule["_id"], occurrence)},
                                                  {"$set": {"status": "done", "finished_at": self.clock.now()}})
        await self._advance(schedule, due_at, recurrence.next_after(max(occurrence, now)), fired_at=occurrence)
        return True

    async def _resume_stalled(self, now: datetime) -> None:
        """Finish firings whose instance stopped half-way (their claim outlived the lease)."""
        stalled = await self.store.schedule_runs.find({"status": "firing", "claimed_at": {"$lt": now - RUN_LEASE}}
                                                      ).limit(100).to_list(100)
        for run in stalled:
            try:
                taken = await self.store.schedule_runs.update_one(
                    {"_id": run["_id"], "status": "firing", "claimed_at": run["claimed_at"]},
                    {"$set": {"claimed_at": now, "instance": self.instance}})
                if not taken.modified_count:
                    continue  # another instance took it over
                schedule = await self.store.schedules.find_one({"_id": run["schedule_id"]})
                if schedule is not None:
                    log.warning("schedule %s: finishing the stalled firing %s", schedule["_id"], run["_id"])
                    notification = await self.store.notifications.find_one({"_id": schedule["notification_id"]})
                    await self._deliver(schedule, run["at"], notification)
                await self.store.schedule_runs.update_one({"_id": run["_id"]},
                                                          {"$set": {"status": "done", "finished_at": self.clock.now()}})
            except Exception:
                log.exception("could not finish the stalled firing %s", run["_id"])

    async def _claim_run(self, schedule: dict, occurrence: datetime, now: datetime) -> bool:
        """True when this instance is the one to fire `occurrence` (or to finish a firing that stalled)."""
        key = run_key(schedule["_id"], occurrence)
        try:
            await self.store.schedule_runs.insert_one({"_id": key, "schedule_id": schedule["_id"], "at": occurrence,
                                                       "status": "firing", "claimed_at": now,
                                                       "instance": self.instance,
                                                       "recipients": len(schedule["user_ids"])})
            return True
        except DuplicateKeyError:
            pass
        run = await self.store.schedule_runs.find_one({"_id": key})
        if run is None:
            return False
        if run["status"] == "done":
            await self._advance(schedule, schedule["next_run_at"],
                                recurrence_of(schedule).next_after(max(occurrence, now)), fired_at=occurrence,
                                count=False)
            return False
        if now - run["claimed_at"] < RUN_LEASE:
            return False  # another instance is firing it right now
        taken = await self.store.schedule_runs.update_one(
            {"_id": key, "claimed_at": run["claimed_at"]},
            {"$set": {"claimed_at": now, "instance": self.instance}})
        return taken.modified_count == 1

    async def _deliver(self, schedule: dict, occurrence: datetime, notification: dict | None) -> None:
        """The occurrence's deliveries, one per user (the notification's counts include them; its
        recipient_count stays the number of recipients it was sent to directly)."""
        if notification is None:
            log.error("schedule %s: its notification is gone; disabling it", schedule["_id"])
            await self.store.schedules.update_one({"_id": schedule["_id"]}, {"$set": {"enabled": False}})
            return
        await self.notifications.add_deliveries(notification, schedule["user_ids"], run_key(schedule["_id"], occurrence))

    async def _advance(self, schedule: dict, due_at: datetime, following: datetime | None,
                       fired_at: datetime | None = None, skipped: bool = False, count: bool = True) -> None:
        """Move next_run_at on, only if nobody else did (an edit, or another instance)."""
        changes: dict = {"next_run_at": following}
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
