"""The spec keys of events and datasets (`triggers`, `schedule.datasets`, `inlets`,
`outlets`, `wait_for: dataset`) are checked with their paths, and an applied workflow's
references are indexed for the dispatcher and the lineage graph (and dropped when it
changes or is deleted)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Invalid
from tests.harness import Team
from workflows.models import DatasetReference, EventSubscription
from workflows.services import apply_workflow, delete_workflow
from workflows.validation import validate_spec


def errors(spec: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(Invalid) as caught:
        validate_spec(spec)
    return dict(caught.value.errors)


def spec(**top: Any) -> dict[str, Any]:
    return {"name": "wf", "tasks": {"a": {"type": "noop"}}, **top}


PARAMS = {"region": {"type": "string", "default": "eu"}}


def test_it_accepts_webhook_and_event_triggers() -> None:
    valid = validate_spec(
        spec(
            params=PARAMS,
            triggers=[
                {"webhook": {"name": "ingest", "params": {"region": "{{ event.data.region }}"}}},
                {
                    "event": {
                        "type": "com.acme.file.landed",
                        "workflow": "other-team/ingest",
                        "filter": {"subject": "s3://bucket/in/*"},
                    }
                },
            ],
        )
    )
    assert [list(t) for t in valid.canonical["triggers"]] == [["webhook"], ["event"]]


@pytest.mark.parametrize(
    ("triggers", "path", "fragment"),
    [
        ([{"cron": "x"}], "triggers[0]", "a trigger is {webhook: {name, params}} or {event"),
        ([{"webhook": {"name": "A"}}], "triggers[0].webhook.name", "a name is lowercase"),
        (
            [{"webhook": {"name": "a"}}, {"webhook": {"name": "a"}}],
            "triggers[1].webhook.name",
            "another webhook of this workflow has this name",
        ),
        (
            [{"webhook": {"name": "a", "params": {"nope": "x"}}}],
            "triggers[0].webhook.params.nope",
            "unknown param; accepted: region",
        ),
        (
            [{"event": {"type": "x.y", "params": {"region": "{{ params.region }}"}}}],
            "triggers[0].event.params.region",
            "a trigger's params may read only the event",
        ),
        ([{"event": {"type": "bad type"}}], "triggers[0].event.type", "an event type is"),
        (
            [{"event": {"type": "run.succeeded", "workflow": "a/b/c"}}],
            "triggers[0].event.workflow",
            "a workflow's name, or tenant/name",
        ),
        (
            [{"event": {"type": "x", "filter": {"subjects": "*"}}}],
            "triggers[0].event.filter.subjects",
            "unknown field 'subjects'; accepted: subject, source",
        ),
    ],
)
def test_it_refuses_bad_triggers_with_their_paths(
    triggers: list[Any], path: str, fragment: str
) -> None:
    found = errors(spec(params=PARAMS, triggers=triggers))
    assert list(found) == [path], found
    assert fragment in found[path]


@pytest.mark.parametrize(
    ("schedule", "fragment"),
    [
        ({}, "give either cron or datasets"),
        ({"cron": "@daily", "datasets": ["a"]}, "give either cron or datasets"),
        ({"datasets": ["a"], "timezone": "UTC"}, "timezone apply only to a cron schedule"),
        ({"datasets": ["a", "a"]}, "datasets are listed more than once"),
        ({"datasets": []}, "at least 1 item"),
    ],
)
def test_a_dataset_schedule_takes_datasets_alone(schedule: dict[str, Any], fragment: str) -> None:
    found = errors(spec(schedule=schedule))
    assert fragment in " ".join(found.values()), found


def test_a_deadline_needs_a_cron_schedule_not_a_dataset_one() -> None:
    found = errors(spec(schedule={"datasets": ["a"]}, sla={"deadline": "06:00"}))
    assert list(found) == ["sla.deadline"]


def test_another_tenants_dataset_is_a_mapping() -> None:
    validate_spec(spec(schedule={"datasets": [{"tenant": "sales-team", "name": "orders"}]}))
    found = errors(spec(schedule={"datasets": [{"tenant": "Sales Team", "name": "orders"}]}))
    assert list(found) == ["schedule.datasets[0].tenant"]


@pytest.mark.django_db
def test_apply_indexes_the_references_and_delete_drops_them(team: Team) -> None:
    document = {
        "name": "wf",
        "schedule": {"datasets": ["raw.orders", {"tenant": "other", "name": "fx.rates"}]},
        "triggers": [
            {"webhook": {"name": "hook"}},
            {"event": {"type": "run.succeeded", "workflow": "other/ingest"}},
        ],
        "tasks": {
            "load": {"type": "noop", "inlets": ["raw.orders"], "outlets": ["mart.orders"]},
            "wait": {"type": "wait_for", "kind": "dataset", "dataset": "mart.stock"},
        },
    }
    with tenant_scope([team.tenant]):
        workflow = apply_workflow(
            actor=Actor(user=team.owner, source="api"), tenant=team.tenant, data=document
        ).workflow
        refs = set(
            DatasetReference.objects.filter(workflow=workflow).values_list(
                "task_id", "role", "publisher", "dataset"
            )
        )
        subs = list(
            EventSubscription.objects.filter(workflow=workflow).values_list(
                "index", "event_type", "publisher", "source_workflow"
            )
        )
    assert refs == {
        ("", "schedule", "", "raw.orders"),
        ("", "schedule", "other", "fx.rates"),
        ("load", "inlet", "", "raw.orders"),
        ("load", "outlet", "", "mart.orders"),
        ("wait", "sensor", "", "mart.stock"),
    }
    assert subs == [(1, "run.succeeded", "other", "ingest")]

    with tenant_scope([team.tenant]):
        apply_workflow(
            actor=Actor(user=team.owner, source="api"),
            tenant=team.tenant,
            data={"name": "wf", "tasks": {"load": {"type": "noop", "outlets": ["mart.orders"]}}},
        )
        assert list(DatasetReference.objects.values_list("role", "dataset")) == [
            ("outlet", "mart.orders")
        ]
        assert not EventSubscription.objects.exists()
        workflow.refresh_from_db()
        delete_workflow(actor=Actor(user=team.owner, source="api"), workflow=workflow)
        assert not DatasetReference.objects.exists()
