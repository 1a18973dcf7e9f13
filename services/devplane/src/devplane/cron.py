"""Kubernetes CronJob schedules: the five-field cron syntax Kubernetes accepts, in a time zone.

Fields are minute, hour, day of month, month and day of week, each a `*`, a value, a range
`a-b`, a step `*/n` or `a-b/n`, or a comma list of those; months and days take their
three-letter names, Sunday is 0 or 7, and the macros @yearly, @annually, @monthly, @weekly,
@daily, @midnight and @hourly are accepted. As in Vixie cron (and Kubernetes), when both day
of month and day of week are restricted a day matching either one fires.

Times are wall-clock times in the job's `timeZone`: a time skipped by a daylight-saving jump
does not fire that day, and a time repeated by one fires once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS: Final = {
    name: i
    for i, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_DAYS: Final = {name: i for i, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_SEARCH_DAYS: Final = 366 * 8  # Feb 29 on a given weekday can be years away


class CronError(ValueError):
    """A schedule Kubernetes would refuse (and devplane does too)."""


def _value(text: str, low: int, high: int, names: dict[str, int], field: str) -> int:
    number = names.get(text.lower()) if names else None
    if number is None:
        if not text.isdigit():
            raise CronError(f"{field}: {text!r} is not a number{' or a name' if names else ''}")
        number = int(text)
    if not low <= number <= high:
        raise CronError(f"{field}: {number} is outside {low}-{high}")
    return number


def _field(
    text: str, low: int, high: int, field: str, names: dict[str, int] | None = None
) -> frozenset[int]:
    """The values one cron field allows."""
    allowed: set[int] = set()
    for part in text.split(","):
        expression, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if expression == "*":
            first, last = low, high
        elif "-" in expression:
            start, _, end = expression.partition("-")
            first = _value(start, low, high, names or {}, field)
            last = _value(end, low, high, names or {}, field)
            if first > last:
                raise CronError(f"{field}: range {expression!r} runs backwards")
        else:
            first = _value(expression, low, high, names or {}, field)
            last = high if step_text else first
        allowed.update(range(first, last + 1, step))
    return frozenset(allowed)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed schedule; `next_after(moment)` is its next firing time."""

    expression: str
    tz: ZoneInfo
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str, tz: ZoneInfo) -> CronSchedule:
        text = MACROS.get(expression.strip().lower(), expression.strip())
        if text.upper().startswith(("TZ=", "CRON_TZ=")):
            raise CronError("set the time zone with `timeZone`, not in the schedule")
        fields = text.split()
        if len(fields) != 5:
            raise CronError(
                f"{expression!r} has {len(fields)} fields; Kubernetes takes 5 "
                "(minute hour day-of-month month day-of-week) or a macro like @daily"
            )
        minute, hour, day, month, weekday = fields
        return cls(
            expression=expression,
            tz=tz,
            minutes=_field(minute, 0, 59, "minute"),
            hours=_field(hour, 0, 23, "hour"),
            days=_field(day, 1, 31, "day of month"),
            months=_field(month, 1, 12, "month", _MONTHS),
            # 7 is Sunday too; fold it onto 0.
            weekdays=frozenset(d % 7 for d in _field(weekday, 0, 7, "day of week", _DAYS)),
            any_day=day.startswith("*"),
            any_weekday=weekday.startswith("*"),
        )

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_day = day.day in self.days
        by_weekday = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return by_day and by_weekday
        return by_day or by_weekday

    def next_after(self, moment: datetime) -> datetime:
        """The first firing strictly after `moment` (an aware datetime), in the job's zone."""
        now_utc = moment.astimezone(UTC)
        local = moment.astimezone(self.tz).replace(tzinfo=None, second=0, microsecond=0)
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        for offset in range(_SEARCH_DAYS):
            day = local.date() + timedelta(days=offset)
            if not self._day_matches(day):
                continue
            for hour in hours:
                if offset == 0 and hour < local.hour:
                    continue
                for minute in minutes:
                    wall = datetime.combine(day, time(hour, minute))
                    if wall < local:
                        continue
                    fired = wall.replace(tzinfo=self.tz)
                    if _skipped_by_dst(fired) or fired.astimezone(UTC) <= now_utc:
                        continue
                    return fired
        raise CronError(f"{self.expression!r} never fires")


def _skipped_by_dst(moment: datetime) -> bool:
    """True for a wall time that does not exist (the clock jumped over it)."""
    round_trip = moment.astimezone(UTC).astimezone(moment.tzinfo)
    return round_trip.replace(tzinfo=None) != moment.replace(tzinfo=None)
