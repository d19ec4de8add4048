"""The spec keys of alerting (`sla`, a task's `sla`, `notify`) and of datasets (`inlets`,
`outlets`) are checked with their paths."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.errors import Invalid
from workflows.validation import validate_spec

SCHEDULE = {"cron": "0 2 * * *", "timezone": "Europe/Berlin"}


def errors(spec: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(Invalid) as caught:
        validate_spec(spec)
    return dict(caught.value.errors)


def spec(**top: Any) -> dict[str, Any]:
    return {"name": "wf", "tasks": {"a": {"type": "noop", **top.pop("task", {})}}, **top}


@pytest.mark.parametrize("key", ["inlets", "outlets"])
def test_datasets_are_names_or_uris_without_templates(key: str) -> None:
    validate_spec(spec(task={key: ["s3://lake/sales", "warehouse.sales_daily"]}))
    found = errors(spec(task={key: ["s3://lake/{{ ds }}"]}))
    assert list(found) == [f"tasks.a.{key}[0]"]
    assert "no templates" in found[f"tasks.a.{key}[0]"]


def test_an_sla_deadline_needs_a_schedule() -> None:
    found = errors(spec(sla={"deadline": "06:00"}))
    assert list(found) == ["sla.deadline"]
    assert "needs a cron schedule" in found["sla.deadline"]


def test_a_deadline_is_a_time_of_day() -> None:
    found = errors(spec(schedule=SCHEDULE, sla={"deadline": "25:00"}))
    assert list(found) == ["sla.deadline"]


def test_an_empty_sla_says_what_it_takes() -> None:
    found = errors(spec(sla={}))
    assert "give run_duration, deadline or both" in next(iter(found.values()))


def test_a_task_sla_takes_a_duration() -> None:
    found = errors(spec(task={"sla": {"duration": "soon"}}))
    assert list(found) == ["tasks.a.sla.duration"]


@pytest.mark.parametrize(
    ("notify", "path"),
    [
        ({"on": ["run.exploded"], "channels": ["x"]}, "notify.on[0]"),
        ({"on": [], "channels": ["x"]}, "notify.on"),
        ({"on": ["run.failed"], "channels": []}, "notify.channels"),
        ({"on": ["run.failed"], "channels": ["Not A Name"]}, "notify.channels[0]"),
        ({"on": ["run.failed"]}, "notify.channels"),
    ],
)
def test_notify_is_checked_with_its_paths(notify: dict[str, Any], path: str) -> None:
    assert path in errors(spec(notify=notify))


def test_the_alerting_keys_are_kept_in_the_canonical_spec() -> None:
    valid = validate_spec(
        spec(
            schedule=SCHEDULE,
            sla={"run_duration": "1h", "deadline": "06:00"},
            notify={"on": ["run.failed", "sla.missed"], "channels": ["team-data-slack"]},
            task={"sla": {"duration": "10m"}},
        )
    )
    assert valid.canonical["sla"] == {"run_duration": "1h", "deadline": "06:00"}
    assert valid.canonical["notify"] == {
        "on": ["run.failed", "sla.missed"],
        "channels": ["team-data-slack"],
    }
    assert valid.canonical["tasks"]["a"]["sla"] == {"duration": "10m"}
