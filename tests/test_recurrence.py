"""Fire times: cron in a time zone with the DST rules, and intervals."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise

import pytest

from notifier.recurrence import DST_GAP, DST_REPEAT, Recurrence, check_periodicity, local_instant


def local_times(recurrence: Recurrence, after: datetime, count: int) -> list[str]:
    return [recurrence.local(t).isoformat() for t in recurrence.preview(after, count)]


def test_cron_follows_the_zone():
    tokyo = Recurrence("0 9 * * *", None, "Asia/Tokyo")
    assert [t.isoformat() for t in tokyo.preview(datetime(2026, 1, 1, tzinfo=UTC), 2)] == [
        "2026-01-02T00:00:00+00:00",
        "2026-01-03T00:00:00+00:00",
    ]


@pytest.mark.parametrize(
    "zone, after, expected",
    [
        # spring forward: 02:30 does not exist that night and fires once at the first valid instant (03:00)
        (
            "Europe/Berlin",
            datetime(2026, 3, 27, 12, tzinfo=UTC),
            ["2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
        ),
        (
            "America/New_York",
            datetime(2026, 3, 7, 12, tzinfo=UTC),
            ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"],
        ),
        # fall back: 02:30 (Berlin) / 01:30 (New York) happen twice that night and fire once, the first time
        (
            "Europe/Berlin",
            datetime(2026, 10, 23, 12, tzinfo=UTC),
            ["2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
        ),
    ],
)
def test_daily_cron_across_dst(zone, after, expected):
    cron = "30 1 * * *" if zone == "America/New_York" and after.month == 10 else "30 2 * * *"
    assert local_times(Recurrence(cron, None, zone), after, 3) == expected


def test_new_york_fall_back_fires_once():
    recurrence = Recurrence("30 1 * * *", None, "America/New_York")
    assert local_times(recurrence, datetime(2026, 10, 31, 12, tzinfo=UTC), 3) == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
        "2026-11-03T01:30:00-05:00",
    ]


def test_half_hourly_cron_skips_the_gap_and_the_repeated_hour():
    spring = Recurrence("*/30 * * * *", None, "Europe/Berlin")
    assert local_times(spring, datetime(2026, 3, 29, 0, 15, tzinfo=UTC), 3) == [
        "2026-03-29T01:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:30:00+02:00",
    ]
    autumn = Recurrence("*/30 * * * *", None, "Europe/Berlin")
    assert local_times(autumn, datetime(2026, 10, 24, 23, 45, tzinfo=UTC), 4) == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T03:30:00+01:00",
    ]


def test_interval_is_real_time_across_dst():
    anchor = datetime(2026, 10, 24, 23, tzinfo=UTC)
    hourly = Recurrence(None, 3600, "Europe/Berlin", anchor=anchor)
    times = hourly.preview(anchor, 4)
    assert [b - a for a, b in pairwise(times)] == [timedelta(hours=1)] * 3
    assert local_times(hourly, anchor, 3) == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]


def test_start_and_end_bound_the_firings():
    start = datetime(2026, 5, 1, tzinfo=UTC)
    bounded = Recurrence("0 * * * *", None, "UTC", start_at=start, end_at=start + timedelta(hours=2))
    assert bounded.preview(datetime(2026, 1, 1, tzinfo=UTC), 5) == [
        start,
        start + timedelta(hours=1),
        start + timedelta(hours=2),
    ]


@pytest.mark.parametrize(
    "cron, interval, zone, field",
    [
        ("61 * * * *", None, "UTC", "cron"),
        ("not cron", None, "UTC", "cron"),
        (None, None, "UTC", "cron"),
        ("* * * * *", 60, "UTC", "cron"),
        ("* * * * *", None, "Mars/Base", "timezone"),
    ],
)
def test_invalid_periodicity_names_the_field(cron, interval, zone, field):
    assert field in check_periodicity(cron, interval, zone)


@pytest.mark.parametrize("cron", ["32 * * * *", "32 0-23 * * *", "32 */1 * * *"])
def test_an_every_hour_job_skips_the_spring_forward_gap(cron):
    """The cron convention: a job whose hour field covers every hour does not run in the missing hour."""
    recurrence = Recurrence(cron, None, "Europe/Berlin")
    assert local_times(recurrence, datetime(2026, 3, 29, 0, tzinfo=UTC), 3) == [
        "2026-03-29T01:32:00+01:00",
        "2026-03-29T03:32:00+02:00",
        "2026-03-29T04:32:00+02:00",
    ]


def test_a_fixed_hour_job_fires_once_at_the_end_of_the_gap():
    """`0 2,3`: 02:00 does not exist that night and moves to 03:00, where the 03:00 firing is: once."""
    recurrence = Recurrence("0 2,3 * * *", None, "Europe/Berlin")
    assert local_times(recurrence, datetime(2026, 3, 28, 12, tzinfo=UTC), 3) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:00:00+02:00",
        "2026-03-30T03:00:00+02:00",
    ]
    shifted = Recurrence("45 1-3 * * *", None, "Europe/Berlin")
    assert local_times(shifted, datetime(2026, 3, 29, 0, tzinfo=UTC), 3) == [
        "2026-03-29T01:45:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:45:00+02:00",
    ]


def test_an_every_hour_job_fires_the_repeated_hour_once():
    recurrence = Recurrence("32 * * * *", None, "Europe/Berlin")
    assert local_times(recurrence, datetime(2026, 10, 24, 23, tzinfo=UTC), 3) == [
        "2026-10-25T01:32:00+02:00",
        "2026-10-25T02:32:00+02:00",
        "2026-10-25T03:32:00+01:00",
    ]


def test_day_of_month_and_day_of_week_either_matches():
    """Both restricted (and `*/10` is a restriction): a day matching either fires."""
    recurrence = Recurrence("0 0 */10 * 1", None, "UTC")
    days = [t.strftime("%a %d") for t in recurrence.preview(datetime(2026, 6, 1, 12, tzinfo=UTC), 5)]
    assert days == ["Mon 08", "Thu 11", "Mon 15", "Sun 21", "Mon 22"]
    only_days = Recurrence("0 0 1,15 * *", None, "UTC")
    assert [t.day for t in only_days.preview(datetime(2026, 6, 1, 12, tzinfo=UTC), 2)] == [15, 1]


def test_a_cron_that_never_matches_has_no_next_time():
    assert Recurrence("0 0 31 2 *", None, "UTC").next_after(datetime(2026, 1, 1, tzinfo=UTC)) is None
    assert Recurrence(None, 3600, "UTC").next_after(datetime(9999, 12, 31, 23, 30, tzinfo=UTC)) is None


@pytest.mark.parametrize(
    "cron",
    [
        "* * * * * *",
        "0 0 1 1 * 2026",
        "0 0 0 1 1 * 2026",
        "@daily",
        "@reboot",
        "0 0 * * 1\n",
        "* * * *",
        "0 0 1 1 " + "1," * 200 + "1",
        "H * * * *",
    ],
)
def test_only_five_field_crons_are_accepted(cron):
    assert "cron" in check_periodicity(cron, None, "UTC")


@pytest.mark.parametrize(
    "zone",
    [
        "America",
        "Europe",
        "x" * 300,
        "../../etc/passwd",
        "/etc/localtime",
        "UTC\x00",
        "",
        "europe/berlin",
        "posixrules",
    ],
)
def test_only_zones_of_the_database_are_accepted(zone):
    assert "timezone" in check_periodicity("* * * * *", None, zone)


# --- delivery at a recipient's local time (deliver_at_local) ---

AFTER = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("day", "at", "zone", "instant", "note"),
    [
        (date(2026, 12, 24), time(9, 0), "Asia/Tokyo", datetime(2026, 12, 24, 0, 0, tzinfo=UTC), None),
        (date(2026, 12, 24), time(9, 0), "America/New_York", datetime(2026, 12, 24, 14, 0, tzinfo=UTC), None),
        (date(2026, 7, 1), time(9, 0), "America/New_York", datetime(2026, 7, 1, 13, 0, tzinfo=UTC), None),
        # Spring forward in Berlin: 02:30 does not exist; sent when the clocks jump (03:00 CEST).
        (date(2026, 3, 29), time(2, 30), "Europe/Berlin", datetime(2026, 3, 29, 1, 0, tzinfo=UTC), DST_GAP),
        # Fall back: 02:30 comes twice; sent at the first (CEST).
        (date(2026, 10, 25), time(2, 30), "Europe/Berlin", datetime(2026, 10, 25, 0, 30, tzinfo=UTC), DST_REPEAT),
        (date(2026, 10, 25), time(3, 30), "Europe/Berlin", datetime(2026, 10, 25, 2, 30, tzinfo=UTC), None),
        # Lord Howe moves its clocks by 30 minutes.
        (date(2026, 10, 4), time(2, 15), "Australia/Lord_Howe", datetime(2026, 10, 3, 15, 30, tzinfo=UTC), DST_GAP),
    ],
)
def test_a_local_time_on_a_day_is_one_instant_by_the_dst_rules(day, at, zone, instant, note):
    assert local_instant(day, at, zone, AFTER) == (instant, note)


@pytest.mark.parametrize(
    ("after", "instant"),
    [
        (datetime(2026, 12, 2, 23, 0, tzinfo=UTC), datetime(2026, 12, 3, 0, 0, tzinfo=UTC)),  # 08:00 in Tokyo
        (datetime(2026, 12, 3, 0, 0, tzinfo=UTC), datetime(2026, 12, 4, 0, 0, tzinfo=UTC)),  # 09:00 exactly: next
        (datetime(2026, 12, 3, 1, 0, tzinfo=UTC), datetime(2026, 12, 4, 0, 0, tzinfo=UTC)),  # 10:00: tomorrow
    ],
)
def test_a_local_time_without_a_day_is_the_next_one(after, instant):
    assert local_instant(None, time(9, 0), "Asia/Tokyo", after) == (instant, None)
