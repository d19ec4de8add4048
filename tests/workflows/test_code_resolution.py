"""Applying a spec with `code`: each python task's package is pinned to one uploaded version
(the newest the spec's version admits), its callable checked against that version's index;
a new upload the spec picks makes a new version on the next apply, the old one keeps its
pin; whatever cannot be pinned is refused with the spec path, and nothing is stored."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Invalid
from tests.harness import Team
from workflows import services
from workflows.code import matching_versions, version_specifier
from workflows.models import CodePackage, Workflow, WorkflowVersion


def upload_row(team: Team, name: str, version: str, index: dict[str, list[str]]) -> CodePackage:
    """A package row as an upload leaves it (the upload itself: tests/runs/test_package_*)."""
    digest = hashlib.sha256(f"{name}{version}".encode()).hexdigest()
    return CodePackage.objects.dangerously_unscoped().create(
        tenant=team.tenant,
        name=name,
        version=version,
        digest=digest,
        filename=f"{name.replace('-', '_')}-{version}-py3-none-any.whl",
        size=1000,
        source_kind="wheel",
        source_digest=digest,
        index=index,
    )


INDEX = {"acme_etl": ["clean"], "acme_etl.load": ["load", "count"]}


def spec(code: dict[str, Any] | None = None, **task: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "etl",
        "tasks": {
            "clean": {"type": "python", "callable": "acme_etl:clean", **task},
            "load": {
                "type": "python",
                "callable": "acme_etl.load:load",
                "depends_on": ["clean"],
            },
        },
    }
    if code is not None:
        data["code"] = code
    return data


def apply(team: Team, data: dict[str, Any]) -> services.ApplyResult:
    with tenant_scope([team.tenant]):
        return services.apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=data)


def refusal(team: Team, data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(Invalid) as caught:
        apply(team, data)
    return dict(caught.value.errors)


@pytest.mark.django_db
def test_the_newest_matching_version_is_pinned_per_task(team: Team) -> None:
    upload_row(team, "acme-etl", "1.4.1", INDEX)
    newest = upload_row(team, "acme-etl", "1.4.10", INDEX)
    upload_row(team, "acme-etl", "1.5.0", INDEX)
    result = apply(team, spec({"package": "Acme_ETL", "version": "1.4.*"}))
    pin = {"package": "acme-etl", "version": "1.4.10", "digest": newest.digest}
    assert result.version.code == {"clean": pin, "load": pin}


@pytest.mark.django_db
def test_a_task_without_code_of_its_own_takes_the_workflows(team: Team) -> None:
    one = upload_row(team, "acme-etl", "1.0.0", INDEX)
    other = upload_row(team, "other-lib", "2.0.0", {"other": ["run"]})
    data = spec({"package": "acme-etl"})
    data["tasks"]["other"] = {
        "type": "python",
        "callable": "other:run",
        "code": {"package": "other-lib", "version": ">=2,<3"},
    }
    data["tasks"]["shell"] = {"type": "shell", "command": ["true"]}
    result = apply(team, data)
    assert result.version.code == {
        "clean": {"package": "acme-etl", "version": "1.0.0", "digest": one.digest},
        "load": {"package": "acme-etl", "version": "1.0.0", "digest": one.digest},
        "other": {"package": "other-lib", "version": "2.0.0", "digest": other.digest},
    }


@pytest.mark.django_db
def test_without_code_python_tasks_keep_the_platform_allow_list(team: Team) -> None:
    data = {"name": "plain", "tasks": {"a": {"type": "python", "callable": "runs.library:echo"}}}
    assert apply(team, data).version.code == {}
    data["tasks"]["b"] = {"type": "python", "callable": "acme_etl:clean"}
    errors = refusal(team, data)
    assert "not allowed for python tasks" in errors["tasks.b.callable"]


@pytest.mark.django_db
def test_a_new_upload_makes_a_new_version_and_the_old_one_keeps_its_pin(team: Team) -> None:
    first = upload_row(team, "acme-etl", "1.4.2", INDEX)
    data = spec({"package": "acme-etl", "version": "1.4.*"})
    v1 = apply(team, data).version
    assert apply(team, data).changed is False  # nothing new uploaded: the same version
    second = upload_row(team, "acme-etl", "1.4.3", INDEX)
    result = apply(team, data)
    assert result.changed
    assert result.version.number == 2
    assert result.version.code["clean"]["digest"] == second.digest
    v1 = WorkflowVersion.objects.dangerously_unscoped().get(pk=v1.pk)
    assert v1.code["clean"]["digest"] == first.digest
    assert v1.spec == result.version.spec  # the same spec, pinned to other code


@pytest.mark.django_db
def test_what_cannot_be_pinned_is_refused_with_its_path_and_nothing_is_stored(
    team: Team,
) -> None:
    upload_row(team, "acme-etl", "1.4.2", INDEX)
    upload_row(team, "acme-etl", "2.0.0", INDEX)
    errors = refusal(team, spec({"package": "missing-lib"}))
    assert errors["code.package"].startswith("no package 'missing-lib' has been uploaded")
    errors = refusal(team, spec({"package": "acme-etl", "version": "3.*"}))
    assert errors["code.version"] == (
        "no uploaded version of 'acme-etl' matches '3.*'; uploaded: 2.0.0, 1.4.2"
    )
    errors = refusal(team, spec({"package": "acme-etl", "version": "latest!"}))
    assert "is not a version or a version specifier" in errors["code.version"]
    errors = refusal(team, spec({"package": "acme-etl"}, callable="acme_etl:missing"))
    assert errors["tasks.clean.callable"] == (
        "acme-etl 2.0.0's module 'acme_etl' has no function 'missing'; its functions: clean"
    )
    errors = refusal(team, spec({"package": "acme-etl"}, callable="acme_etl.nope:clean"))
    assert errors["tasks.clean.callable"] == (
        "module 'acme_etl.nope' is not in acme-etl 2.0.0; its modules: acme_etl, acme_etl.load"
    )
    own = spec(None, callable="x:y")  # the task's own code: checked like the workflow's
    for task in own["tasks"].values():
        task["code"] = {"package": "acme-etl", "version": "1.4.2"}
    errors = refusal(team, own)
    assert errors["tasks.clean.callable"].startswith("module 'x' is not in acme-etl 1.4.2")
    assert not Workflow.objects.dangerously_unscoped().filter(tenant=team.tenant).exists()
    assert not WorkflowVersion.objects.dangerously_unscoped().filter(tenant=team.tenant).exists()


@pytest.mark.django_db
def test_another_tenants_packages_are_not_found(team: Team, outsider: Team) -> None:
    upload_row(outsider, "acme-etl", "1.0.0", INDEX)
    errors = refusal(team, spec({"package": "acme-etl"}))
    assert "no package 'acme-etl' has been uploaded" in errors["code.package"]


def test_version_specifiers() -> None:
    versions = ["1.4.1", "1.4.10", "1.5.0", "2.0.0rc1", "0.9"]
    for text, expected in {
        "*": ["1.5.0", "1.4.10", "1.4.1", "0.9"],
        "1.4.*": ["1.4.10", "1.4.1"],
        "1.4.1": ["1.4.1"],
        ">=1.4,<2": ["1.5.0", "1.4.10", "1.4.1"],
        ">=2.0.0rc1": ["2.0.0rc1"],
        "~=1.4": ["1.5.0", "1.4.10", "1.4.1"],
    }.items():
        specifier = version_specifier(text)
        assert specifier is not None, text
        assert matching_versions(versions, specifier) == expected, text
    assert version_specifier("latest") is None
    assert version_specifier("1.4.*.x") is None
