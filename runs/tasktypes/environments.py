"""The workers' cache of team code environments: one virtual environment per package digest
(the sha256 of the team's wheel), built with uv on first use under a cache directory, shared
by the worker processes of a host and read by tasks running as the tenants' uids.

Why it is built this way:
- A digest's environment is built under an exclusive `flock` on `<root>/<digest>.lock`, so two
  worker processes never build the same one twice: the second waits and then finds it ready.
- It is built in `<root>/.build-<digest>-*` and renamed into place only when complete, its
  ready marker (`.orc-env.json`: what was built, its size and a manifest of every file's
  size) written last, so a crash never leaves a half-built environment that looks ready.
- `ensure()` checks the marker and stats the manifest's files each time (cheap), and
  rebuilds an environment found damaged.
- Least-recently-used environments are evicted after a build until the cache is within its
  size; one in use (a zygote runs from it: `use()` holds a shared lock) is skipped, since
  eviction only takes the exclusive lock without waiting.

No Django here: callers pass the settings in."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "NETWORK_VARIABLES",
    "Environment",
    "EnvironmentBuildFailed",
    "EnvironmentCache",
    "PackageSpec",
    "uv_binary",
]

MARKER = ".orc-env.json"
BUILD_PREFIX = ".build-"
TRASH_PREFIX = ".trash-"
UV_CACHE = ".uv-cache"
# Eviction spares an environment used this recently: a worker may be between `ensure()`
# (which found it ready) and `use()` (which will hold it).
RECENT_USE_SECONDS = 60.0
# Stat'ing an environment's files costs ~2.6 µs a file (measured: 30 files 0.1 ms, 1,430
# files 3.8 ms, 20,000 files 59 ms). An environment of more files than this has its dist-info
# RECORD files and a slice of this many of the others, from a random start, checked on each
# ensure (all of them over successive calls, whichever cache object makes them), which
# keeps a check near 1 ms (20,000 files: 1.2 ms).
CHECKED_FILES = 400
# uv's own cache (wheels it downloaded or unpacked) is emptied after a build when it has
# grown past this share of max_bytes.
UV_CACHE_SHARE = 0.25
OUTPUT_TAIL_LINES = 20
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# Passed to uv from the worker's environment: how to reach the package index, nothing else.
# What uv needs of the host's environment to reach an index (proxies, TLS roots): the
# upload's lock and build (runs/tasktypes/packages.py) pass the same.
NETWORK_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
MISSING = "missing"
DIGEST = re.compile(r"[0-9a-f]{64}")
WHEEL_NAME = re.compile(r"[A-Za-z0-9_.+!-]+\.whl")


@dataclass(frozen=True)
class _Marker:
    key: tuple[int, int, int]  # the file's (inode, mtime, size) when it was read
    digest: str
    size: int
    manifest: dict[str, int]  # relative path -> size, every file
    names: list[str]  # the manifest's files but its RECORD files
    records: list[str]  # its dist-info RECORD files


class EnvironmentBuildFailed(Exception):
    """A package's environment could not be built: the message says which step failed and
    ends with the tail of uv's output."""


@dataclass(frozen=True)
class PackageSpec:
    """What is needed to build a package's environment."""

    digest: str  # sha256 hex of the wheel
    name: str
    version: str
    filename: str  # the wheel's file name (uv needs a proper wheel file name)
    lock: tuple[str, ...]  # locked dependency lines "name==version --hash=sha256:..."

    @property
    def label(self) -> str:
        return f"{self.name} {self.version} (sha256 {self.digest[:8]}…)"


@dataclass(frozen=True)
class Environment:
    """A ready environment: run `python` (in a sandbox, `path` mounted read-only) inside
    `use(digest)`, so that eviction leaves it alone meanwhile."""

    digest: str
    path: Path  # the venv's root: <root>/<digest>
    python: Path  # path / "bin" / "python"
    built: bool  # this call built it (False: found ready, or built by another process)
    seconds: float  # time this call spent building it (0.0 when it did not)


def uv_binary() -> str:
    """The uv installed beside the worker's Python (a dependency of the project), else one
    on PATH."""
    beside = Path(sys.executable).with_name("uv")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("uv")
    if found is None:
        raise EnvironmentBuildFailed(
            f"uv is not installed: it was looked for beside {sys.executable} and on PATH "
            "(it is a dependency of the project: reinstall it with `make install`)"
        )
    return found


