"""Background fan-out: a create with more than INLINE_RECIPIENTS recipients is answered at once, and its
deliveries are stored here afterwards ("materialized"), chunk by chunk, by the process that took it.

State, all on the notification: `materialize_at` (present while unfinished; when a process may take it,
i.e. now for a fresh one, the end of the lease for one being worked on), `materializer` (the token of the
claim in force), `materialized` (how many of its listed recipients have their delivery stored). The
recipients wait in `recipient_chunks` documents of RECIPIENT_CHUNK ids (`start`, `end`, `user_ids`).

Exactly once: a claim is a conditional update, so one process works on a notification at a time; and if
two ever do (a lease that ran out on a slow database), or one resumes a chunk stored just before a crash,
the unique index on deliveries (notification_id, user_id, occurrence) stores each recipient once, and only
the deliveries actually inserted are handed to the outbox. A chunk stored but not yet handed over when the
process died is published by the outbox sweep.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from bson import ObjectId

from ..clock import Clock
from ..settings import Settings
from ..store import Store

log = logging.getLogger(__name__)

RECIPIENT_CHUNK = 10000  # ids per chunk document: at most 128 characters each, about 1.4 MB
PROGRESS_EVERY = 1000  # recipients stored between two progress records (each renews the lease)

AddDeliveries = Callable[[dict, list[str], int], Awaitable[tuple[int, int]]]


def in_progress(notification: dict) -> bool:
    """Whether some of the notification's deliveries are still to be stored in the background."""
    return notification.get("materialize_at") is not None


def recipients_stored(notification: dict) -> int:
    return notification.get("materialized", notification.get("recipient_count", 0))


class Materializer:
    """Stores the deliveries of background fan-outs, one at a time per process and lane (express fan-outs
    have their own, so that they never wait behind a regular one), each lane in a task of its own.

    `kick()` after a create starts its lane at once; `resume()` (the job "fan-out resume", every
    MATERIALIZE_INTERVAL, and once at startup) takes over every unfinished fan-out whose lease is free.
    """

    def __init__(self, store: Store, settings: Settings, clock: Clock, add_deliveries: AddDeliveries):
        self.store = store
        self.settings = settings
        self.clock = clock
        self.add_deliveries = add_deliveries
        self._tasks: dict[bool, asyncio.Task] = {}
        self._again: dict[bool, bool] = {}

    # --- the create's side ---

    async def store_recipients(self, notification_id: ObjectId, recipients: list[str]) -> None:
        chunks = []
        for start in range(0, len(recipients), RECIPIENT_CHUNK):
            user_ids = recipients[start : start + RECIPIENT_CHUNK]
            chunks.append(
                {"notification_id": notification_id, "start": start, "end": start + len(user_ids), "user_ids": user_ids}
            )
        await self.store.recipient_chunks.insert_many(chunks)

    async def forget_recipients(self, notification_id: ObjectId) -> None:
        try:
            await self.store.recipient_chunks.delete_many({"notification_id": notification_id})
            await self.store.cancelled_recipients.delete_many({"notification_id": notification_id})
        except Exception:
            log.warning("recipient chunks of notification %s stay behind", notification_id, exc_info=True)

    # --- scheduling ---

    def kick(self, express: bool | None = None) -> None:
        """Make sure this process looks for fan-outs to store now: express ones, regular ones or (None) both."""
        for lane in (True, False) if express is None else (express,):
            task = self._tasks.get(lane)
            if task is None or task.done():
                self._tasks[lane] = asyncio.get_running_loop().create_task(self.drain(lane))
                self._tasks[lane].add_done_callback(self._finished)
            else:
                self._again[lane] = True

    async def resume(self) -> None:
        """The periodic job: take over whatever a stopped or dead process left unfinished."""
        self.kick()

    async def stop(self) -> None:
        """Stop storing (at shutdown); what is left is resumed by the next process from its last record."""
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.warning("background fan-out stopped, resumed next tick: %r", task.exception())

    async def drain(self, express: bool | None = None) -> None:
        """Store every fan-out of the lane (None: both) that can be claimed, one after another, until none is
        left."""
        lane = bool(express)
        while True:
            self._again[lane] = False
            notification = await self.claim(express)
            if notification is None:
                if not self._again.get(lane):
                    return
                continue
            await self.materialize(notification)

    # --- the work ---

    def _lease_end(self):
        return self.clock.now() + timedelta(seconds=self.settings.materialize_lease)

    async def claim(self, express: bool | None = None) -> dict | None:
        """Take the unfinished fan-out due first (of the lane, if given) under a new claim token; None when
        there is none."""
        query: dict = {"materialize_at": {"$lte": self.clock.now()}}
        if express is not None:
            query["is_express"] = express
        # A find on the sparse index, then a write guarded by the lease end read: SecantusDB's
        # find_one_and_update scans the whole collection, and this runs every MATERIALIZE_INTERVAL.
        found = self.store.notifications.find(query, {"materialize_at": 1}).sort("materialize_at", 1).limit(5)
        due = await found.to_list(5)
        for candidate in due:
            token = ObjectId()
            taken = await self.store.notifications.update_one(
                {"_id": candidate["_id"], "materialize_at": candidate["materialize_at"]},
                {"$set": {"materialize_at": self._lease_end(), "materializer": token}},
            )
            if taken.modified_count:
                return await self.store.notifications.find_one({"_id": candidate["_id"], "materializer": token})
        return None

    async def materialize(self, notification: dict) -> bool:
        """Store the claimed notification's deliveries from its last progress record on; False when the
        claim was lost to another process (which carries on from the last record)."""
        notification_id, token = notification["_id"], notification["materializer"]
        done = notification.get("materialized", 0)
        chunks = self.store.recipient_chunks.find({"notification_id": notification_id, "end": {"$gt": done}})
        async for chunk in chunks.sort("start", 1):
            user_ids, start = chunk["user_ids"], chunk["start"]
            for offset in range(max(done - start, 0), len(user_ids), PROGRESS_EVERY):
                part = user_ids[offset : offset + PROGRESS_EVERY]
                await self.add_deliveries(notification, part, start + offset)
                done = start + offset + len(part)
                renewed = await self.store.notifications.update_one(
                    {"_id": notification_id, "materializer": token},
                    {"$set": {"materialize_at": self._lease_end()}, "$max": {"materialized": done}},
                )
                if renewed.matched_count == 0:
                    log.warning("background fan-out of %s was taken over at %d", notification_id, done)
                    return False
        finished = await self.store.notifications.update_one(
            {"_id": notification_id, "materializer": token},
            {"$unset": {"materialize_at": "", "materializer": ""}, "$max": {"materialized": done}},
        )
        if finished.matched_count == 0:
            return False
        await self.forget_recipients(notification_id)
        log.info("background fan-out of %s: %d deliveries stored", notification_id, done)
        return True
