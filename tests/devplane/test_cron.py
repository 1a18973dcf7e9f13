from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from devplane.cron import CronError, CronSchedule

pytestmark = pytest.mark.unit

UTC_ZONE = ZoneInfo("Etc/UTC")
PARIS = ZoneInfo("Europe/Paris")


def runs(expression: str, start: datetime, count: int = 3, tz: ZoneInfo = UTC_ZONE) -> list[str]:
    schedule = CronSchedule.parse(expression, tz)
    found = []
    for _ in range(count):
        start = schedule.next_after(start)
        found.append(start.isoformat())
    return found


def test_every_fifteen_minutes() -> None:
    start = datetime(2026, 1, 1, 10, 7, 30, tzinfo=UTC)
    assert runs("*/15 * * * *", start) == [
        "2026-01-01T10:15:00+00:00",
        "2026-01-01T10:30:00+00:00",
        "2026-01-01T10:45:00+00:00",
    ]


def test_the_next_run_is_strictly_after_the_given_moment() -> None:
    start = datetime(2026, 1, 1, 10, 15, tzinfo=UTC)
    assert runs("15 10 * * *", start, 1) == ["2026-01-02T10:15:00+00:00"]


def test_weekdays_by_name_and_ranges() -> None:
    friday = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert runs("0 9 * * mon-fri", friday) == [
        "2026-01-05T09:00:00+00:00",
        "2026-01-06T09:00:00+00:00",
        "2026-01-07T09:00:00+00:00",
    ]


def test_lists_steps_in_ranges_and_month_names() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert runs("0 8-16/4 1 jan,jul *", start, 4) == [
        "2026-01-01T08:00:00+00:00",
        "2026-01-01T12:00:00+00:00",
        "2026-01-01T16:00:00+00:00",
        "2026-07-01T08:00:00+00:00",
    ]


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # Vixie cron and Kubernetes: the 13th of the month, and every Friday.
    start = datetime(2026, 3, 1, tzinfo=UTC)
    assert runs("0 0 13 * fri", start) == [
        "2026-03-06T00:00:00+00:00",
        "2026-03-13T00:00:00+00:00",
        "2026-03-20T00:00:00+00:00",
    ]


def test_sunday_is_zero_or_seven() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert runs("0 0 * * 0", start) == runs("0 0 * * 7", start) == runs("@weekly", start)


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("@hourly", "2026-05-05T11:00:00+00:00"),
        ("@daily", "2026-05-06T00:00:00+00:00"),
        ("@midnight", "2026-05-06T00:00:00+00:00"),
        ("@monthly", "2026-06-01T00:00:00+00:00"),
        ("@yearly", "2027-01-01T00:00:00+00:00"),
        ("@annually", "2027-01-01T00:00:00+00:00"),
    ],
)
def test_macros(macro: str, expected: str) -> None:
    assert runs(macro, datetime(2026, 5, 5, 10, 30, tzinfo=UTC), 1) == [expected]


def test_february_29th_waits_for_a_leap_year() -> None:
    assert runs("0 0 29 2 *", datetime(2026, 1, 1, tzinfo=UTC), 1) == ["2028-02-29T00:00:00+00:00"]


def test_times_are_wall_clock_times_in_the_time_zone() -> None:
    start = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    [first] = runs("0 9 * * *", start, 1, PARIS)
    assert first == "2026-01-11T09:00:00+01:00"
    assert datetime.fromisoformat(first).astimezone(UTC).hour == 8


def test_a_time_skipped_by_daylight_saving_does_not_fire_that_day() -> None:
    # Paris jumps from 02:00 to 03:00 on 2026-03-29.
    start = datetime(2026, 3, 28, 12, 0, tzinfo=PARIS)
    assert runs("30 2 * * *", start, 2, PARIS) == [
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_a_time_repeated_by_daylight_saving_fires_once() -> None:
    # Paris repeats 02:00-03:00 on 2026-10-25.
    start = datetime(2026, 10, 25, 0, 0, tzinfo=PARIS)
    assert runs("30 2 * * *", start, 2, PARIS) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("* * * *", "has 4 fields"),
        ("* * * * * *", "has 6 fields"),
        ("60 * * * *", "outside 0-59"),
        ("* 24 * * *", "outside 0-23"),
        ("* * 0 * *", "outside 1-31"),
        ("* * * 13 *", "outside 1-12"),
        ("* * * * 8", "outside 0-7"),
        ("*/0 * * * *", "step"),
        ("5-1 * * * *", "backwards"),
        ("* * * foo *", "not a number"),
        ("TZ=UTC * * * * *", "timeZone"),
        ("@reboot", "has 1 fields"),
    ],
)
def test_refuses_what_kubernetes_refuses(expression: str, problem: str) -> None:
    with pytest.raises(CronError, match=problem):
        CronSchedule.parse(expression, UTC_ZONE)


def test_a_schedule_that_can_never_fire_says_so() -> None:
    schedule = CronSchedule.parse("0 0 31 2 *", UTC_ZONE)
    with pytest.raises(CronError, match="never fires"):
        schedule.next_after(datetime(2026, 1, 1, tzinfo=UTC))
