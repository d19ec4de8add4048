"""Spec files for GitOps: read from disk (`manage.py apply`, `manage.py validate`) or sent
as (name, text) pairs (the bulk apply endpoint, git sync), validated the same way, and the
lines that report a plan or invalid files, shared by `manage.py apply` and the `orc` CLI.
Pure: no Django, so `validate` and `orc` run without a database."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import FieldError, Invalid
from workflows.validation import Limits, ValidSpec, parse_document, validate_spec

__all__ = [
    "SUFFIXES",
    "FileError",
    "InvalidFiles",
    "SpecFile",
    "collect",
    "error_line",
    "format_errors",
    "format_file_errors",
    "format_plan",
    "load_all",
    "load_documents",
]

SUFFIXES = (".yaml", ".yml", ".json")

FileError = tuple[str, str, str]  # (file, dotted field path, message)


@dataclass(frozen=True)
class SpecFile:
    path: str  # as the caller named it: a path on disk, or a path inside a repository
    valid: ValidSpec | None
    errors: list[FieldError]


class InvalidFiles(Invalid):
    """Spec files that cannot be applied, every error with its file; nothing was applied.
    REST lists each as {"path", "message", "file"}, GraphQL in `extensions.errors`."""

    def __init__(self, file_errors: Sequence[FileError], *, invalid: int, total: int) -> None:
        self.file_errors = list(file_errors)
        super().__init__([(path, message) for _, path, message in self.file_errors])
        self.message = self.headline = (
            f"{invalid} of {total} files are invalid; nothing was applied"
        )

    def details(self) -> list[dict[str, str]]:
        return [{"path": p, "message": m, "file": f} for f, p, m in self.file_errors]


def collect(paths: Iterable[str]) -> list[Path]:
    """Spec files named, or found (recursively) in the folders named, in a stable order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{raw}: no such file or folder")
    return found


def load_all(files: list[Path], limits: Limits | None = None) -> list[SpecFile]:
    """Read, parse and validate every file on disk (see load_documents)."""
    return load_documents([(str(path), path.read_bytes()) for path in files], limits)


def load_documents(
    documents: Sequence[tuple[str, bytes | str]], limits: Limits | None = None
) -> list[SpecFile]:
    """Parse and validate every (name, text) document, each within the size limit; the
    same workflow name in two documents is an error in both."""
    max_bytes = (limits or Limits()).max_spec_bytes
    results: list[SpecFile] = []
    for name, text in documents:
        try:
            data: Any = parse_document(text, max_bytes=max_bytes)
            results.append(SpecFile(name, validate_spec(data, limits), []))
        except Invalid as exc:
            results.append(SpecFile(name, None, exc.errors))
    names: dict[str, list[str]] = {}
    for item in results:
        if item.valid is not None:
            names.setdefault(item.valid.spec.name, []).append(item.path)
    for index, item in enumerate(results):
        if item.valid is not None and len(names[item.valid.spec.name]) > 1:
            others = ", ".join(p for p in names[item.valid.spec.name] if p != item.path)
            results[index] = SpecFile(
                item.path,
                None,
                [("name", f"workflow {item.valid.spec.name!r} is also defined in {others}")],
            )
    return results


def error_line(file: str, path: str, message: str) -> str:
    """One error of one file: `etl/daily.yaml: tasks.load.timeout: ...`."""
    return f"{file}: {path or '(document)'}: {message}"


def format_errors(item: SpecFile) -> list[str]:
    return [error_line(item.path, path, message) for path, message in item.errors]


def format_file_errors(errors: Sequence[Mapping[str, Any]]) -> list[str]:
    """The lines `manage.py apply` prints for invalid files, from the `errors` of a REST
    problem (or GraphQL's `extensions.errors`): each {"file", "path", "message"}."""
    return [
        error_line(str(e.get("file") or ""), str(e.get("path") or ""), str(e["message"]))
        for e in errors
    ]


def format_plan(changes: Sequence[Mapping[str, Any]], *, dry_run: bool, diff: bool) -> list[str]:
    """The lines that report an apply's plan, one a workflow (`alpha: new version 3`), each
    followed by its diff's lines when `diff`. `changes` are the plan's JSON items:
    {"workflow", "path", "action", "version", "diff"}."""
    would = "would be " if dry_run else ""
    lines: list[str] = []
    for change in changes:
        name, action, version = change["workflow"], change["action"], change.get("version")
        if action == "created":
            lines.append(f"{name}: {would}created (version {version})")
        elif action == "updated":
            lines.append(f"{name}: {would}new version {version}")
        elif action == "unchanged":
            lines.append(f"{name}: unchanged (version {version})")
        elif action == "pruned":
            lines.append(f"{name}: {would}pruned")
        else:
            raise ValueError(
                f"{name}: unknown action {action!r}; expected created, updated, unchanged or pruned"
            )
        if diff and change.get("diff"):
            lines.extend(str(change["diff"]).splitlines())
    return lines
