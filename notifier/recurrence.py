"""When a schedule fires: cron expressions in an IANA time zone (croniter) or fixed intervals.

DST rules:
- A cron time that does not exist locally (clocks jump forward) fires once, at the first valid instant after
  the gap: 02:30 on the spring-forward night in Europe/Berlin fires at 03:00 local.
- A cron time that occurs twice locally (clocks fall back) fires once, at its first occurrence (the earlier
  UTC instant); the repeated hour's second pass is skipped.
- Intervals are real elapsed time (UTC) and ignore DST: every 3600 s is every hour, whatever the clocks say.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

UTC = timezone.utc
MAX_SKIPS = 1000


def check_timezone(name: str) -> str | None:
    """None when `name` is a known IANA zone, else why not."""
    try:
        ZoneInfo(name)
        return None
    except (ZoneInfoNotFoundError, ValueError):
        return "is not an IANA time zone such as Europe/Berlin"


def check_cron(expression: str) -> str | None:
    """None when croniter accepts `expression`, else why not."""
    if not croniter.is_valid(expression):
        return "is not a valid cron expression (minute hour day-of-month month day-of-week)"
    return None


def _is_second_pass(moment: datetime, zone: ZoneInfo) -> bool:
    """True for the later of two instants sharing one local wall time (the fall-back hour's repeat)."""
    wall = moment.astimezone(zone).replace(tzinfo=None)
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    return first.utcoffset() != second.utcoffset() and moment.astimezone(UTC) != first.astimezone(UTC)


class Recurrence:
    """The fire times of one schedule, as aware UTC datetimes, strictly after a given instant."""

    def __init__(self, cron: str | None, interval_seconds: int | None, tz: str = "UTC",
                 start_at: datetime | None = None, end_at: datetime | None = None, anchor: datetime | None = None):
        self.cron = cron
        self.interval = interval_seconds
        self.zone = ZoneInfo(tz)
        self.start_at = start_at
        self.end_at = end_at
        self.anchor = start_at or anchor or datetime(2000, 1, 1, tzinfo=UTC)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after `moment` (and not before start_at), or None after end_at."""
        if self.start_at is not None and moment < self.start_at:
            moment = self.start_at - timedelta(microseconds=1)
        found = self._cron_after(moment) if self.cron else self._interval_after(moment)
        if found is not None and self.end_at is not None and found > self.end_at:
            return None
        return found

    def _interval_after(self, moment: datetime) -> datetime:
        elapsed = (moment - self.anchor).total_seconds()
        steps = int(elapsed // self.interval) + 1 if elapsed >= 0 else 0
        return self.anchor + timedelta(seconds=steps * self.interval)

    def _cron_after(self, moment: datetime) -> datetime | None:
        iterator = croniter(self.cron, moment.astimezone(self.zone))
        for _ in range(MAX_SKIPS):
            candidate = iterator.get_next(datetime).astimezone(UTC)
            if candidate > moment and not _is_second_pass(candidate, self.zone):
                return candidate
        return None

    def preview(self, after: datetime, count: int) -> list[datetime]:
        times: list[datetime] = []
        moment = after
        while len(times) < count:
            found = self.next_after(moment)
            if found is None:
                break
            times.append(found)
            moment = found
        return times

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone)


def recurrence_of(schedule: dict) -> Recurrence:
    return Recurrence(schedule.get("cron"), schedule.get("interval_seconds"), schedule.get("timezone", "UTC"),
                      schedule.get("start_at"), schedule.get("end_at"), schedule.get("created_at"))


def check_periodicity(cron: str | None, interval_seconds: int | None, tz: str) -> dict[str, list[str]]:
    """Field errors of a periodicity, empty when it is valid."""
    errors: dict[str, list[str]] = {}
    if (cron is None) == (interval_seconds is None):
        errors["cron"] = ["give either cron or interval_seconds"]
    elif cron is not None and (reason := check_cron(cron)):
        errors["cron"] = [reason]
    if (reason := check_timezone(tz)):
        errors["timezone"] = [reason]
    return errors
