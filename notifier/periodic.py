"""Periodic jobs of the server process, each on its own tornado PeriodicCallback.

A job never overlaps itself (PeriodicCallback awaits the run and skips missed ticks), and a failing run
is logged and tried again next tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pymongo.errors import ConnectionFailure
from tornado.ioloop import PeriodicCallback

log = logging.getLogger(__name__)


@dataclass
class Job:
    name: str
    interval: float
    run: Callable[[], Awaitable[object]]
    runs: int = 0
    failures: int = 0
    last_error: str | None = None
    last_duration: float = 0.0
    _callback: PeriodicCallback | None = field(default=None, repr=False)
    _current: asyncio.Future | None = field(default=None, repr=False)

    async def tick(self) -> None:
        started = time.monotonic()
        try:
            self._current = asyncio.ensure_future(self.run())
            await self._current
            self.last_error = None
        except Exception as exc:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, ConnectionFailure):  # an outage, not a bug: one line per tick, no traceback
                log.warning("job %s: database unavailable (%s); trying again next tick", self.name, type(exc).__name__)
            else:
                log.exception("job %s failed", self.name)
        finally:
            self.runs += 1
            self.last_duration = time.monotonic() - started


class Jobs:
    def __init__(self):
        self.jobs: dict[str, Job] = {}

    def add(self, name: str, interval: float, run: Callable[[], Awaitable[object]]) -> Job:
        job = Job(name, interval, run)
        self.jobs[name] = job
        return job

    def start(self) -> None:
        for job in self.jobs.values():
            job._callback = PeriodicCallback(job.tick, job.interval * 1000, jitter=0.1)
            job._callback.start()

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop ticking and let a run in progress finish."""
        for job in self.jobs.values():
            if job._callback is not None:
                job._callback.stop()
        running = [j._current for j in self.jobs.values() if j._current is not None and not j._current.done()]
        if running:
            await asyncio.wait(running, timeout=timeout)

    def describe(self) -> list[dict]:
        return [
            {
                "name": j.name,
                "interval": j.interval,
                "runs": j.runs,
                "failures": j.failures,
                "last_error": j.last_error,
                "last_duration": round(j.last_duration, 4),
            }
            for j in self.jobs.values()
        ]
