"""Quiet hours: a user's daily window, in their time zone, during which nothing non-urgent reaches them. A
delivery due inside it is deferred to the window's end (status `deferred`), never dropped.

A window is `{"start": "22:00", "end": "07:00", "days": ["mon", ..., "fri"]}`: it runs from `start` to `end`
local time, past midnight when `end` comes before `start`; `days` (all when absent) are the days on which a
window starts, so Friday's 22:00-07:00 window ends on Saturday morning. Its end is found with the schedules'
DST rules (notifier/recurrence.py): an end that falls in a DST gap is the first valid instant after it.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from ..recurrence import local_instant

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def quiet_until(quiet: dict | None, zone_name: str, now: datetime) -> datetime | None:
    """The end of the quiet window `now` falls in, as a UTC instant; None outside every window."""
    if not quiet:
        return None
    start, end = time.fromisoformat(quiet["start"]), time.fromisoformat(quiet["end"])
    days = set(quiet.get("days") or DAYS)
    local = now.astimezone(ZoneInfo(zone_name))
    today, moment = local.date(), local.time().replace(tzinfo=None)
    started_on = None
    if start < end:
        if start <= moment < end:
            started_on = today
    elif moment >= start:
        started_on = today
    elif moment < end:
        started_on = today - timedelta(days=1)
    if started_on is None or DAYS[started_on.weekday()] not in days:
        return None
    ends_on = started_on if start < end else started_on + timedelta(days=1)
    until, _ = local_instant(ends_on, end, zone_name, now)
    return until if until > now else None
