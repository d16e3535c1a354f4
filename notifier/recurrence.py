"""When a schedule fires: cron expressions in an IANA time zone (croniter) or fixed intervals.

Cron expressions have exactly five fields (minute hour day-of-month month day-of-week); there is no seconds
or year field and no `@daily`-style macro. When both day-of-month and day-of-week are restricted (anything but
`*`, so `*/2` counts as a restriction), a day matching either fires (croniter's `day_or`, as in Vixie cron).

The expression is matched against local wall-clock time in the zone; DST rules:
- A local time that does not exist (clocks jump forward) depends on the hour field. A job whose hour field
  covers every hour (`*`, `*/1`, `0-23`) skips it, as cron does: `32 * * * *` in Europe/Berlin fires at 01:32
  and then 03:32 on the spring-forward night. Any other job fires once, at the first valid instant after the
  gap: `30 2 * * *` fires at 03:00 that night.
- A local time that occurs twice (clocks fall back) fires once, at its first occurrence (the earlier UTC
  instant); the repeated hour's second pass is skipped, for both kinds of job.
- Intervals are real elapsed time (UTC) and ignore DST: every 3600 s is every hour, whatever the clocks say.

A notification delivered at a recipient's local time (`deliver_at_local`, `local_instant`) follows the rules
of a job with a fixed hour: a local time that does not exist that day is sent at the first valid instant after
the gap (09:00 never falls in one in practice; 02:30 on Europe/Berlin's spring-forward night is sent at
03:00 CEST), and one that occurs twice is sent at its first occurrence (02:30 on its fall-back night: 02:30
CEST, 00:30 UTC, not 02:30 CET).
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

MAX_SKIPS = 1000
MAX_ZONE_NAME = 64
MAX_CRON = 100
HORIZON = timedelta(days=5 * 366)  # an enabled schedule must fire within this
CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-#?]+$")
# What building a Recurrence from a stored schedule raises when the stored values break today's rules.
UNCOMPUTABLE = (ValueError, LookupError, OSError, TypeError)
CRON_FORMAT = "must be a cron expression of 5 fields: minute hour day-of-month month day-of-week"


@functools.lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_timezone(name: object) -> str | None:
    """None when `name` is a zone of the IANA database (looked up by name only, never as a path), else why not."""
    if not isinstance(name, str) or len(name) > MAX_ZONE_NAME or name not in _zones():
        return "is not an IANA time zone such as Europe/Berlin"
    return None


def check_cron(expression: object) -> str | None:
    """None when `expression` is a five-field cron expression croniter accepts, else why not."""
    if (
        not isinstance(expression, str)
        or not 1 <= len(expression) <= MAX_CRON
        or not expression.isascii()
        or not expression.isprintable()
    ):
        return CRON_FORMAT + f" (at most {MAX_CRON} printable characters)"
    parts = expression.split()
    if len(parts) != 5 or not all(CRON_FIELD.fullmatch(part) for part in parts):
        return CRON_FORMAT
    if re.search(r"[^0-9*/,\-?Ll]", parts[2]):
        return "day-of-month takes numbers, *, ranges, steps and L only (no W)"
    try:
        croniter(expression)
    except (CroniterError, ValueError, KeyError, TypeError):
        return "is not a valid cron expression (minute hour day-of-month month day-of-week)"
    return None


def _every_hour(expression: str) -> bool:
    """True when the hour field matches all 24 hours (`*`, `*/1`, `0-23`...): cron skips a gap for those."""
    hours = croniter(expression).expanded[1]
    return hours == ["*"] or set(hours) >= set(range(24))


def _instant(wall: datetime, zone: ZoneInfo, skip_gap: bool) -> datetime | None:
    """The UTC instant of a local wall time: its first occurrence if it repeats; if it does not exist
    (a gap), None when skip_gap, else the first valid instant after the gap (the transition)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    if skip_gap:
        return None
    # fold=0 and fold=1 read the missing time with the offsets before and after the gap; the transition
    # lies between those two instants.
    low, high = sorted((first, wall.replace(tzinfo=zone, fold=1).astimezone(UTC)))
    after = high.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + timedelta(seconds=int((high - low).total_seconds()) // 2)
        if middle.astimezone(zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return high


DST_GAP, DST_REPEAT = "dst_gap", "dst_repeat"


def local_instant(day: date | None, at: time, zone_name: str, after: datetime) -> tuple[datetime, str | None]:
    """The UTC instant of `at` on `day` in the zone (with no day: the next such local time after `after`), by
    the DST rules above; with DST_GAP or DST_REPEAT when the local time fell in a gap or repeats that day."""
    zone = ZoneInfo(zone_name)
    if day is None:
        today = after.astimezone(zone).date()
        for candidate in (today, today + timedelta(days=1), today + timedelta(days=2)):
            instant, note = local_instant(candidate, at, zone_name, after)
            if instant > after:
                return instant, note
    wall = datetime.combine(day or after.astimezone(zone).date(), at)
    found = _instant(wall, zone, skip_gap=False)
    assert found is not None  # skip_gap=False always finds one
    if found.astimezone(zone).replace(tzinfo=None) != wall:
        return found, DST_GAP
    if wall.replace(tzinfo=zone, fold=1).astimezone(UTC) != found:
        return found, DST_REPEAT
    return found, None


class Recurrence:
    """The fire times of one schedule, as aware UTC datetimes, strictly after a given instant."""

    def __init__(
        self,
        cron: str | None,
        interval_seconds: int | None,
        tz: str = "UTC",
        start_at: datetime | None = None,
        end_at: datetime | None = None,
        anchor: datetime | None = None,
    ):
        if cron is not None and (reason := check_cron(cron)):
            raise ValueError(f"cron {cron!r} {reason}")
        self.cron = cron
        self.interval = interval_seconds
        self.zone = ZoneInfo(tz)
        self.start_at = start_at
        self.end_at = end_at
        self.anchor = start_at or anchor or datetime(2000, 1, 1, tzinfo=UTC)
        self.skip_gap = _every_hour(cron) if cron else False

    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after `moment` (and not before start_at), or None when there is none
        (after end_at, or a cron expression that never matches again)."""
        if self.start_at is not None and moment < self.start_at:
            moment = self.start_at - timedelta(microseconds=1)
        try:
            found = self._cron_after(moment) if self.cron else self._interval_after(moment)
        except OverflowError:  # past the year 9999
            return None
        if found is not None and self.end_at is not None and found > self.end_at:
            return None
        return found

    def _interval_after(self, moment: datetime) -> datetime:
        interval = self.interval
        if interval is None:  # one of UNCOMPUTABLE, as the arithmetic with None would have raised
            raise TypeError("a recurrence without a cron expression needs interval_seconds")
        elapsed = (moment - self.anchor).total_seconds()
        steps = int(elapsed // interval) + 1 if elapsed >= 0 else 0
        return self.anchor + timedelta(seconds=steps * interval)

    def _cron_after(self, moment: datetime) -> datetime | None:
        # Matched on naive local wall time, so that the DST rules above are ours, not croniter's.
        wall = moment.astimezone(self.zone).replace(tzinfo=None, microsecond=0)
        iterator = croniter(self.cron, wall, max_years_between_matches=9)
        for _ in range(MAX_SKIPS):
            try:
                candidate = iterator.get_next(datetime)
            except (CroniterBadDateError, OverflowError, ValueError):
                return None
            found = _instant(candidate, self.zone, self.skip_gap)
            if found is not None and found > moment:
                return found
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
    return Recurrence(
        schedule.get("cron"),
        schedule.get("interval_seconds"),
        schedule.get("timezone", "UTC"),
        schedule.get("start_at"),
        schedule.get("end_at"),
        schedule.get("created_at"),
    )


def check_periodicity(cron: str | None, interval_seconds: int | None, tz: str) -> dict[str, list[str]]:
    """Field errors of a periodicity, empty when it is valid."""
    errors: dict[str, list[str]] = {}
    if (cron is None) == (interval_seconds is None):
        errors["cron"] = ["give either cron or interval_seconds"]
    elif cron is not None and (reason := check_cron(cron)):
        errors["cron"] = [reason]
    if reason := check_timezone(tz):
        errors["timezone"] = [reason]
    return errors
