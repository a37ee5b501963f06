"""Cron expressions: parsing, the ticks they name, and a readable description.

A cron expression is the usual five fields, `minute hour day-of-month month day-of-week`,
parsed by Celery's own crontab parser — the one beat evaluates with — so anything this module
accepts is something beat can run, with the same semantics: a day matches when its month,
day of month AND day of week all match (Celery's rule; classic cron ORs the two day fields).

A tick is a wall-clock time in the schedule's timezone turned into an instant with `fold=0`:
- spring forward: 02:30 does not exist that day; it means the instant 02:30 would have been
  in the old offset (03:30 new time) — once. That is also when Celery's TzAwareCrontab fires.
- fall back: 02:30 happens twice; only the first (summer-time) one is a tick.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from celery.schedules import crontab

FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
# How far back/forward to look for a matching day: covers "29 Feb" (a leap day every 4 or
# 8 years) with room to spare.
SEARCH_DAYS = 366 * 9


class CronInvalid(ValueError):
    """The expression or timezone cannot be used; the message says why."""


def cron_parse(expression: str) -> crontab:
    """The Celery crontab for a five-field expression. Raises CronInvalid naming the field."""
    fields = (expression or "").split()
    if len(fields) != 5:
        raise CronInvalid(
            f"A cron expression has 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(fields)}: {expression!r}"
        )
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    parts = {
        "minute": minute,
        "hour": hour,
        "day_of_month": day_of_month,
        "month_of_year": month_of_year,
        "day_of_week": day_of_week,
    }
    for (key, value), label in zip(parts.items(), FIELD_NAMES, strict=True):
        try:
            crontab(**{key: value})
        except Exception as exc:  # Celery raises ValueError or its own ParseException
            raise CronInvalid(f"Invalid {label} field {value!r}: {str(exc).rstrip('.')}.") from None
    try:
        parsed = crontab(**parts)
    except ValueError as exc:
        raise CronInvalid(f"{expression!r}: {exc}") from None
    if not _any_day_matches(parsed):
        raise CronInvalid(f"{expression!r} never matches a real date.")
    return parsed


def _any_day_matches(parsed: crontab) -> bool:
    # 31 February and friends: months with that day must exist.
    day = date(2024, 1, 1)  # a leap year start; 8 years hold every weekday/date combination
    for _ in range(366 * 8):
        if _day_matches(parsed, day):
            return True
        day += timedelta(days=1)
    return False


def timezone_get(name: str) -> ZoneInfo:
    """The IANA zone `name` ("Europe/Berlin"). Raises CronInvalid for an unknown one."""
    if not name or name not in _zone_names():
        raise CronInvalid(f"Unknown timezone {name!r}; use an IANA name like Europe/Berlin.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronInvalid(f"Unknown timezone {name!r}; use an IANA name like Europe/Berlin.")


_ZONES: frozenset[str] | None = None


def _zone_names() -> frozenset[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones()) | {"UTC"}
    return _ZONES


def _day_matches(parsed: crontab, day: date) -> bool:
    return (
        day.month in parsed.month_of_year
        and day.day in parsed.day_of_month
        and day.isoweekday() % 7 in parsed.day_of_week
    )


def _day_ticks(parsed: crontab, day: date, tz: ZoneInfo) -> list[datetime]:
    """The day's ticks as UTC instants, sorted, duplicates (spring-forward) merged."""
    instants = {
        datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz).astimezone(UTC)
        for hour in parsed.hour
        for minute in parsed.minute
    }
    return sorted(instants)


def cron_latest_tick(parsed: crontab, tz: ZoneInfo, at: datetime) -> datetime | None:
    """The latest tick at or before `at` (UTC), or None if there is none in ~9 years.

    Costs up to 1,440 datetime conversions per matching day looked at (usually one)."""
    day = at.astimezone(tz).date() + timedelta(days=1)  # a nonexistent time may land a day on
    for _ in range(SEARCH_DAYS):
        if _day_matches(parsed, day):
            earlier = [t for t in _day_ticks(parsed, day, tz) if t <= at]
            if earlier:
                return earlier[-1]
        day -= timedelta(days=1)
    return None


def cron_next_ticks(parsed: crontab, tz: ZoneInfo, after: datetime, count: int) -> list[datetime]:
    """The next `count` ticks strictly after `after`, as UTC instants."""
    found: list[datetime] = []
    day = after.astimezone(tz).date() - timedelta(days=1)
    for _ in range(SEARCH_DAYS):
        if _day_matches(parsed, day):
            for tick in _day_ticks(parsed, day, tz):
                if tick > after and (not found or tick > found[-1]):
                    found.append(tick)
                    if len(found) == count:
                        return found
        day += timedelta(days=1)
    return found


def cron_describe(expression: str, tz_name: str) -> str:
    """ "0 2 * * 1-5", "Europe/Berlin" → "At 02:00, Monday through Friday (Europe/Berlin)"."""
    from cron_descriptor import Options, get_description

    options = Options()
    options.use_24hour_time_format = True
    options.verbose = False
    try:
        text = get_description(expression, options)
    except Exception:  # cron-descriptor rejects some forms Celery accepts (names, etc.)
        text = expression
    return f"{text} ({tz_name})"
