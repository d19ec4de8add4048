"""`orc packages push|list`: team code (docs/team-code.md)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Annotated

import typer

from orc.cli.common import Failure, OutputOption, state
from orc.client import Package
from orc.output import Format, Table, emit, when

__all__ = ["packages_app", "source_tree_zip"]

packages_app = typer.Typer(help="Team code packages (docs/team-code.md).", no_args_is_help=True)

# Never part of a source tree's upload: VCS data, caches, virtual environments, builds.
SKIPPED_DIRS = frozenset(
    {".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".tox", ".nox", "build", "dist"}
)
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".egg-info")


def source_tree_zip(root: Path) -> bytes:
    """A .zip of the source tree at `root` (its pyproject.toml at the top), in a stable
    order with fixed times, so the same tree makes the same bytes (and the server answers
    a second push with the package it stored the first time)."""
    if not (root / "pyproject.toml").is_file():
        raise Failure(f"{root}: no pyproject.toml; a source tree to push needs one at its top")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if any(p in SKIPPED_DIRS or p.endswith(SKIPPED_SUFFIXES) for p in relative.parts):
                continue
            if path.is_file() and not path.is_symlink():
                info = zipfile.ZipInfo(relative.as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def _upload_body(path: Path) -> tuple[str, bytes]:
    if path.is_dir():
        return f"{path.resolve().name}.zip", source_tree_zip(path)
    if not path.is_file():
        raise Failure(f"{path}: no such file or folder")
    if not path.name.lower().endswith((".whl", ".tar.gz", ".tgz", ".zip")):
        raise Failure(
            f"{path}: not a package; accepted: a wheel (.whl), an sdist (.tar.gz or .zip), "
            "an archive of a source tree (.tar.gz, .tgz, .zip) or the tree's folder"
        )
    return path.name, path.read_bytes()


@packages_app.command("push")
def packages_push(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(
            metavar="PATH", help="a wheel, an sdist, or a source tree's folder or archive"
        ),
    ],
    output: OutputOption = Format.TABLE,
) -> None:
    """Upload a package version (editors): the server locks its dependencies and indexes
    its functions before it stores it. The same file again is no change."""
    filename, data = _upload_body(path)
    package = state(ctx).client().upload_package(filename, data)
    functions = sum(len(names) for names in package["index"].values())

    def render() -> list[str]:
        lines = [
            f"{package['name']} {package['version']}: sha256:{package['digest']}",
            f"functions: {functions} in {len(package['index'])} modules",
        ]
        lines += [f"locked: {line.split(' ', 1)[0]}" for line in package["lock"]]
        return lines

    emit(output, package, render)


@packages_app.command("list")
def packages_list(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(help="only this package's versions")] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """The tenant's package versions, newest first."""
    packages = state(ctx).client().list_packages(name=name)

    def row(p: Package) -> list[str]:
        return [str(p["id"]), p["name"], p["version"], p["digest"][:12], when(p["created_at"])]

    columns = ["ID", "NAME", "VERSION", "DIGEST", "UPLOADED"]
    emit(output, packages, lambda: Table(columns, [row(p) for p in packages]))
