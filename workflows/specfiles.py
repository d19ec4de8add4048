"""Spec files on disk, for the `apply` and `validate` commands (GitOps)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import FieldError, Invalid
from workflows.validation import Limits, ValidSpec, parse_document, validate_spec

__all__ = ["SpecFile", "collect", "load_all"]

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class SpecFile:
    path: Path
    valid: ValidSpec | None
    errors: list[FieldError]


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
    """Parse and validate every file; the same name in two files is an error in both."""
    results: list[SpecFile] = []
    for path in files:
        try:
            data: Any = parse_document(
                path.read_bytes(), max_bytes=(limits or Limits()).max_spec_bytes
            )
            results.append(SpecFile(path, validate_spec(data, limits), []))
        except Invalid as exc:
            results.append(SpecFile(path, None, exc.errors))
    names: dict[str, list[Path]] = {}
    for item in results:
        if item.valid is not None:
            names.setdefault(item.valid.spec.name, []).append(item.path)
    for index, item in enumerate(results):
        if item.valid is not None and len(names[item.valid.spec.name]) > 1:
            others = ", ".join(str(p) for p in names[item.valid.spec.name] if p != item.path)
            results[index] = SpecFile(
                item.path,
                None,
                [("name", f"workflow {item.valid.spec.name!r} is also defined in {others}")],
            )
    return results


def format_errors(item: SpecFile) -> list[str]:
    return [f"{item.path}: {path or '(document)'}: {message}" for path, message in item.errors]