class EnvironmentCache:
    """The environments under `root`, at most `max_bytes` of them after each build (uv's
    own cache, `<root>/.uv-cache`, is kept under a quarter of that besides). `python` is
    the base interpreter of the venvs (`sandbox.interpreter()`); `index_url` (None: none)
    and `find_links` say where locked dependencies come from; `timeout` bounds each uv
    command, in seconds."""

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int,
        python: str,
        index_url: str | None,
        find_links: Sequence[str],
        timeout: float,
        uv: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.python = python
        self.index_url = index_url or None
        self.find_links = tuple(find_links)
        self.timeout = timeout
        self.uv = uv
        # A build runs at most three uv commands; a waiter gives up after that and more.
        self.lock_wait = 3 * timeout + 60
        # Parsed markers, by digest (the check then stats files and parses nothing).
        self._markers: dict[str, _Marker] = {}

    # -- the public operations ------------------------------------------------------------

    def ensure(
        self,
        spec: PackageSpec,
        wheel: Callable[[], bytes],
        log: Callable[[str], None] = lambda line: None,
    ) -> Environment:
        """The package's environment, built first when missing or damaged. `wheel()` gives
        the stored wheel's bytes (called only for a build); `log` gets human lines (the
        build's steps and uv's output) for the attempt that waited."""
        _check_digest(spec.digest)
        self._touch(spec.digest)  # before the check: eviction spares what was just used
        if self._problem(spec.digest) is None:
            return self._environment(spec.digest, built=False, seconds=0.0)
        self._make_root()
        asked = time.monotonic()
        fd = self._lock_to_build(spec.digest)
        if fd is None:  # another worker built it meanwhile (and may already run from it)
            log(
                f"waited {time.monotonic() - asked:.2f} s for another worker building "
                f"the environment of {spec.label}"
            )
            self._touch(spec.digest)
            return self._environment(spec.digest, built=False, seconds=0.0)
        try:
            problem = self._problem(spec.digest)
            if problem is None:
                log(
                    f"waited {time.monotonic() - asked:.2f} s for another worker building "
                    f"the environment of {spec.label}"
                )
                self._touch(spec.digest)
                return self._environment(spec.digest, built=False, seconds=0.0)
            if problem != MISSING:
                log(f"the environment of {spec.label} was damaged ({problem}): rebuilding")
                self._discard(spec.digest)
            seconds = self._build(spec, wheel, log)
            self._touch(spec.digest)
        finally:
            os.close(fd)
        self.evict(keep={spec.digest})
        self._trim_uv_cache()
        return self._environment(spec.digest, built=True, seconds=seconds)

    @contextlib.contextmanager
    def use(self, digest: str) -> Iterator[None]:
        """Hold a shared lock on the environment while a process runs from it, so eviction
        (which needs the exclusive lock and does not wait for it) skips it."""
        _check_digest(digest)
        self._make_root()
        fd = self._acquire(digest, fcntl.LOCK_SH, wait=self.lock_wait)
        assert fd is not None
        try:
            self._touch(digest)
            yield
        finally:
            self._touch(digest)
            os.close(fd)

    def evict(self, keep: Collection[str] = ()) -> list[str]:
        """Remove least-recently-used environments until the cache is within max_bytes,
        sparing `keep`, those in use and those used in the last minute. The digests
        removed, oldest first."""
        entries = sorted((self._last_use(d), d, self._size(d)) for d in self._digests())
        total = sum(size for _, _, size in entries)
        removed: list[str] = []
        for _, digest, size in entries:
            if total <= self.max_bytes:
                break
            if digest in keep or self._recently_used(digest):
                continue
            if self._remove_unused(digest, recheck=True):
                total -= size
                removed.append(digest)
        return removed

    def remove(self, digest: str) -> bool:
        """Remove the environment now: False when there is none or it is in use (or being
        built)."""
        _check_digest(digest)
        return self._remove_unused(digest, recheck=False)

    def size_bytes(self) -> int:
        """The environments' total size, from their markers (no walk of their files)."""
        return sum(self._size(digest) for digest in self._digests())

    # -- building ---------------------------------------------------------------------------

    def _build(
        self, spec: PackageSpec, wheel: Callable[[], bytes], log: Callable[[str], None]
    ) -> float:
        """Build the environment into a temporary directory and rename it into place: the
        seconds it took. The caller holds the digest's exclusive lock."""
        log(f"building the environment of {spec.label}")
        started = time.monotonic()
        _check_spec(spec)
        self._clean_leftovers(spec.digest)
        try:
            data = wheel()
        except OSError as error:
            raise EnvironmentBuildFailed(
                f"the stored wheel of {spec.label} could not be read: {error}"
            ) from error
        actual = hashlib.sha256(data).hexdigest()
        if actual != spec.digest:
            raise EnvironmentBuildFailed(
                f"the wheel of {spec.name} {spec.version} has sha256 {actual}, not the "
                f"package's digest {spec.digest}: refusing to install it"
            )
        build = Path(tempfile.mkdtemp(prefix=f"{BUILD_PREFIX}{spec.digest}-", dir=self.root))
        try:
            with self._uv_cache_shared():
                env = self._install(spec, data, build, log)
            os.replace(env, self.root / spec.digest)
        finally:
            shutil.rmtree(build, ignore_errors=True)
        seconds = time.monotonic() - started
        log(f"built in {seconds:.2f} s")
        return seconds

    def _install(
        self, spec: PackageSpec, data: bytes, build: Path, log: Callable[[str], None]
    ) -> Path:
        """Make the venv in `build`, install the lock and the wheel, open it up to the
        tasks' uids and write its marker: the venv's path."""
        env = build / "env"
        python = str(env / "bin" / "python")
        uv = self.uv or uv_binary()
        copy = ["--link-mode", "copy"]
        # Relocatable: its scripts find their interpreter relative to themselves, so the
        # venv works once renamed from the build directory to its place.
        venv = ["venv", "--python", self.python, "--no-project", "--relocatable", str(env), "-q"]
        self._run(uv, venv, build, log, f"creating the virtual environment of {spec.label}")
        if spec.lock:
            lock = build / "lock.txt"
            lock.write_text("\n".join(spec.lock) + "\n")
            args = ["pip", "install", "--python", python, "--require-hashes", "--no-deps"]
            args += ["--only-binary", ":all:", *copy, *self._index_args(), "-r", str(lock)]
            self._run(uv, args, build, log, f"installing the locked dependencies of {spec.label}")
        wheel_file = build / spec.filename
        wheel_file.write_bytes(data)
        args = ["pip", "install", "--python", python, "--no-deps", "--no-index", *copy]
        self._run(uv, [*args, str(wheel_file)], build, log, f"installing {spec.filename}")
        manifest = _open_up(env)
        marker = {
            "digest": spec.digest,
            "name": spec.name,
            "version": spec.version,
            "python": self.python,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "size": sum(manifest.values()),
            "manifest": manifest,
        }
        path = env / MARKER
        path.write_text(json.dumps(marker, sort_keys=True))
        path.chmod(0o644)
        return env

    def _index_args(self) -> list[str]:
        args = [] if self.index_url else ["--no-index"]
        for link in self.find_links:
            args += ["--find-links", link]
        if self.index_url:
            args += ["--index-url", self.index_url]
        return args

    def _run(
        self, uv: str, args: list[str], cwd: Path, log: Callable[[str], None], what: str
    ) -> None:
        """Run one uv command, its output to `log`; EnvironmentBuildFailed (with the
        output's tail) when it fails, cannot start or times out."""
        try:
            process = subprocess.Popen(
                [uv, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self._uv_env(),
                cwd=cwd,
                start_new_session=True,  # on timeout, everything it started goes too
            )
        except OSError as error:
            raise EnvironmentBuildFailed(
                f"{what} failed: uv ({uv}) did not start: {error}"
            ) from None
        try:
            output, _ = process.communicate(timeout=self.timeout)
            failure = None if process.returncode == 0 else f"uv exited with {process.returncode}"
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            failure = f"timed out after {self.timeout:g} s"
        lines = output.decode(errors="replace").splitlines()
        for line in lines:
            log(line)
        if failure is not None:
            tail = "\n".join(lines[-OUTPUT_TAIL_LINES:]) or "(uv said nothing)"
            raise EnvironmentBuildFailed(f"{what} failed ({failure}):\n{tail}")

    def _uv_env(self) -> dict[str, str]:
        """A minimal environment, not the worker's (which holds its secrets)."""
        env = {
            "PATH": os.environ.get("PATH") or DEFAULT_PATH,
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            "NO_COLOR": "1",
            "UV_CACHE_DIR": str(self.root / UV_CACHE),
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_NO_CONFIG": "1",
        }
        env.update({k: os.environ[k] for k in NETWORK_VARIABLES if k in os.environ})
        return env

    def _clean_leftovers(self, digest: str) -> None:
        """Remove build directories left by a crash (older than the timeout, their digest's
        lock free: this build's own digest is locked by us) and half-removed ones."""
        now = time.time()
        for entry in os.scandir(self.root):
            if entry.name.startswith(TRASH_PREFIX):
                shutil.rmtree(entry.path, ignore_errors=True)
            elif entry.name.startswith(BUILD_PREFIX):
                owner = entry.name[len(BUILD_PREFIX) :][:64]
                with contextlib.suppress(FileNotFoundError):
                    if now - entry.stat().st_mtime > self.timeout and (
                        owner == digest or self._lock_is_free(owner)
                    ):
                        shutil.rmtree(entry.path, ignore_errors=True)

    # -- uv's own cache ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _uv_cache_shared(self) -> Iterator[None]:
        """Builds use uv's cache under a shared lock; emptying it needs the exclusive one."""
        fd = os.open(self.root / f"{UV_CACHE}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def _trim_uv_cache(self) -> None:
        """Empty uv's cache once it passes its share of max_bytes, unless a build is using it
        (then a later build will)."""
        cache = self.root / UV_CACHE
        fd = os.open(self.root / f"{UV_CACHE}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            if _tree_size(cache) > self.max_bytes * UV_CACHE_SHARE:
                trash = self.root / f"{TRASH_PREFIX}uv-cache-{secrets.token_hex(4)}"
                os.replace(cache, trash)
                shutil.rmtree(trash, ignore_errors=True)
        finally:
            os.close(fd)

    # -- the environments on disk ----------------------------------------------------------

    def _problem(self, digest: str) -> str | None:
        """None when the environment is ready, MISSING when there is none, else what is
        wrong with it."""
        env = f"{self.root}/{digest}/"
        try:
            marker = self._marker(digest)
        except FileNotFoundError:
            return MISSING if not os.path.isdir(env) else "its ready marker is missing"
        except (OSError, ValueError) as error:
            return f"its ready marker is unreadable: {error}"
        if marker.digest != digest:
            return f"its ready marker names another digest, {marker.digest}"
        if not os.access(env + "bin/python", os.X_OK):
            return "bin/python is missing or not executable"
        manifest = marker.manifest
        for name in _to_check(marker):
            try:
                size = os.stat(env + name).st_size
            except OSError:
                return f"{name} is missing"
            if size != manifest[name]:
                return f"{name} has {size} bytes, not {manifest[name]}"
        return None

    def _marker(self, digest: str) -> _Marker:
        """The environment's ready marker, parsed once per version of the file."""
        path = self.root / digest / MARKER
        st = os.stat(path)
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._markers.get(digest)
        if cached is not None and cached.key == key:
            return cached
        data = json.loads(path.read_bytes())
        if not (
            isinstance(data, dict)
            and isinstance(data.get("digest"), str)
            and isinstance(data.get("size"), int)
            and isinstance(data.get("manifest"), dict)
            and all(isinstance(v, int) for v in data["manifest"].values())
        ):
            raise ValueError("digest, size and manifest were expected")
        manifest: dict[str, int] = data["manifest"]
        names = [n for n in manifest if not n.endswith(".dist-info/RECORD")]
        records = [n for n in manifest if n.endswith(".dist-info/RECORD")]
        marker = _Marker(key, data["digest"], data["size"], manifest, names, records)
        self._markers[digest] = marker
        return marker

    def _environment(self, digest: str, *, built: bool, seconds: float) -> Environment:
        path = self.root / digest
        return Environment(digest, path, path / "bin" / "python", built, seconds)

    def _digests(self) -> list[str]:
        with contextlib.suppress(FileNotFoundError):
            return [
                e.name for e in os.scandir(self.root) if DIGEST.fullmatch(e.name) and e.is_dir()
            ]
        return []

    def _size(self, digest: str) -> int:
        try:
            return self._marker(digest).size
        except (OSError, ValueError):
            return _tree_size(self.root / digest)  # a damaged one: what it really takes

    def _last_use(self, digest: str) -> float:
        for path in (self.root / f"{digest}.used", self.root / digest):
            with contextlib.suppress(FileNotFoundError):
                return path.stat().st_mtime
        return 0.0

    def _recently_used(self, digest: str) -> bool:
        return time.time() - self._last_use(digest) < RECENT_USE_SECONDS

    def _touch(self, digest: str) -> None:
        """Record a use (the LRU clock), for an environment that exists."""
        used = self.root / f"{digest}.used"
        try:
            os.utime(used)
        except FileNotFoundError:
            if os.path.isdir(self.root / digest):
                used.touch(mode=0o644)

    def _remove_unused(self, digest: str, *, recheck: bool) -> bool:
        """Remove the environment if nobody holds its lock (and, for eviction, nobody used
        it since the caller looked)."""
        fd = self._acquire(digest, fcntl.LOCK_EX, wait=None)
        if fd is None:
            return False
        try:
            if not os.path.isdir(self.root / digest) or (recheck and self._recently_used(digest)):
                return False
            self._discard(digest)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.root / f"{digest}.used")
            # Unlinked while held: whoever opened it meanwhile sees it gone and retries.
            os.unlink(self.root / f"{digest}.lock")
            return True
        finally:
            os.close(fd)

    def _discard(self, digest: str) -> None:
        """Remove the environment's directory (the caller holds its exclusive lock): renamed
        away first, so others see it whole or not at all."""
        self._markers.pop(digest, None)
        trash = self.root / f"{TRASH_PREFIX}{digest}-{secrets.token_hex(4)}"
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.root / digest, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def _make_root(self) -> None:
        if not self.root.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
        if stat.S_IMODE(self.root.stat().st_mode) != 0o755:
            self.root.chmod(0o755)

    # -- locks ------------------------------------------------------------------------------

    def _acquire(self, digest: str, operation: int, *, wait: float | None) -> int | None:
        """An open descriptor of the digest's lock file holding `operation` (LOCK_EX or
        LOCK_SH). With `wait` None, one try (None if busy); else polls up to `wait`
        seconds, then raises."""
        path = self.root / f"{digest}.lock"
        deadline = None if wait is None else time.monotonic() + wait
        pause = 0.005
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, operation | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if deadline is None:
                    return None
                if time.monotonic() >= deadline:
                    raise EnvironmentBuildFailed(
                        f"the environment {digest} stayed locked by another worker for "
                        f"{wait:g} s (building it, or running from it)"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
                continue
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, path):
                return fd
            os.close(fd)  # removed with its environment meanwhile: lock the new file

    def _lock_to_build(self, digest: str) -> int | None:
        """The exclusive lock of the digest, to build its environment; None as soon as the
        environment is ready (built by another worker, whose zygote may hold the shared
        lock from then on: waiting for the exclusive one would wait for that zygote)."""
        deadline = time.monotonic() + self.lock_wait
        pause = 0.005
        while True:
            fd = self._acquire(digest, fcntl.LOCK_EX, wait=None)
            if fd is not None:
                return fd
            if self._problem(digest) is None:
                return None
            if time.monotonic() >= deadline:
                raise EnvironmentBuildFailed(
                    f"the environment {digest} stayed locked by another worker for "
                    f"{self.lock_wait:g} s (building it) and is still not ready"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _lock_is_free(self, digest: str) -> bool:
        try:
            fd = os.open(self.root / f"{digest}.lock", os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
        return True


def _check_digest(digest: str) -> None:
    if not DIGEST.fullmatch(digest):
        raise ValueError(
            f"digest: {digest!r} is not a package digest (64 lowercase hex characters of "
            "a sha256 were expected)"
        )


def _check_spec(spec: PackageSpec) -> None:
    """Refuse what would not be a single wheel file name or a plain requirement line: the
    lock is written to a requirements file, where an option line would change uv's mind."""
    if not WHEEL_NAME.fullmatch(spec.filename) or spec.filename.startswith("."):
        raise EnvironmentBuildFailed(
            f"filename: {spec.filename!r} is not a wheel's file name "
            "(name-version-tags.whl, no directory, was expected)"
        )
    for index, line in enumerate(spec.lock):
        if not line.strip() or line.lstrip().startswith("-") or "\n" in line or "\r" in line:
            raise EnvironmentBuildFailed(
                f"lock[{index}]: {line!r} is not a locked requirement "
                "('name==version --hash=sha256:...' was expected)"
            )


def _open_up(env: Path) -> dict[str, int]:
    """Make the environment readable by the tasks' uids (directories 0755, files 0644 or
    0755 when executable) whatever the worker's umask: its manifest, path -> size."""
    manifest: dict[str, int] = {}
    for directory, _, files in os.walk(env):
        os.chmod(directory, 0o755)  # noqa: S103 (read by the tenants' uids)
        for name in files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                continue  # symlinks (bin/python -> the base interpreter) are checked apart
            os.chmod(path, 0o755 if st.st_mode & stat.S_IXUSR else 0o644)
            manifest[os.path.relpath(path, env)] = st.st_size
    return manifest


def _to_check(marker: _Marker) -> Sequence[str]:
    """All the files of a small environment; of a big one its RECORD files and a slice of
    the others from a random start."""
    if len(marker.manifest) <= CHECKED_FILES:
        return list(marker.manifest)
    start = secrets.randbelow(len(marker.names))
    window = marker.names[start : start + CHECKED_FILES]
    return [*marker.records, *window, *marker.names[: CHECKED_FILES - len(window)]]


def _tree_size(root: Path) -> int:
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
