"""Quiet hours (services/quiet_hours.py): when a window holds a delivery, and until when."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from notifier.services.quiet_hours import quiet_until

NIGHTS = {"start": "22:00", "end": "07:00"}
WEEKNIGHTS = {"start": "22:00", "end": "07:00", "days": ["mon", "tue", "wed", "thu", "fri"]}
LUNCH = {"start": "12:00", "end": "13:30"}


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("quiet", "zone", "now", "until"),
    [
        (NIGHTS, "UTC", utc(2026, 12, 3, 23, 0), utc(2026, 12, 4, 7, 0)),  # before midnight: ends tomorrow
        (NIGHTS, "UTC", utc(2026, 12, 4, 6, 59), utc(2026, 12, 4, 7, 0)),  # after midnight: ends today
        (NIGHTS, "UTC", utc(2026, 12, 4, 7, 0), None),  # its end is outside
        (NIGHTS, "UTC", utc(2026, 12, 3, 21, 59), None),
        (NIGHTS, "UTC", utc(2026, 12, 3, 22, 0), utc(2026, 12, 4, 7, 0)),  # its start is inside
        (LUNCH, "UTC", utc(2026, 12, 3, 12, 30), utc(2026, 12, 3, 13, 30)),
        (LUNCH, "UTC", utc(2026, 12, 3, 13, 30), None),
        # 23:00 in Tokyo is 14:00 UTC.
        (NIGHTS, "Asia/Tokyo", utc(2026, 12, 3, 14, 0), utc(2026, 12, 3, 22, 0)),
        (NIGHTS, "Asia/Tokyo", utc(2026, 12, 3, 23, 0), None),  # 08:00 in Tokyo
        # Weeknights: Friday's window ends Saturday morning; none starts on Saturday (2026-12-05).
        (WEEKNIGHTS, "UTC", utc(2026, 12, 5, 3, 0), utc(2026, 12, 5, 7, 0)),
        (WEEKNIGHTS, "UTC", utc(2026, 12, 5, 23, 0), None),
        (WEEKNIGHTS, "UTC", utc(2026, 12, 6, 3, 0), None),  # Sunday early: Saturday's window, which is off
        (WEEKNIGHTS, "UTC", utc(2026, 12, 7, 22, 30), utc(2026, 12, 8, 7, 0)),  # Monday night
        # Berlin springs forward at 02:00 on 2026-03-29: a window ending 02:30 ends when the clocks jump.
        ({"start": "01:00", "end": "02:30"}, "Europe/Berlin", utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 0)),
        # ...and falls back on 2026-10-25: 02:30 comes twice; the window ends at the first (CEST).
        ({"start": "01:00", "end": "02:30"}, "Europe/Berlin", utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 0, 30)),
        (None, "UTC", utc(2026, 12, 3, 23, 0), None),
    ],
)
def test_a_delivery_inside_a_window_waits_for_its_end(quiet, zone, now, until):
    assert quiet_until(quiet, zone, now) == until
