"""Which team code a workflow version runs: the spec's `code` (on the workflow, or on a
python task) resolved, when the workflow is applied, to one uploaded package version each,
and every such task's `callable` checked against that package's index of functions.

The result is stored in the version (`WorkflowVersion.code`), so a run, and any rerun of
it, calls the code pinned then, whatever is uploaded later (docs/team-code.md)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from orchestrator.models import Tenant
from workflows.models import CodePackage
from workflows.spec import Code, PythonTask, WorkflowSpec

__all__ = ["CodeResolution", "matching_versions", "resolve_code", "version_specifier"]

FieldError = tuple[str, str]
SHOWN = 10  # at most this many names in a message


@dataclass(frozen=True)
class CodeResolution:
    code: dict[str, dict[str, str]]  # {task id: {"package", "version", "digest"}}
    errors: list[FieldError]


def version_specifier(text: str) -> SpecifierSet | None:
    """`code.version` as a specifier: "*" (any), "1.4.2" and "1.4.*" (==), or a PEP 440
    specifier set such as ">=1.4,<2"; None when it is none of these."""
    text = text.strip()
    if text == "*":
        return SpecifierSet()
    if text[:1].isdigit():
        text = f"=={text}"
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        return None


def matching_versions(
    versions: Iterable[str], specifier: SpecifierSet, *, prereleases: bool | None = None
) -> list[str]:
    """The versions the specifier admits, newest first (pre-releases only when it names
    one or nothing else matches, as pip does; all of them with `prereleases=True`)."""
    parsed: list[Version] = []
    for text in versions:
        try:
            parsed.append(Version(text))
        except InvalidVersion:
            continue
    admitted = specifier.filter(parsed, prereleases=prereleases)
    return [str(v) for v in sorted(admitted, reverse=True)]


def resolve_code(tenant: Tenant, spec: WorkflowSpec) -> CodeResolution:
    """Pin every python task's code; errors name the spec path of what cannot be."""
    wanted: dict[str, tuple[Code, str]] = {}
    for task_id, task in spec.tasks.items():
        if not isinstance(task, PythonTask):
            continue
        if task.code is not None:
            wanted[task_id] = (task.code, f"tasks.{task_id}.code")
        elif spec.code is not None:
            wanted[task_id] = (spec.code, "code")
    if not wanted:
        return CodeResolution({}, [])
    names = {canonicalize_name(code.package) for code, _ in wanted.values()}
    by_name: dict[str, dict[str, CodePackage]] = {}
    for package in CodePackage.objects.filter(tenant=tenant, name__in=names).only(
        "name", "version", "digest", "index"
    ):
        by_name.setdefault(package.name, {})[package.version] = package
    errors: list[FieldError] = []
    pinned: dict[str, dict[str, str]] = {}
    reported: set[str] = set()
    for task_id, (code, path) in wanted.items():
        picked, error = _pick(code, path, by_name.get(canonicalize_name(code.package), {}))
        if picked is None:
            if error is not None and error not in errors and path not in reported:
                errors.append(error)
                reported.add(path)
            continue
        package = picked
        task = spec.tasks[task_id]
        assert isinstance(task, PythonTask)
        if (refusal := _callable_refusal(task.callable, package)) is not None:
            errors.append((f"tasks.{task_id}.callable", refusal))
            continue
        pinned[task_id] = {
            "package": package.name,
            "version": package.version,
            "digest": package.digest,
        }
    return CodeResolution(pinned if not errors else {}, errors)


def _pick(
    code: Code, path: str, versions: dict[str, CodePackage]
) -> tuple[CodePackage | None, FieldError | None]:
    name = canonicalize_name(code.package)
    if not versions:
        return None, (
            f"{path}.package",
            f"no package {name!r} has been uploaded to this tenant (upload it first: "
            "docs/team-code.md)",
        )
    specifier = version_specifier(code.version)
    if specifier is None:
        return None, (
            f"{path}.version",
            f"{code.version!r} is not a version or a version specifier; accepted: an exact "
            'version ("1.4.2"), a wildcard ("1.4.*"), a specifier (">=1.4,<2") or "*"',
        )
    matches = matching_versions(versions, specifier)
    if not matches:
        uploaded = matching_versions(versions, SpecifierSet(), prereleases=True)
        return None, (
            f"{path}.version",
            f"no uploaded version of {name!r} matches {code.version!r}; uploaded: "
            f"{_some(uploaded)}",
        )
    return versions[matches[0]], None


def _callable_refusal(target: str, package: CodePackage) -> str | None:
    module, _, function = target.partition(":")
    index: dict[str, Any] = package.index or {}
    where = f"{package.name} {package.version}"
    if module not in index:
        return f"module {module!r} is not in {where}; its modules: {_some(sorted(index))}"
    if function not in index[module]:
        return (
            f"{where}'s module {module!r} has no function {function!r}; its functions: "
            f"{_some(sorted(index[module]))}"
        )
    return None


def _some(names: list[str]) -> str:
    if not names:
        return "none"
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more
