"""Time as a dependency: code that schedules or stamps reads a Clock, so tests move time instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def _to_millis(moment: datetime) -> datetime:
    # MongoDB keeps milliseconds; trimming here makes stored and in-memory values compare equal.
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class Clock:
    def now(self) -> datetime:
        return _to_millis(datetime.now(UTC))


class ManualClock(Clock):
    """A clock that only moves when told to."""

    def __init__(self, start: datetime):
        self._now = _to_millis(start.astimezone(UTC))

    def now(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = _to_millis(moment.astimezone(UTC))

    def advance(self, seconds: float) -> None:
        self._now = _to_millis(self._now + timedelta(seconds=seconds))
