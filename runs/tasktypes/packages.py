"""Team code packages as files (docs/team-code.md): what an upload is (a wheel, an sdist or
an archive of a source tree), safe extraction, building a wheel in the tenant's sandbox
(the build backend is the team's code), what a wheel declares, and its dependencies locked
against the configured index.

No Django: the settings come in as arguments (runs/packages.py passes them).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import posixpath
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from packaging.metadata import Metadata
from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import sys_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from runs.tasktypes.environments import NETWORK_VARIABLES
from runs.tasktypes.process import OutputSink, run_process
from runs.tasktypes.sandbox import HOME, TMP, Sandbox

__all__ = [
    "ACCEPTED",
    "EXTRACTED_FACTOR",
    "MAX_MEMBERS",
    "BuiltWheel",
    "PackageError",
    "Upload",
    "WheelInfo",
    "build_wheel",
    "extract",
    "index_args",
    "lock_dependencies",
    "read_upload",
    "uv_env",
    "wheel_info",
]

ACCEPTED = (
    "a wheel (.whl), an sdist (.tar.gz or .zip with PKG-INFO and pyproject.toml or setup.py "
    "in its top directory) or an archive (.tar.gz, .tgz or .zip) of a source tree with "
    "pyproject.toml at its root or in its one top directory"
)
EXTRACTED_FACTOR = 10  # an archive may unpack to this many times the upload size limit
MAX_MEMBERS = 50_000
LOG_LIMIT = 256 * 1024  # bytes of a build's output kept for the record
METADATA_LIMIT = 4 * 1024 * 1024
LINK_LIMIT = 4096
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What the platform's own uv (locking, unsandboxed) may take from its environment: the way
# out to the index, and the certificates to trust there.


class PackageError(Exception):
    """The upload is not an acceptable package, or could not be built or locked; the
    message says why, and what would be accepted."""


@dataclass(frozen=True)
class Upload:
    """An uploaded file, checked: `kind` "wheel", "sdist" or "tree"; `root` the directory of
    an sdist or tree (inside the archive) holding its pyproject.toml ("" at the root)."""

    kind: str
    filename: str
    data: bytes = dataclasses.field(repr=False)
    digest: str  # sha256 hex of `data`
    root: str = ""


@dataclass(frozen=True)
class BuiltWheel:
    filename: str
    data: bytes = dataclasses.field(repr=False)
    log: str


@dataclass(frozen=True)
class WheelInfo:
    """What a wheel declares, normalised: `name` (PEP 503), `version` (PEP 440),
    `requires_dist` as written, and `top_level`, the names it makes importable."""

    filename: str
    name: str
    version: str
    requires_python: str
    requires_dist: tuple[str, ...]
    top_level: tuple[str, ...]


# --- reading an upload -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Member:
    name: str  # relative, "/"-separated, normalised
    kind: str  # file | dir | symlink | hardlink
    size: int
    target: str  # a link's target (hardlink: a member name)
    executable: bool
    info: tarfile.TarInfo | zipfile.ZipInfo


def read_upload(data: bytes, filename: str, *, max_bytes: int) -> Upload:
    """What the upload is, by its name and contents; PackageError for anything else
    (unreadable, unsafe to unpack, larger than EXTRACTED_FACTOR x max_bytes unpacked)."""
    name = posixpath.basename(filename.replace("\\", "/"))
    lower = name.lower()
    digest = hashlib.sha256(data).hexdigest()
    if lower.endswith(".whl"):
        members = _members(data, "zip", name, max_bytes)
        _check_wheel_layout(members, name)
        return Upload("wheel", name, data, digest)
    if lower.endswith((".tar.gz", ".tgz")):
        members = _members(data, "tar", name, max_bytes)
    elif lower.endswith(".zip"):
        members = _members(data, "zip", name, max_bytes)
    else:
        raise PackageError(f"{name!r} is not a package file: expected {ACCEPTED}")
    root = _source_root({m.name: m for m in members})
    files = {m.name for m in members if m.kind != "dir"}
    at = f"{root}/" if root else ""
    if f"{at}PKG-INFO" in files and ({f"{at}pyproject.toml", f"{at}setup.py"} & files):
        return Upload("sdist", name, data, digest, root)
    if f"{at}pyproject.toml" in files:
        return Upload("tree", name, data, digest, root)
    raise PackageError(
        f"{name!r} holds no Python project (no pyproject.toml at its root or in its one top "
        f"directory): expected {ACCEPTED}"
    )


def _source_root(members: dict[str, _Member]) -> str:
    """ "" when the project's files are at the archive's root, else its one top directory."""
    markers = ("pyproject.toml", "setup.py", "PKG-INFO")
    if any(marker in members for marker in markers):
        return ""
    tops = {name.split("/", 1)[0] for name in members}
    if len(tops) == 1:
        [top] = tops
        if any(name.startswith(f"{top}/") for name in members):
            return top
    return ""


def _check_wheel_layout(members: list[_Member], filename: str) -> None:
    files = {m.name for m in members if m.kind == "file"}
    infos = {n.split("/", 1)[0] for n in files if n.split("/", 1)[0].endswith(".dist-info")}
    complete = [d for d in infos if {f"{d}/METADATA", f"{d}/WHEEL"} <= files]
    if len(complete) != 1:
        raise PackageError(
            f"{filename!r} is not a wheel: a wheel is a zip with one *.dist-info directory "
            "holding METADATA and WHEEL"
        )
    if any(m.kind != "file" and m.kind != "dir" for m in members):
        raise PackageError(f"{filename!r}: a wheel may hold only files and directories")


def _members(data: bytes, archive: str, filename: str, max_bytes: int) -> list[_Member]:
    """The archive's members, each checked: a safe relative name, a file, directory or link
    (no device files), within the caps of count and unpacked size."""
    try:
        members = list(
            _tar_members(data, filename) if archive == "tar" else _zip_members(data, filename)
        )
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        kind = "a .tar.gz" if archive == "tar" else "a zip"
        raise PackageError(f"{filename!r} is not a readable archive ({kind}): {exc}") from None
    if len(members) > MAX_MEMBERS:
        raise PackageError(
            f"{filename!r} holds {len(members)} files; at most {MAX_MEMBERS} are accepted"
        )
    limit = EXTRACTED_FACTOR * max_bytes
    total = sum(m.size for m in members)
    if total > limit:
        raise PackageError(
            f"{filename!r} unpacks to {total} bytes; at most {limit} are accepted "
            f"({EXTRACTED_FACTOR} times PACKAGE_MAX_BYTES)"
        )
    names: set[str] = set()
    files: set[str] = set()
    for member in members:
        if member.name in names and member.kind != "dir":
            raise PackageError(f"{filename!r}: {member.name!r} appears twice in the archive")
        names.add(member.name)
        if member.kind == "file":
            files.add(member.name)
        if member.kind == "symlink":
            _check_link(member, filename)
        if member.kind == "hardlink" and member.target not in files:
            raise PackageError(
                f"{filename!r}: the hard link {member.name!r} points to {member.target!r}, "
                "which is not a file before it in the archive"
            )
    return members


def _safe_name(raw: str, filename: str) -> str:
    name = raw.replace("\\", "/") if "\\" in raw and "/" not in raw else raw
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise PackageError(f"{filename!r}: {raw!r} is an absolute path; members must be relative")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PackageError(f"{filename!r}: {raw!r} leads out of the archive ('..')")
    return "/".join(parts)


def _check_link(member: _Member, filename: str) -> None:
    target = member.target
    inside = posixpath.normpath(posixpath.join(posixpath.dirname(member.name), target))
    if target.startswith("/") or inside == ".." or inside.startswith("../"):
        raise PackageError(
            f"{filename!r}: the link {member.name!r} points to {target!r}, outside the "
            "archive; links must stay inside it"
        )


def _tar_members(data: bytes, filename: str) -> Iterator[_Member]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for info in archive:
            name = _safe_name(info.name, filename)
            if not name:
                continue
            if info.isreg():
                kind, target = "file", ""
            elif info.isdir():
                kind, target = "dir", ""
            elif info.issym():
                kind, target = "symlink", info.linkname
            elif info.islnk():
                kind, target = "hardlink", _safe_name(info.linkname, filename)
            else:
                raise PackageError(
                    f"{filename!r}: {info.name!r} is a device file or a pipe; archives may "
                    "hold only files, directories and links"
                )
            yield _Member(name, kind, info.size, target, bool(info.mode & 0o111), info)


def _zip_members(data: bytes, filename: str) -> Iterator[_Member]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            name = _safe_name(info.filename, filename)
            if not name:
                continue
            # Unix modes (zips made elsewhere carry none); the type bits may be absent too.
            mode = info.external_attr >> 16 if info.create_system == 3 else 0
            if info.is_dir():
                yield _Member(name, "dir", 0, "", False, info)
            elif stat.S_ISLNK(mode):
                if info.file_size > LINK_LIMIT:
                    raise PackageError(f"{filename!r}: the link {info.filename!r} is too long")
                target = archive.read(info).decode("utf-8", "replace")
                yield _Member(name, "symlink", 0, target, False, info)
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                raise PackageError(
                    f"{filename!r}: {info.filename!r} is a device file or a pipe; archives "
                    "may hold only files, directories and links"
                )
            else:
                yield _Member(name, "file", info.file_size, "", bool(mode & 0o111), info)


def extract(upload: Upload, dest: Path, *, max_bytes: int) -> Path:
    """Unpack an sdist or tree into `dest` (new): its files and directories first, its links
    last and only where they resolve inside `dest` (so no write goes through a link).
    Returns the project's directory (`dest/root`)."""
    archive = "zip" if upload.filename.lower().endswith(".zip") else "tar"
    members = _members(upload.data, archive, upload.filename, max_bytes)
    dest.mkdir(mode=0o755)
    kinds = {m.name: m.kind for m in members}
    with _Reader(upload.data, archive) as read:
        for member in members:
            for parent in Path(member.name).parents:
                if kinds.get(parent.as_posix(), "dir") != "dir":
                    raise PackageError(
                        f"{upload.filename!r}: {member.name!r} lies below a link or a file"
                    )
            try:
                _write(member, dest, read)
            except OSError as exc:
                raise PackageError(
                    f"{upload.filename!r}: {member.name!r} cannot be unpacked: {exc.strerror}"
                ) from None
    _make_links(dest, [m for m in members if m.kind == "symlink"], upload.filename)
    return dest / upload.root if upload.root else dest


