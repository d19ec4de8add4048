"""Cron in a timezone: when a schedule fires, and which data interval each firing covers.
The one cron engine for the scheduler tick, catch-up, backfills and the "next fire times"
API (DESIGN.md section 6, "Schedules"). Pure: no Django, no database.

The rules, as Airflow users know them (its classic cron data intervals):
- A cron expression is evaluated in the workflow's timezone, on local wall-clock time.
- Each firing closes a data interval: it runs at the interval's end and covers
  [previous firing, this firing). The run's logical date is the interval's start, so
  `0 2 * * *` firing at 02:00 on 2 March has logical date (`ds`) 1 March.
- DST: every local wall-clock time fires exactly once. A time that does not exist (the
  clocks spring forward over it) fires once, shifted forward by the gap, as Airflow and
  pendulum do (02:30 on a day Berlin skips 02:00-03:00 fires at 03:30 CEST); when that
  lands on the instant of another firing (an hourly cron's 02:00 and 03:00), it fires
  once. A time that exists twice (the clocks fall back) fires once, at its first
  occurrence.
All datetimes in and out are timezone-aware; results are in UTC."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator

from croniter import croniter

__all__ = [
    "Interval",
    "fire_times",
    "interval_ending",
    "intervals_between",
    "next_fire",
    "previous_fire",
]

UTC = dt.UTC
Interval = tuple[dt.datetime, dt.datetime]  # [start, end): start is the logical date
# Far enough for any cron that can fire at all (Feb 29 on a Monday: 28 years at most).
_SEARCH_LIMIT = 10_000


def _zone(timezone: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(timezone)


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError(f"{value!r} is naive: cron times must be timezone-aware")
    return value


def _instant(wall: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The UTC instant of a local wall-clock time: its first occurrence when it exists
    twice; shifted forward by the gap when it does not exist (fold=0 keeps the offset in
    force before the change, which is exactly that shift)."""
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _walls(
    cron: str, zone: zoneinfo.ZoneInfo, start: dt.datetime, forward: bool
) -> Iterator[dt.datetime]:
    local = start.astimezone(zone).replace(tzinfo=None)
    it = croniter(cron, local)
    for _ in range(_SEARCH_LIMIT):
        yield it.get_next(dt.datetime) if forward else it.get_prev(dt.datetime)


def fire_times(cron: str, timezone: str, after: dt.datetime) -> Iterator[dt.datetime]:
    """Every firing strictly after `after`, in order (an endless iterator)."""
    zone = _zone(timezone)
    last = _aware(after).astimezone(UTC)
    # Start a little before `after` in wall-clock terms: a local time passed twice (fall
    # back) must not be found again once its first occurrence is behind us, and the
    # filter below drops what is not strictly later.
    for wall in _walls(cron, zone, last - dt.timedelta(hours=3), forward=True):
        instant = _instant(wall, zone)
        if instant > last:
            last = instant
            yield instant


def next_fire(cron: str, timezone: str, after: dt.datetime) -> dt.datetime:
    """The first firing strictly after `after`."""
    return next(fire_times(cron, timezone, after))


def previous_fire(cron: str, timezone: str, before: dt.datetime) -> dt.datetime:
    """The last firing strictly before `before`."""
    zone = _zone(timezone)
    limit = _aware(before).astimezone(UTC)
    for wall in _walls(cron, zone, limit + dt.timedelta(hours=3), forward=False):
        instant = _instant(wall, zone)
        if instant < limit:
            return instant
    raise ValueError(f"{cron!r} never fired before {before.isoformat()}")


def interval_ending(cron: str, timezone: str, fire: dt.datetime) -> Interval:
    """The data interval that the firing at `fire` closes: [previous firing, fire)."""
    return previous_fire(cron, timezone, fire), _aware(fire).astimezone(UTC)


def intervals_between(
    cron: str, timezone: str, start: dt.datetime, end: dt.datetime
) -> list[Interval]:
    """The data intervals whose start (logical date) lies in [start, end], oldest first:
    what a backfill from `start` to `end` runs, or what catch-up finds missed."""
    start, end = _aware(start).astimezone(UTC), _aware(end).astimezone(UTC)
    found: list[Interval] = []
    first = next_fire(cron, timezone, start - dt.timedelta(microseconds=1))
    if first > end:
        return found
    previous = first
    for fire in fire_times(cron, timezone, first):
        found.append((previous, fire))
        if fire > end:
            break
        previous = fire
    return found
