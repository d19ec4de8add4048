"""The API's hot reads are written by hand (orchestrator/rows.py): they must give exactly
what the ORM and DRF's generic machinery give, field for field."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from rest_framework import serializers

from orchestrator.actors import Actor
from orchestrator.authentication import authenticate_bearer
from orchestrator.context import tenant_scope
from orchestrator.errors import NotFound
from orchestrator.models import Membership
from runs.api.serializers import RunSerializer
from runs.models import WorkflowRun
from runs.selectors import get_run, run_detail, run_list, task_summary
from runs.services import trigger_run
from tests.harness import make_team, token_row
from workflows.selectors import get_workflow, live_workflows
from workflows.services import apply_workflow

pytestmark = pytest.mark.django_db

SPEC = {
    "name": "w",
    "description": "shown",
    "tags": ["a"],
    "params": {"n": {"type": "integer", "default": 3}},
    "tasks": {"a": {"type": "noop"}, "b": {"type": "noop", "depends_on": ["a"]}},
}


def _fields(obj: object) -> dict[str, object]:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}  # type: ignore[attr-defined]


@pytest.fixture
def runs() -> tuple[object, WorkflowRun, WorkflowRun]:
    team = make_team("acme")
    actor = Actor(user=team.users["owner"], source="api")
    with tenant_scope([team.tenant]):
        workflow = apply_workflow(actor=actor, tenant=team.tenant, data=SPEC).workflow
        by_user = trigger_run(actor=actor, workflow=workflow, params={"n": 5}).run
        by_system = trigger_run(actor=Actor.system(), workflow=workflow).run
    start = dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.UTC)
    WorkflowRun.objects.dangerously_unscoped().filter(pk=by_system.pk).update(
        data_interval_start=start, data_interval_end=start + dt.timedelta(hours=1)
    )
    return team, by_user, by_system


def test_get_run_reads_what_the_orm_reads(runs: tuple[object, WorkflowRun, WorkflowRun]) -> None:
    team, by_user, by_system = runs
    with tenant_scope([team.tenant]):  # type: ignore[attr-defined]
        for run in (by_user, by_system):
            mine, orm = get_run(run.pk), run_list().get(pk=run.pk)
            assert _fields(mine) == _fields(orm)
            assert _fields(mine.workflow) == _fields(orm.workflow)
            assert mine.version.number == orm.version.number
            assert mine.version.workflow_id == orm.version.workflow_id
            assert (mine.triggered_by and mine.triggered_by.username) == (
                orm.triggered_by and orm.triggered_by.username
            )
        assert get_run(by_user.pk).params == {"n": 5}  # JSON decoded, as the ORM does
        assert get_run(by_user.pk).triggered_by.username == "acme-owner"  # type: ignore[union-attr]
        assert get_run(by_system.pk).triggered_by is None
        # What was not selected is still there when asked for (read then).
        assert get_run(by_user.pk).version.spec["tasks"]["a"]["type"] == "noop"
        for missing in (
            "999999999",
            "9" * 30,
            str(2**63),
            "0",
            "²",
            "x",
            "",
            str(by_user.pk) + "0",
        ):
            with pytest.raises(NotFound):
                get_run(missing)


def test_get_workflow_reads_what_the_orm_reads(
    runs: tuple[object, WorkflowRun, WorkflowRun],
) -> None:
    team, _by_user, _ = runs
    with tenant_scope([team.tenant]):  # type: ignore[attr-defined]
        mine, orm = get_workflow("w"), live_workflows().select_related("tenant").get(name="w")
        assert _fields(mine) == _fields(orm)
        assert _fields(mine.current_version) == _fields(orm.current_version)
        assert _fields(mine.tenant) == _fields(orm.tenant)
        assert mine.current_version.spec["params"]["n"]["default"] == 3  # type: ignore[union-attr]
        assert mine.tags == ["a"]
        with pytest.raises(NotFound):
            get_workflow("nope")
    other = make_team("other")
    with tenant_scope([other.tenant]), pytest.raises(NotFound):
        get_workflow("w")


def test_get_run_stays_in_the_tenant_in_scope(
    runs: tuple[object, WorkflowRun, WorkflowRun],
) -> None:
    _, by_user, _ = runs
    other = make_team("other")
    with tenant_scope([other.tenant]), pytest.raises(NotFound):
        get_run(by_user.pk)


def test_run_detail_is_the_run_and_its_task_counts(
    runs: tuple[object, WorkflowRun, WorkflowRun],
) -> None:
    team, by_user, by_system = runs
    with tenant_scope([team.tenant]):  # type: ignore[attr-defined]
        for run in (by_user, by_system):
            detail, tasks = run_detail(run.pk)
            assert _fields(detail) == _fields(get_run(run.pk))
            assert _fields(detail.workflow) == _fields(get_run(run.pk).workflow)
            assert tasks == task_summary(run) == {"queued": 1, "pending": 1}
        with pytest.raises(NotFound):
            run_detail(by_user.pk + 1000)
    with tenant_scope([make_team("other").tenant]), pytest.raises(NotFound):
        run_detail(by_user.pk)


def test_task_summary_counts_instances_by_state(
    runs: tuple[object, WorkflowRun, WorkflowRun],
) -> None:
    team, by_user, _ = runs
    with tenant_scope([team.tenant]):  # type: ignore[attr-defined]
        assert task_summary(by_user) == {"queued": 1, "pending": 1}


def test_the_run_representation_is_what_the_fields_give(
    runs: tuple[object, WorkflowRun, WorkflowRun],
) -> None:
    team, by_user, by_system = runs
    with tenant_scope([team.tenant]):  # type: ignore[attr-defined]
        for run in (get_run(by_user.pk), get_run(by_system.pk), run_list().get(pk=by_user.pk)):
            serializer = RunSerializer(run, context={"summaries": {run.pk: task_summary(run)}})
            generic = serializers.ModelSerializer.to_representation(serializer, run)
            assert serializer.data == generic
            assert list(serializer.data) == list(generic)  # the same keys in the same order
    assert serializer.data["data_interval_start"] is None or serializer.data[
        "data_interval_start"
    ].endswith("Z")


def test_a_trigger_answers_what_a_read_of_its_run_shows() -> None:
    team = make_team("acme")
    actor = Actor(user=team.users["owner"], source="api")
    with tenant_scope([team.tenant]):
        workflow = apply_workflow(actor=actor, tenant=team.tenant, data=SPEC).workflow
        triggered = trigger_run(actor=actor, workflow=workflow, params={"n": 5})
        run, read = triggered.run, get_run(triggered.run.pk)
        assert triggered.tasks == task_summary(read)
        answered = RunSerializer(run, context={"summaries": {run.pk: triggered.tasks}}).data
        shown = RunSerializer(read, context={"summaries": {read.pk: task_summary(read)}}).data
    assert json.loads(json.dumps(answered)) == json.loads(json.dumps(shown))


def test_a_token_reads_with_its_user_tenant_and_role() -> None:
    team = make_team("acme")
    raw = team.tokens["admin"]
    user, token = authenticate_bearer(f"Bearer {raw}")  # type: ignore[misc]
    orm = token_row(raw)
    assert _fields(token) == _fields(orm)
    assert _fields(token.user) == _fields(orm.user)
    assert _fields(token.tenant) == _fields(orm.tenant)
    assert token.tenant.quotas == orm.tenant.quotas  # JSON decoded
    assert user == orm.user
    assert token.member_role == "admin"
    # A holder who left the tenant keeps no role through the token.
    Membership.objects.dangerously_unscoped().filter(user=orm.user).delete()
    _, token = authenticate_bearer(f"Bearer {raw}")  # type: ignore[misc]
    assert token.member_role is None  # type: ignore[attr-defined]