def _write(member: _Member, dest: Path, read: _Reader) -> None:
    path = dest / member.name
    if member.kind == "dir":
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
    elif member.kind == "file":
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        with read(member) as source, open(path, "xb") as target:
            shutil.copyfileobj(source, target)
        path.chmod(0o755 if member.executable else 0o644)
    elif member.kind == "hardlink":
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        shutil.copyfile(dest / member.target, path, follow_symlinks=False)


class _Reader:
    """Opens the archive once; called with a member, a stream of its contents."""

    def __init__(self, data: bytes, archive: str) -> None:
        self.data = data
        self.archive = archive
        self.handle: tarfile.TarFile | zipfile.ZipFile | None = None

    def __enter__(self) -> _Reader:
        stream = io.BytesIO(self.data)
        if self.archive == "tar":
            self.handle = tarfile.open(fileobj=stream, mode="r:gz")
        else:
            self.handle = zipfile.ZipFile(stream)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()

    def __call__(self, member: _Member) -> IO[bytes]:
        if isinstance(self.handle, tarfile.TarFile) and isinstance(member.info, tarfile.TarInfo):
            stream = self.handle.extractfile(member.info)
            if stream is None:
                raise PackageError(f"{member.name!r} cannot be read from the archive")
            return stream
        if isinstance(self.handle, zipfile.ZipFile) and isinstance(member.info, zipfile.ZipInfo):
            return self.handle.open(member.info)
        raise PackageError(f"{member.name!r} cannot be read from the archive")


