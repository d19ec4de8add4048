"""DST days driven through the tick (a tick every 5 minutes over the local day): every local
wall-clock time fires exactly once. A time the clocks skip fires once, shifted forward by
the gap (02:30 -> 03:30; an hourly 02:00 lands on 03:00 and fires once with it); a time that
exists twice fires once, at its first occurrence. Logical dates and data intervals follow:
each interval runs from the previous firing to this one, with no gap and no overlap.
Expectations are written out by hand, independent of the cron engine."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs import scheduling
from runs.models import WorkflowRun
from tests.harness import Team
from workflows.services import apply_workflow

TICK = dt.timedelta(minutes=5)


def hours(day: str, offset: str, wanted: range | tuple[int, ...]) -> list[str]:
    return [f"{day}T{h:02d}:00:00{offset}" for h in wanted]


BERLIN_SPRING = hours("2026-03-29", "+01:00", (0, 1)) + hours("2026-03-29", "+02:00", range(3, 24))
BERLIN_FALL = hours("2026-10-25", "+02:00", (0, 1, 2)) + hours("2026-10-25", "+01:00", range(3, 24))
NEW_YORK_SPRING = hours("2026-03-08", "-05:00", (0, 1)) + hours(
    "2026-03-08", "-04:00", range(3, 24)
)
NEW_YORK_FALL = hours("2026-11-01", "-04:00", (0, 1)) + hours("2026-11-01", "-05:00", range(2, 24))

CASES = [
    # timezone, day, cron, [(interval start, interval end = fire time)] in local ISO
    ("Europe/Berlin", "2026-03-29", "0 * * * *", BERLIN_SPRING, "2026-03-28T23:00:00+01:00"),
    ("Europe/Berlin", "2026-10-25", "0 * * * *", BERLIN_FALL, "2026-10-24T23:00:00+02:00"),
    ("America/New_York", "2026-03-08", "0 * * * *", NEW_YORK_SPRING, "2026-03-07T23:00:00-05:00"),
    ("America/New_York", "2026-11-01", "0 * * * *", NEW_YORK_FALL, "2026-10-31T23:00:00-04:00"),
    # Daily at a time the clocks skip or pass twice that day.
    ("Europe/Berlin", "2026-03-29", "30 2 * * *", ["2026-03-29T03:30:00+02:00"],
     "2026-03-28T02:30:00+01:00"),
    ("Europe/Berlin", "2026-10-25", "30 2 * * *", ["2026-10-25T02:30:00+02:00"],
     "2026-10-24T02:30:00+02:00"),
    ("America/New_York", "2026-03-08", "30 2 * * *", ["2026-03-08T03:30:00-04:00"],
     "2026-03-07T02:30:00-05:00"),
    ("America/New_York", "2026-11-01", "30 1 * * *", ["2026-11-01T01:30:00-04:00"],
     "2026-10-31T01:30:00-04:00"),
]  # fmt: skip


@pytest.mark.parametrize(("tz", "day", "cron", "fires", "first_start"), CASES)
def test_it_fires_each_local_time_once_on_a_dst_day(
    team: Team, tz: str, day: str, cron: str, fires: list[str], first_start: str
) -> None:
    zone = zoneinfo.ZoneInfo(tz)
    midnight = dt.datetime.fromisoformat(day).replace(tzinfo=zone)
    next_midnight = (midnight + dt.timedelta(days=1, hours=2)).replace(hour=0)
    now = (midnight - dt.timedelta(minutes=30)).astimezone(dt.UTC)  # UTC: real time steps
    data = {
        "name": "dst",
        "schedule": {"cron": cron, "timezone": tz, "catchup": "none"},
        "tasks": {"only": {"type": "noop"}},
    }
    with tenant_scope([team.tenant]):
        workflow = apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=data, now=now)
    while now < next_midnight:
        scheduling.tick(now=now)
        now += TICK
    runs = WorkflowRun.objects.dangerously_unscoped().filter(workflow=workflow.workflow)
    rows = runs.order_by("logical_date").values_list(
        "logical_date", "data_interval_start", "data_interval_end"
    )
    local = [tuple(v.astimezone(zone).isoformat() if v else None for v in row) for row in rows]
    starts = [first_start, *fires[:-1]]
    assert local == [(start, start, end) for start, end in zip(starts, fires, strict=True)]
