"""Team code packages made by the tests themselves (no network, no build tool): wheels
written as zips (METADATA, WHEEL, RECORD), source trees with an in-tree PEP 517 backend
(`backend-path`, so building one needs no index), sdists, archives of trees, and a local
"index" (a find-links directory of wheels) with a dependency in it.

    index = use_package_index(settings, tmp_path)   # settings: pytest-django's fixture
    wheel = write_wheel(tmp_path, "acme-etl", "1.0", {"acme_etl/__init__.py": "..."},
                        requires=["tinydep"])
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "DEPENDENCY",
    "archive_tree",
    "open_up",
    "package_index",
    "use_package_index",
    "wheel_bytes",
    "write_sdist",
    "write_source_tree",
    "write_wheel",
    "zip_tree",
]

# The dependency `package_index` offers: (name, version, module, source).
DEPENDENCY = ("tinydep", "0.3.0", "tinydep/__init__.py", "def shout(s):\n    return s.upper()\n")
# A fixed time for archive members: the same inputs make the same bytes.
EPOCH = 1_700_000_000


def open_up(path: Path) -> None:
    """pytest's directories are private (0700): let the tenants' sandbox uids through
    them (not list them), so environments and find-links dirs below can be mounted."""
    for part in (path, *path.parents):
        mode = os.stat(part).st_mode
        if not mode & 0o001:
            os.chmod(part, mode | 0o001)


def _dist(name: str) -> str:
    return name.replace("-", "_").replace(".", "_").lower()


def _metadata(name: str, version: str, requires: Iterable[str], extra: Iterable[str] = ()) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    return "\n".join([*lines, *extra]) + "\n"


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def wheel_bytes(
    name: str,
    version: str,
    files: Mapping[str, str],
    requires: Iterable[str] = (),
    tag: str = "py3-none-any",
    metadata: Iterable[str] = (),
) -> tuple[str, bytes]:
    """A valid wheel (file name, bytes) holding `files` ({path: text}); `metadata`: more
    lines of its METADATA ("Requires-Python: >=3.9")."""
    info = f"{_dist(name)}-{version}.dist-info"
    members = {path: text.encode() for path, text in files.items()}
    members[f"{info}/METADATA"] = _metadata(name, version, requires, metadata).encode()
    wheel = f"Wheel-Version: 1.0\nGenerator: teamcode-support\nRoot-Is-Purelib: true\nTag: {tag}\n"
    members[f"{info}/WHEEL"] = wheel.encode()
    record = [_record_line(path, data) for path, data in members.items()]
    members[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in members.items():
            archive.writestr(zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return f"{_dist(name)}-{version}-{tag}.whl", buffer.getvalue()


def write_wheel(
    directory: Path,
    name: str,
    version: str,
    files: Mapping[str, str],
    requires: Iterable[str] = (),
    tag: str = "py3-none-any",
) -> Path:
    """The wheel of `wheel_bytes`, written into `directory` under its proper name."""
    filename, data = wheel_bytes(name, version, files, requires, tag)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    path.write_bytes(data)
    return path


# The in-tree build backend: a wheel of every file of the tree but its own and
# pyproject.toml, with the metadata pyproject.toml's [project] states. Standard library only.
BACKEND = """\
import base64, hashlib, os, tomllib, zipfile