def _make_links(dest: Path, links: list[_Member], filename: str) -> None:
    for member in links:
        path = dest / member.name
        if os.path.lexists(path):
            raise PackageError(f"{filename!r}: {member.name!r} is both a link and a file")
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.symlink(member.target, path)
    real = os.path.realpath(dest)
    for member in links:
        resolved = os.path.realpath(dest / member.name)
        if resolved != real and not resolved.startswith(real + os.sep):
            raise PackageError(
                f"{filename!r}: the link {member.name!r} resolves outside the archive; links "
                "must stay inside it"
            )


# --- building a wheel ------------------------------------------------------------------------


def index_args(index_url: str | None, find_links: Sequence[str]) -> list[str]:
    """uv's options for where packages come from: the index (or none), then find-links."""
    args = ["--index-url", index_url] if index_url else ["--no-index"]
    for link in find_links:
        args += ["--find-links", link]
    return args


def uv_env(*, cache_dir: str, home: str, passthrough: bool = False) -> dict[str, str]:
    """uv's environment: its cache where we say, no configuration files, no Python
    downloads, plain output. `passthrough`: the platform's own proxy and certificate
    settings too (never for a sandboxed build, which runs the team's code)."""
    env = {
        "PATH": PATH,
        "HOME": home,
        "LANG": "C.UTF-8",
        "UV_CACHE_DIR": cache_dir,
        "UV_NO_CONFIG": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
        "NO_COLOR": "1",
    }
    if passthrough:
        env.update({k: os.environ[k] for k in NETWORK_VARIABLES if k in os.environ})
    return env


