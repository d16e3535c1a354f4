"""Leases on the periodic jobs that one instance at a time runs when several `notifier serve` share a database:
a document in `meta` naming its holder until an instant, renewed by the holder on each run and taken over by
another instance once that instant passes (the holder stopped, or died)."""

from __future__ import annotations

import logging
import socket
from datetime import datetime, timedelta

from pymongo.errors import DuplicateKeyError, PyMongoError

from ..clock import Clock
from ..store import Store

log = logging.getLogger(__name__)


class JobLease:
    def __init__(self, store: Store, clock: Clock, job: str, holder: str, seconds: float):
        self.collection = store.meta
        self.clock = clock
        self.key = f"lease:{job}"
        self.holder = holder
        self.seconds = seconds
        self._held_until: datetime | None = None  # as far as this instance knows

    @staticmethod
    def holder_for(port: int) -> str:
        """An instance's name that stays the same when it restarts, so that it takes its lease back at once."""
        return f"{socket.gethostname()}:{port}"

    async def take(self) -> bool:
        """Renew the lease, or take it if it is free or over; False while another instance holds it. A lease
        held with more than half of it left is not written again (jobs ask every run, some four times a
        second, and the database answers one request at a time)."""
        now = self.clock.now()
        if self._held_until is not None and now < self._held_until - timedelta(seconds=self.seconds / 2):
            return True
        until = now + timedelta(seconds=self.seconds)
        try:
            await self.collection.update_one(
                {"_id": self.key, "$or": [{"holder": self.holder}, {"until": {"$lte": now}}]},
                {"$set": {"holder": self.holder, "until": until}},
                upsert=True,
            )
        except DuplicateKeyError:  # the document exists and names another holder whose lease runs
            self._held_until = None
            return False
        self._held_until = until
        return True

    async def release(self) -> None:
        """Give the lease up (at shutdown), for another instance to take at once; if the database is away,
        it runs out by itself."""
        self._held_until = None
        try:
            await self.collection.delete_one({"_id": self.key, "holder": self.holder})
        except PyMongoError as exc:
            log.warning("lease %s not given up (%s): it ends in %.0fs", self.key, exc, self.seconds)