def _project():
    with open("pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["project"]

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project = _project()
    name, version = project["name"], project["version"]
    dist = name.replace("-", "_").replace(".", "_").lower()
    info = f"{dist}-{version}.dist-info"
    members = {}
    for parent, dirs, files in os.walk("."):
        dirs[:] = sorted(d for d in dirs if d not in ("_build", "dist", "__pycache__"))
        for file in sorted(files):
            path = os.path.relpath(os.path.join(parent, file), ".")
            if path not in ("pyproject.toml", "PKG-INFO"):
                with open(path, "rb") as handle:
                    members[path.replace(os.sep, "/")] = handle.read()
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Requires-Dist: {r}" for r in project.get("dependencies", [])]
    members[f"{info}/METADATA"] = ("\\n".join(metadata) + "\\n").encode()
    members[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\\nGenerator: teambackend\\nRoot-Is-Purelib: true\\n"
        "Tag: py3-none-any\\n"
    ).encode()
    record = []
    for path, data in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(data)}")
    record.append(f"{info}/RECORD,,")
    members[f"{info}/RECORD"] = ("\\n".join(record) + "\\n").encode()
    filename = f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as archive:
        for path, data in members.items():
            archive.writestr(zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return filename
"""


def write_source_tree(
    directory: Path,
    name: str,
    version: str,
    files: Mapping[str, str],
    requires: Iterable[str] = (),
) -> Path:
    """A source tree `directory/<name>-<version>` (its path returned): pyproject.toml, the
    in-tree backend in `_build/` and `files`."""
    root = directory / f"{name}-{version}"
    (root / "_build").mkdir(parents=True)
    dependencies = ", ".join(f'"{r}"' for r in requires)
    (root / "pyproject.toml").write_text(
        "[build-system]\n"
        "requires = []\n"
        'build-backend = "teambackend"\n'
        'backend-path = ["_build"]\n\n'
        "[project]\n"
        f'name = "{name}"\n'
        f'version = "{version}"\n'
        f"dependencies = [{dependencies}]\n"
    )
    (root / "_build" / "teambackend.py").write_text(BACKEND)
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def write_sdist(
    directory: Path,
    name: str,
    version: str,
    files: Mapping[str, str],
    requires: Iterable[str] = (),
) -> bytes:
    """An sdist (.tar.gz): the source tree with a PKG-INFO, in one top directory."""
    root = write_source_tree(directory, name, version, files, requires)
    (root / "PKG-INFO").write_text(_metadata(name, version, requires))
    return archive_tree(root)


def _members(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if "__pycache__" not in p.parts)


def archive_tree(root: Path, top: str | None = "") -> bytes:
    """A .tar.gz of the tree at `root`, in one top directory named `top` (default: the
    tree's own name; None: the tree's files at the archive's root)."""
    prefix = root.name if top == "" else top
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in _members(root):
            relative = path.relative_to(root).as_posix()
            member = archive.gettarinfo(str(path), f"{prefix}/{relative}" if prefix else relative)
            member.mtime, member.uid, member.gid, member.uname, member.gname = EPOCH, 0, 0, "", ""
            if path.is_file():
                with path.open("rb") as handle:
                    archive.addfile(member, handle)
            else:
                archive.addfile(member)
    return buffer.getvalue()


def zip_tree(root: Path, top: str | None = "") -> bytes:
    """A .zip of the tree at `root`, laid out as `archive_tree` lays out its tar."""
    prefix = root.name if top == "" else top
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in _members(root):
            if path.is_file():
                relative = path.relative_to(root).as_posix()
                archive.writestr(f"{prefix}/{relative}" if prefix else relative, path.read_bytes())
    return buffer.getvalue()


def package_index(tmp_path: Path) -> Path:
    """A find-links directory (`tmp_path/index`, reachable from the sandbox) holding the
    wheel of DEPENDENCY."""
    name, version, module, source = DEPENDENCY
    index = tmp_path / "index"
    write_wheel(index, name, version, {module: source})
    open_up(index)
    return index


def use_package_index(settings: Any, tmp_path: Path) -> Path:
    """Point the team code settings at this test's directories: `package_index(tmp_path)`
    as the only index, environments in `tmp_path/envs`, stored wheels in
    `tmp_path/packages`. Returns the index directory."""
    index = package_index(tmp_path)
    settings.PACKAGE_FIND_LINKS = [str(index)]
    settings.PACKAGE_INDEX_URL = ""
    settings.PACKAGE_ENV_DIR = tmp_path / "envs"
    settings.STORAGES = {
        **settings.STORAGES,
        "packages": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "packages")},
        },
    }
    return index