def build_wheel(
    upload: Upload,
    *,
    sandbox: Sandbox | None,
    uv: str,
    python: str,
    index_url: str | None,
    find_links: Sequence[str],
    timeout: float,
    max_bytes: int,
) -> BuiltWheel:
    """`uv build --wheel` of an sdist or source tree: in `sandbox` (the tenant's, as its uid,
    with its network and limits; uv and local find-links directories mounted read-only),
    or in a private temporary directory where sandboxes are off."""
    local_links = [link for link in find_links if os.path.isdir(link)]
    if sandbox is None:
        with tempfile.TemporaryDirectory(prefix="orc-build-") as tmp:
            base = Path(tmp)
            source = extract(upload, base / "src", max_bytes=max_bytes)
            out = base / "dist"
            out.mkdir()
            argv = _build_argv(uv, python, str(source), str(out), index_url, find_links)
            env = uv_env(cache_dir=str(base / "uv-cache"), home=str(base))
            sink = OutputSink(LOG_LIMIT)
            result = run_process(argv, env=env, cwd=str(base), timeout=timeout, sink=sink)
            return _built(
                upload,
                result.exit_code,
                result.timed_out,
                result.error,
                out,
                sink,
                timeout,
                max_bytes,
            )
    sandbox = dataclasses.replace(sandbox, readonly=(*sandbox.readonly, uv, *local_links))
    space = sandbox.workspace()
    try:
        source = extract(upload, space.work / "src", max_bytes=max_bytes)
        out = space.work / "dist"
        out.mkdir()
        if os.geteuid() == 0:
            _chown_tree(space.work / "src", sandbox.uid)
            os.chown(out, sandbox.uid, sandbox.gid)
        inside = f"{HOME}/{source.relative_to(space.work).as_posix()}"
        argv = _build_argv(uv, python, inside, f"{HOME}/dist", index_url, find_links)
        env = uv_env(cache_dir=f"{TMP}/uv-cache", home=HOME)
        sink = OutputSink(LOG_LIMIT)
        result = run_process(
            argv, env=env, cwd=None, timeout=timeout, sink=sink, sandbox=sandbox, workspace=space
        )
        return _built(
            upload, result.exit_code, result.timed_out, result.error, out, sink, timeout, max_bytes
        )
    finally:
        space.remove()


def _build_argv(
    uv: str,
    python: str,
    source: str,
    out: str,
    index_url: str | None,
    find_links: Sequence[str],
) -> list[str]:
    return [
        uv, "build", "--wheel", "--python", python, "--out-dir", out,
        *index_args(index_url, find_links), source,
    ]  # fmt: skip


def _chown_tree(root: Path, uid: int) -> None:
    os.lchown(root, uid, uid)
    for parent, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(parent, name), uid, uid)


