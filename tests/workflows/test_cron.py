"""The cron engine: fire times in a timezone, DST days, data intervals."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo

import pytest
from croniter import croniter

from workflows.cron import fire_times, interval_ending, intervals_between, next_fire, previous_fire

UTC = dt.UTC


def local(timezone: str, cron: str, after: dt.datetime, count: int) -> list[str]:
    zone = zoneinfo.ZoneInfo(timezone)
    return [
        f.astimezone(zone).isoformat(timespec="minutes")
        for f in itertools.islice(fire_times(cron, timezone, after), count)
    ]


def test_it_agrees_with_croniter_away_from_dst() -> None:
    start = dt.datetime(2026, 5, 1, 12, 7, tzinfo=UTC)
    for cron in ("*/5 * * * *", "0 2 * * *", "15 9 * * 1-5", "0 0 1 * *"):
        expected = croniter(cron, start).all_next(dt.datetime)
        assert list(itertools.islice(fire_times(cron, "UTC", start), 20)) == [
            next(expected) for _ in range(20)
        ]


@pytest.mark.parametrize(
    ("timezone", "cron", "after", "expected"),
    [
        # Spring forward: 02:30 does not exist that day: once, shifted by the gap.
        (
            "Europe/Berlin", "30 2 * * *", dt.datetime(2026, 3, 28, 12, tzinfo=UTC),
            ["2026-03-29T03:30+02:00", "2026-03-30T02:30+02:00"],
        ),
        (
            "America/New_York", "30 2 * * *", dt.datetime(2026, 3, 7, 12, tzinfo=UTC),
            ["2026-03-08T03:30-04:00", "2026-03-09T02:30-04:00"],
        ),
        # Fall back: 02:30 (Berlin) / 01:30 (New York) happen twice: once, the first.
        (
            "Europe/Berlin", "30 2 * * *", dt.datetime(2026, 10, 24, 12, tzinfo=UTC),
            ["2026-10-25T02:30+02:00", "2026-10-26T02:30+01:00"],
        ),
        (
            "America/New_York", "30 1 * * *", dt.datetime(2026, 10, 31, 12, tzinfo=UTC),
            ["2026-11-01T01:30-04:00", "2026-11-02T01:30-05:00"],
        ),
        # Hourly across both changes: each wall-clock hour once.
        (
            "Europe/Berlin", "0 * * * *", dt.datetime(2026, 3, 28, 23, 30, tzinfo=UTC),
            ["2026-03-29T01:00+01:00", "2026-03-29T03:00+02:00", "2026-03-29T04:00+02:00"],
        ),
        (
            "Europe/Berlin", "0 * * * *", dt.datetime(2026, 10, 24, 23, 30, tzinfo=UTC),
            ["2026-10-25T02:00+02:00", "2026-10-25T03:00+01:00", "2026-10-25T04:00+01:00"],
        ),
    ],
)  # fmt: skip
def test_it_fires_each_local_time_exactly_once_on_dst_days(
    timezone: str, cron: str, after: dt.datetime, expected: list[str]
) -> None:
    assert local(timezone, cron, after, len(expected)) == expected


def test_it_does_not_fire_a_repeated_time_again_when_asked_inside_the_repeat() -> None:
    # 00:40 UTC is 02:40 CEST, after the first 02:30; at 01:10 UTC (02:10 CET, the
    # second pass) the next firing is the next day's.
    inside = dt.datetime(2026, 10, 25, 1, 10, tzinfo=UTC)
    assert next_fire("30 2 * * *", "Europe/Berlin", inside) == dt.datetime(
        2026, 10, 26, 1, 30, tzinfo=UTC
    )


def test_it_gives_the_interval_a_firing_closes() -> None:
    fire = dt.datetime(2026, 3, 2, 1, tzinfo=UTC)  # 02:00 Berlin
    assert interval_ending("0 2 * * *", "Europe/Berlin", fire) == (
        dt.datetime(2026, 3, 1, 1, tzinfo=UTC),
        fire,
    )
    assert previous_fire("0 2 * * *", "Europe/Berlin", fire) == dt.datetime(
        2026, 3, 1, 1, tzinfo=UTC
    )


def test_it_lists_the_intervals_whose_start_is_in_a_range() -> None:
    found = intervals_between(
        "0 0 * * *",
        "UTC",
        dt.datetime(2026, 1, 1, tzinfo=UTC),
        dt.datetime(2026, 1, 30, tzinfo=UTC),
    )
    assert len(found) == 30
    assert found[0] == (dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 2, tzinfo=UTC))
    assert all(a[1] == b[0] for a, b in itertools.pairwise(found))
    assert found[-1][0] == dt.datetime(2026, 1, 30, tzinfo=UTC)


def test_it_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="naive"):
        next_fire("0 * * * *", "UTC", dt.datetime(2026, 1, 1))
