"""What the tests of the environment cache (runs/tasktypes/environments.py) share: wheels
written directly as zip files, a find-links directory holding a dependency, a cache over a
tmp directory with the real uv, a uv shim that counts its commands, and a child process
that drives a cache of its own (so its locks are another process's). No tests here."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from runs.tasktypes.environments import EnvironmentCache, PackageSpec, uv_binary
from runs.tasktypes.sandbox import interpreter
from tests.subprocesses import ROOT

__all__ = [
    "Package",
    "count_commands",
    "make_cache",
    "make_package",
    "run_in",
    "spawn_child",
    "uv_shim",
    "write_wheel",
]

DEPENDENCY = "tinydep"
DEPENDENCY_VERSION = "2.0"


@dataclass(frozen=True)
class Package:
    spec: PackageSpec
    data: bytes  # the wheel's bytes
    links: Path  # the find-links directory holding its dependency


def write_wheel(
    directory: Path,
    name: str,
    version: str,
    files: Mapping[str, str],
    *,
    requires: Sequence[str] = (),
    scripts: Mapping[str, str] | None = None,
) -> Path:
    """A pure-Python wheel with METADATA, WHEEL, RECORD (and console scripts)."""
    dist = f"{name.replace('-', '_')}-{version}"
    entries = dict(files)
    entries[f"{dist}.dist-info/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires)
    )
    entries[f"{dist}.dist-info/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    if scripts:
        entries[f"{dist}.dist-info/entry_points.txt"] = "[console_scripts]\n" + "".join(
            f"{script} = {target}\n" for script, target in scripts.items()
        )
    record = []
    for path, text in entries.items():
        digest = hashlib.sha256(text.encode()).digest()
        encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record.append(f"{path},sha256={encoded},{len(text.encode())}")
    record.append(f"{dist}.dist-info/RECORD,,")
    entries[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in entries.items():
            archive.writestr(path, text)
    return wheel


def make_package(
    tmp_path: Path, *, version: str = "1.4.2", lock: Sequence[str] | None = None
) -> Package:
    """acme-etl `version`, whose `run()` returns its dependency's VALUE (42); the dependency
    wheel in `tmp_path/links`, locked with its hash (unless `lock` is given)."""
    links = tmp_path / "links"
    dependency = links / f"{DEPENDENCY}-{DEPENDENCY_VERSION}-py3-none-any.whl"
    if not dependency.exists():
        write_wheel(links, DEPENDENCY, DEPENDENCY_VERSION, {"tinydep/__init__.py": "VALUE = 42\n"})
    wheel = write_wheel(
        tmp_path / "wheels",
        "acme-etl",
        version,
        {
            "acme_etl/__init__.py": (
                f"import tinydep\n\nVERSION = {version!r}\n\n\ndef run():\n"
                "    return tinydep.VALUE\n"
            )
        },
        requires=[DEPENDENCY],
        scripts={"acme": "acme_etl:run"},
    )
    data = wheel.read_bytes()
    dependency_hash = hashlib.sha256(dependency.read_bytes()).hexdigest()
    if lock is None:
        lock = [f"{DEPENDENCY}=={DEPENDENCY_VERSION} --hash=sha256:{dependency_hash}"]
    spec = PackageSpec(
        digest=hashlib.sha256(data).hexdigest(),
        name="acme-etl",
        version=version,
        filename=wheel.name,
        lock=tuple(lock),
    )
    return Package(spec, data, links)


def make_cache(
    root: Path, links: Path, *, max_bytes: int = 10**9, uv: str | None = None
) -> EnvironmentCache:
    return EnvironmentCache(
        root,
        max_bytes=max_bytes,
        python=interpreter(),
        index_url=None,
        find_links=[str(links)],
        timeout=60,
        uv=uv,
    )


def run_in(python: Path, code: str) -> str:
    """Run `code` with the environment's interpreter: its standard output."""
    done = subprocess.run(
        [str(python), "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        check=True,
    )
    return done.stdout.strip()


def uv_shim(tmp_path: Path, *, pause: float = 0.0) -> tuple[str, Path]:
    """A `uv` that appends its command (venv, pip...) to a file, pauses `pause` seconds on
    `venv` (a build in progress), then runs the real uv: the shim and the file."""
    commands = tmp_path / "uv-commands.txt"
    shim = tmp_path / "uv-shim"
    shim.write_text(
        "#!/bin/sh\n"
        f'echo "$1" >> {commands}\n'
        f'if [ "$1" = venv ]; then sleep {pause}; fi\n'
        f'exec {uv_binary()} "$@"\n'
    )
    shim.chmod(0o755)
    return str(shim), commands


def count_commands(commands: Path, command: str) -> int:
    if not commands.exists():
        return 0
    return commands.read_text().split().count(command)


CHILD = """
import json, sys
from pathlib import Path
from runs.tasktypes.environments import EnvironmentCache, PackageSpec

args = json.loads(sys.argv[1])
cache = EnvironmentCache(
    Path(args["root"]), max_bytes=args["max_bytes"], python=args["python"], index_url=None,
    find_links=args["links"], timeout=60, uv=args["uv"],
)
spec = PackageSpec(**{**args["spec"], "lock": tuple(args["spec"]["lock"])})
if args["action"] == "ensure":
    data = Path(args["wheel"]).read_bytes()
    lines = []
    env = cache.ensure(spec, lambda: data, lines.append)
    print(json.dumps({"built": env.built, "log": lines}), flush=True)
else:
    with cache.use(spec.digest):
        print("held", flush=True)
        sys.stdin.read()
"""


def spawn_child(
    action: str, cache: EnvironmentCache, package: Package, wheel: Path
) -> subprocess.Popen[str]:
    """Another worker process: `ensure` the package (prints {"built", "log"} as JSON) or
    `use` it (prints "held", holds it until its stdin closes)."""
    args = {
        "action": action,
        "root": str(cache.root),
        "max_bytes": cache.max_bytes,
        "python": cache.python,
        "links": [str(package.links)],
        "uv": cache.uv,
        "spec": asdict(package.spec),
        "wheel": str(wheel),
    }
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(args)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