def _built(
    upload: Upload,
    exit_code: int | None,
    timed_out: bool,
    error: str,
    out: Path,
    sink: OutputSink,
    timeout: float,
    max_bytes: int,
) -> BuiltWheel:
    log = sink.drain().decode("utf-8", "replace")
    if timed_out:
        raise PackageError(
            f"building a wheel from {upload.filename!r} took longer than {timeout:g}s "
            "(PACKAGE_BUILD_TIMEOUT)"
        )
    if error or exit_code != 0:
        why = error or f"exit code {exit_code}"
        raise PackageError(
            f"building a wheel from {upload.filename!r} failed ({why}):\n{_tail(log)}"
        )
    wheels = sorted(p.name for p in out.iterdir() if p.name.endswith(".whl"))
    if len(wheels) != 1:
        raise PackageError(
            f"building {upload.filename!r} made {len(wheels)} wheels, expected one:\n{_tail(log)}"
        )
    data = _read_private(out / wheels[0], EXTRACTED_FACTOR * max_bytes)
    return BuiltWheel(wheels[0], data, log)


def _read_private(path: Path, limit: int) -> bytes:
    """A file the sandboxed build wrote: never through a link it may have put there, never
    more than `limit` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise PackageError(f"the built wheel cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PackageError("the built wheel is not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise PackageError(f"the built wheel is larger than {limit} bytes")
    return data


def _tail(log: str, lines: int = 30) -> str:
    return "\n".join(log.strip().splitlines()[-lines:])


# --- what a wheel declares -------------------------------------------------------------------


def wheel_info(data: bytes, filename: str) -> WheelInfo:
    """The wheel's name, version, Requires-Python, Requires-Dist and importable top-level
    names, checked: its file name agrees with its METADATA, and the workers' interpreter
    (this one) can install it."""
    try:
        name, version, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise PackageError(f"{filename!r} is not a wheel's file name: {exc}") from None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            infos = sorted({n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA")})
            if len(infos) != 1:
                raise PackageError(
                    f"{filename!r} is not a wheel: a wheel holds one *.dist-info directory "
                    f"with METADATA, not {len(infos)}"
                )
            metadata = _read_member(archive, f"{infos[0]}/METADATA")
            record_name = f"{infos[0]}/RECORD"
            record = _read_member(archive, record_name) if record_name in names else ""
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise PackageError(f"{filename!r} is not a readable wheel (a zip): {exc}") from None
    if not record:
        raise PackageError(f"{filename!r} has no RECORD: not a complete wheel")
    meta = _parse_metadata(metadata, filename)
    declared = canonicalize_name(meta.name)
    if declared != name or meta.version != version:
        raise PackageError(
            f"{filename!r} names {name} {version}, but its METADATA says {meta.name} "
            f"{meta.version}: the file name must match"
        )
    _check_tags(filename, tags)
    requires_python = str(meta.requires_python or "")
    running = ".".join(map(str, sys.version_info[:3]))
    if meta.requires_python and not meta.requires_python.contains(running, prereleases=True):
        raise PackageError(
            f"{name} {version} requires Python {requires_python}; the workers run Python {running}"
        )
    return WheelInfo(
        filename=filename,
        name=str(name),
        version=str(Version(str(version))),
        requires_python=requires_python,
        requires_dist=tuple(str(r) for r in meta.requires_dist or ()),
        top_level=_top_level(record),
    )


def _read_member(archive: zipfile.ZipFile, name: str) -> str:
    with archive.open(name) as handle:
        raw = handle.read(METADATA_LIMIT + 1)
    if len(raw) > METADATA_LIMIT:
        raise PackageError(f"{name} is larger than {METADATA_LIMIT} bytes")
    return raw.decode("utf-8", "replace")


def _parse_metadata(text: str, filename: str) -> Metadata:
    try:
        meta = Metadata.from_email(text, validate=True)
    except ExceptionGroup as group:
        problems = "; ".join(str(e) for e in group.exceptions)
        raise PackageError(f"{filename!r}: its METADATA is invalid: {problems}") from None
    return meta


def _check_tags(filename: str, tags: frozenset[object]) -> None:
    supported = set(sys_tags())
    if not tags & supported:
        wanted = ", ".join(str(t) for t in list(sys_tags())[:3])
        raise PackageError(
            f"{filename!r} is built for {', '.join(sorted(map(str, tags)))}, which the "
            f"workers' Python {sys.version_info.major}.{sys.version_info.minor} cannot "
            f"install: upload a pure-Python wheel (py3-none-any) or one for {wanted}, ..."
        )


def _top_level(record: str) -> tuple[str, ...]:
    """Importable top-level names of a wheel's RECORD: top-level modules (x.py) and the
    directories holding Python files (packages and namespace packages); not the
    .dist-info and .data directories."""
    found: set[str] = set()
    for row in csv.reader(io.StringIO(record)):
        if not row:
            continue
        parts = row[0].split("/")
        top = parts[0]
        if top.endswith((".dist-info", ".data")):
            continue
        if len(parts) == 1 and top.endswith(".py") and top[:-3].isidentifier():
            found.add(top[:-3])
        elif len(parts) > 1 and top.isidentifier() and parts[-1].endswith(".py"):
            found.add(top)
    return tuple(sorted(found))


# --- locking the dependencies ----------------------------------------------------------------


def lock_dependencies(
    wheel_path: Path,
    *,
    uv: str,
    python: str,
    index_url: str | None,
    find_links: Sequence[str],
    timeout: float,
    cache_dir: str,
) -> tuple[list[str], str]:
    """The wheel's dependencies resolved into pinned, hashed lines ("name==version
    --hash=sha256:..."), binaries only, for `python`, and uv's log. Only index metadata
    and wheels are read (no package code runs), so this may run outside the sandbox."""
    own = canonicalize_name(parse_wheel_filename(wheel_path.name)[0])
    with tempfile.TemporaryDirectory(prefix="orc-lock-") as tmp:
        request = Path(tmp) / "requirements.in"
        request.write_text(f"{own} @ {wheel_path.resolve().as_uri()}\n")
        argv = [
            uv, "pip", "compile", str(request), "--generate-hashes", "--only-binary", ":all:",
            "--no-header", "--no-annotate", "--python", python,
            *index_args(index_url, find_links),
        ]  # fmt: skip
        env = uv_env(cache_dir=cache_dir, home=tmp, passthrough=True)
        try:
            done = subprocess.run(
                argv, capture_output=True, timeout=timeout, env=env, cwd=tmp, check=False
            )
        except subprocess.TimeoutExpired:
            raise PackageError(
                f"resolving the dependencies of {own} took longer than {timeout:g}s "
                "(PACKAGE_BUILD_TIMEOUT)"
            ) from None
    log = done.stderr.decode("utf-8", "replace")
    if done.returncode != 0:
        raise PackageError(
            f"the dependencies of {own} could not be resolved from "
            f"{_where(index_url, find_links)}: {log.strip()}"
        )
    return _lock_lines(done.stdout.decode("utf-8", "replace"), own), log


def _where(index_url: str | None, find_links: Sequence[str]) -> str:
    places = [f"the index {index_url}"] if index_url else []
    places += [f"find-links {link}" for link in find_links]
    return " and ".join(places) or "nowhere (PACKAGE_INDEX_URL and PACKAGE_FIND_LINKS are empty)"


def _lock_lines(output: str, own: str) -> list[str]:
    """uv's requirements output as one line per dependency, the package's own dropped."""
    logical: list[str] = []
    current = ""
    for raw in output.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current = f"{current} {line}" if current else line
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        logical.append(current)
        current = ""
    if current:
        logical.append(current)
    locked = []
    for line in logical:
        words = line.split()
        hashes = [w for w in words if w.startswith("--hash=")]
        text = " ".join(w for w in words if not w.startswith("--hash="))
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            raise PackageError(
                f"uv's lock has a line that does not parse: {line!r}: {exc}"
            ) from None
        name = canonicalize_name(requirement.name)
        if name == own and requirement.url:
            continue
        pins = list(requirement.specifier)
        if requirement.url or len(pins) != 1 or pins[0].operator != "==" or not hashes:
            raise PackageError(
                f"the dependency {text!r} is not a pinned release of the index: dependencies "
                "must come from the index (direct URLs are not accepted)"
            )
        locked.append(" ".join([f"{name}=={pins[0].version}", *hashes]))
    return locked
