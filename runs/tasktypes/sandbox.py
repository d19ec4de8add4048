"""The sandbox of shell and python tasks: bubblewrap (`bwrap`) around its PID 1, the compiled
`orc-sandbox-init` (runs/tasktypes/sandbox_init.c) or, where it is not built, `supervise.py`.

What a task gets (docs/task-types.md, "What a task can reach"):
- its tenant's own uid and gid (`Sandbox.uid`), never the worker's and never root. A root
  worker starts bwrap as that uid (so the kernel counts the task's processes against it);
  an unprivileged worker cannot, and bwrap maps the same uid onto the worker's own;
- its own user, PID, IPC and UTS namespaces: it sees only its own processes, and when its
  main process ends, the namespace's init (the supervisor) kills and reaps everything
  left in it, `setsid` and double forks included (or ends, and the kernel does). A shell
  task's sandbox then serves the tenant's next shell task of the same settings, emptied
  of everything the last one could write (`serve_command`);
- its own mount view: the system's directories read-only (/usr and a few files of /etc), a
  private working directory (HOME, /home/task) and /tmp, emptied or deleted afterwards. The
  project's code, its virtual environment, settings and var/ are not there; a python task
  also sees the interpreter, the site-packages (without the project's own packages) and
  the runner's few modules, read-only;
- no descriptor of the worker's but stdin, stdout and stderr; no_new_privs (bwrap always
  sets it), no capabilities;
- resource limits (`Limits`) set by the supervisor before it starts the task;
- with `network="none"`, a network namespace of its own with nothing but loopback.

The platform's secrets are never in the task's environment (the executor builds it from
nothing), so with the default `egress` network what a task can reach of the platform is
what its deployment lets any host on that network reach: docs/deployment.md.

Pure standard library: building the command line and reading its outcome need no Django.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import shutil
import signal
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runs.tasktypes.supervise import format_limits

__all__ = [
    "HOME",
    "LIMIT_SIGNALS",
    "TMP",
    "Limits",
    "Sandbox",
    "SandboxUnavailable",
    "Workspace",
    "check_traversable",
    "init_program",
    "interpreter",
    "limit_hint",
    "parse_status",
    "probe",
    "remove_tree",
    "sweep_etc_copies",
    "sweep_workspaces",
    "uid_for",
]

logger = logging.getLogger(__name__)
SUPERVISOR = Path(__file__).with_name("supervise.py")
HOME = "/home/task"  # the task's private working directory, inside the sandbox
TMP = "/tmp"  # noqa: S108 (the sandbox's own /tmp: a private directory of the task's)
RUNNER_DIR = "/orc/python"  # the python runner's modules, inside the sandbox
SUPERVISOR_INSIDE = "/orc/supervise.py"  # where the sandbox sees it
INIT_NAME = "orc-sandbox-init"  # the compiled PID 1, in the environment's bin directory
INIT_INSIDE = "/orc/init"  # where the sandbox sees it

# /etc files a process commonly needs (name resolution, TLS roots, time zones, the dynamic
# linker, Debian's alternatives); the rest of /etc (service configurations, shadow) is not
# there. passwd and group hold the task's own user only (`_identity`). A sandbox sees them
# as one read-only copy (`prepared_etc`).
ETC_PATHS = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "crypto-policies",
    "gai.conf",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "pki",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
    "timezone",
)
ETC_SOURCE = "/etc"  # the host's, copied for the tasks (`prepared_etc`)
# How often the copy of the ETC_PATHS entries is compared with the host's (a changed
# resolv.conf, new certificates): a sandbox made later sees the change.
ETC_RECHECK_SECONDS = 10.0
# A sandbox that serves one task after another (`Sandbox.serve_command`): its root and /dev
# read-only, so that what a task can write is its HOME and /tmp, /dev/shm and /dev/mqueue
# (POSIX message queues), which PID 1 empties with the System V IPC objects before the next
# task (supervise.py `serve`, sandbox_init.c `tidy`).
SERVED = (
    "--tmpfs",
    "/dev/shm",  # noqa: S108 (the sandbox's own)
    "--mqueue",
    "/dev/mqueue",
    "--remount-ro",
    "/dev",
    "--remount-ro",
    "/",
)
# Top-level directories that are, on merged-/usr systems, links into /usr.
USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
LIMIT_SIGNALS = {
    int(signal.SIGXCPU): "cpu_seconds",
    int(signal.SIGXFSZ): "file_size_mb",
}


class SandboxUnavailable(Exception):
    """This worker cannot make the sandbox (bwrap missing, namespaces not permitted)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits; 0 or None: none. `memory_mb` bounds the address space."""

    memory_mb: int | None = None
    cpu_seconds: int | None = None
    processes: int | None = None
    open_files: int | None = None
    file_size_mb: int | None = None

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if v}

    def describe(self, name: str) -> str:
        value = getattr(self, name)
        unit = {"memory_mb": " MB of memory (address space)", "file_size_mb": " MB per file"}
        return f"{name}: {value}{unit.get(name, '')}"


@dataclass(frozen=True)
class Workspace:
    """A task's host directories: `work` (its HOME and working directory) and `tmp`. Made
    by `Sandbox.workspace`, removed by `remove`.

    The process that made it holds an exclusive flock on `base` until `remove`: the kernel
    drops it when that process dies, however it ends, so `sweep_workspaces` can tell what
    a worker killed with SIGKILL (or by the OOM killer) left from what is in use."""

    base: Path
    _lock: list[int] = field(default_factory=list, compare=False, repr=False)

    @property
    def work(self) -> Path:
        return self.base / "work"

    @property
    def tmp(self) -> Path:
        return self.base / "tmp"

    def remove(self) -> None:
        try:
            self._remove()
        finally:
            while self._lock:  # closed once: a number closed twice could be another's
                with contextlib.suppress(OSError):
                    os.close(self._lock.pop())

    def _remove(self) -> None:
        try:  # what most tasks leave: two empty directories (three calls, not a tree walk)
            for emptied in (self.work, self.tmp, self.base):
                os.rmdir(emptied)
            return
        except FileNotFoundError:
            if not self.base.exists():
                return
        except OSError:
            pass
        remove_tree(self.base)


def remove_tree(base: Path) -> None:
    """Remove `base` and everything in it, links not followed. Not as root, the files are
    this process's own, but directories closed to their owner (a task's `chmod 000`, a
    copied root-only /etc directory) are opened first."""
    if os.geteuid() != 0:
        for parent, dirs, _ in os.walk(base):
            for name in dirs:
                path = os.path.join(parent, name)
                if not os.path.islink(path):
                    with contextlib.suppress(OSError):
                        os.chmod(path, 0o700)
    shutil.rmtree(base)


def uid_for(tenant_id: int, uids: str) -> int:
    """The tenant's uid in the range "first-last" (tenant id N: first + N)."""
    first, _, last = uids.partition("-")
    try:
        low, high = int(first), int(last)
    except ValueError:
        raise SandboxUnavailable(
            f"TASK_SANDBOX_UIDS={uids!r}: expected a range of uids such as 200000-299999"
        ) from None
    if low < 1000 or high < low:
        raise SandboxUnavailable(
            f"TASK_SANDBOX_UIDS={uids!r}: expected first-last with 1000 <= first <= last"
        )
    uid = low + tenant_id
    if uid > high:
        raise SandboxUnavailable(
            f"tenant {tenant_id} has no uid: TASK_SANDBOX_UIDS={uids} holds tenant ids up to "
            f"{high - low}; widen the range"
        )
    return uid


@dataclass(frozen=True)
class Sandbox:
    uid: int
    root: Path  # where workspaces are made (host)
    network: str = "egress"  # or "none"
    limits: Limits = field(default_factory=Limits)
    bwrap: str = "bwrap"
    readonly: Sequence[str] = ()  # extra host paths, read-only at the same place
    mounts: Sequence[tuple[str, bool]] = ()  # the tenant's host directories: (path, writable)
    python: bool = False  # a python task: the interpreter, site-packages and runner
    # The runner's module files: (host file, path under RUNNER_DIR), e.g. runs/library.py.
    runner_modules: Sequence[tuple[str, str]] = ()
    hidden_packages: Sequence[str] = ()  # the project's own packages, hidden in site-packages
    # A team code package's virtual environment (host path, python only): mounted read-only
    # at the same place instead of the interpreter's site-packages.
    environment: str | None = None
    # How long a sandbox made ahead for the next task of these settings is kept unused
    # (runs/tasktypes/process.py, `Prestarted`); 0: none is made ahead.
    warm_seconds: float = 0.0
    # The compiled PID 1 (host path, `init_program`); "": supervise.py under the worker's
    # interpreter, which does the same at about 16 ms more CPU per task.
    init: str = ""

    @property
    def gid(self) -> int:
        return self.uid

    # --- the task's directories -----------------------------------------------------------

    def workspace(self) -> Workspace:
        """Fresh host directories for one task, owned by its uid (when the worker may
        give them away), unreadable to everyone else."""
        self.root.mkdir(mode=0o711, parents=True, exist_ok=True)
        check_traversable(self.root)
        base = Path(_mkdtemp(self.root))
        lock = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(lock, fcntl.LOCK_EX)  # ours until removed (Workspace)
        os.chmod(base, 0o711)  # noqa: S103 (traversable, not listable: the uid's dirs inside)
        space = Workspace(base, [lock])
        for path in (space.work, space.tmp):
            path.mkdir(mode=0o700)
            if os.geteuid() == 0:
                os.chown(path, self.uid, self.gid)
        return space

    # --- the command line -----------------------------------------------------------------

    def command(
        self,
        argv: Sequence[str],
        *,
        space: Workspace,
        cwd: str | None,
        status_fd: int,
        info_fd: int,
    ) -> list[str]:
        """bwrap's argv running `argv` under the supervisor as the sandbox's PID 1."""
        config = f"{status_fd}:{format_limits(self.limits.as_dict())}"
        pid1 = [*self._pid1(), "--init", config, "--"]
        return [*self._options(space, cwd, info_fd), "--", *pid1, *argv]

    def serve_command(
        self, *, space: Workspace, status_fd: int, info_fd: int, control_fd: int
    ) -> list[str]:
        """bwrap's argv for a sandbox made before its tasks are known: the supervisor, its
        PID 1, waits for them on `control_fd` (supervise.py `--serve`), one after another.
        A task's limits and working directory come with it, not from here. What a task can
        write there is what PID 1 empties for the next (SERVED)."""
        config = f"{status_fd}:{control_fd}"
        options = [*self._options(space, None, info_fd), *SERVED]
        return [*options, "--", *self._pid1(), "--serve", config]

    def _pid1(self) -> list[str]:
        if self.init:
            return [INIT_INSIDE]
        return [interpreter(), "-I", "-S", SUPERVISOR_INSIDE]

    def _options(self, space: Workspace, cwd: str | None, info_fd: int) -> list[str]:
        return [
            self.bwrap,
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            *(["--unshare-net"] if self.network == "none" else []),
            "--uid",
            str(self.uid),
            "--gid",
            str(self.gid),
            "--hostname",
            "task",
            "--die-with-parent",
            "--as-pid-1",
            "--info-fd",
            str(info_fd),
            *self._mounts(space),
            "--chdir",
            _inside_cwd(cwd),
        ]

    def enter(self, space: Workspace, cwd: str | None) -> str:
        """The task's working directory inside the sandbox; a relative `cwd` (checked free of
        '..' by the caller) is made in its private directory first, owned by its uid.

        Made one component at a time through directory descriptors that never follow a
        link: a directory a sandbox serves task after task may hold what the tenant put
        there (a link to /etc, say), and this process may be root."""
        if cwd and not cwd.startswith("/"):
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            at = os.open(space.work, flags)
            try:
                for part in Path(cwd).parts:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=at)
                    inner = os.open(part, flags, dir_fd=at)  # a link: refused (ELOOP)
                    os.close(at)
                    at = inner
                    if os.geteuid() == 0:
                        os.fchown(at, self.uid, self.gid)
            finally:
                os.close(at)
        return _inside_cwd(cwd)

    def _mounts(self, space: Workspace) -> list[str]:
        args = list(_usr_mounts())
        own = [path for path, _ in self.mounts] + list(self.readonly)
        if any(path == "/etc" or path.startswith("/etc/") for path in own):
            args += _etc_binds()  # a mount of its own inside /etc: on a writable /etc
        else:
            args += ["--ro-bind", str(prepared_etc(self.root)), "/etc"]
        identity = _identity(self.root, self.uid, self.gid)
        args += [
            "--ro-bind",
            str(identity / "passwd"),
            "/etc/passwd",
            "--ro-bind",
            str(identity / "group"),
            "/etc/group",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--bind",
            str(space.work),
            HOME,
            "--bind",
            str(space.tmp),
            TMP,
            "--ro-bind",
            *((self.init, INIT_INSIDE) if self.init else (str(SUPERVISOR), SUPERVISOR_INSIDE)),
        ]
        args += _python_mounts(self) if self.python else _interpreter_mounts()
        for extra in self.readonly:
            args += ["--ro-bind-try", extra, extra]
        for mount, writable in self.mounts:
            args += ["--bind" if writable else "--ro-bind", mount, mount]
        return args

    @property
    def reusable(self) -> bool:
        """Whether a sandbox of these settings may serve task after task: not when a mount of
        the tenant's (or a read-only path) lies inside what a task's end empties (its HOME,
        /tmp, /dev), where emptying would reach into the tenant's own files."""
        own = [path for path, _ in self.mounts] + list(self.readonly)
        emptied = (HOME, TMP, "/dev")
        return not any(path.startswith(f"{inside}/") for path in own for inside in emptied)

    def python_path(self) -> str:
        """PYTHONPATH of a python task: the runner's modules, then site-packages (a package's
        environment brings its own, through its interpreter)."""
        if self.environment is not None:
            return RUNNER_DIR
        return os.pathsep.join([RUNNER_DIR, *_site_packages()])


@functools.cache
def init_program(choice: str = "auto") -> str:
    """The sandbox's PID 1 for the setting TASK_SANDBOX_INIT: the host path of the compiled
    one, or "" for supervise.py. "auto": `orc-sandbox-init` in this environment's bin
    directory (built by `make install` and in the image) when it is there and the tasks'
    uids can reach it, else supervise.py; "python": supervise.py; a path: that program,
    which must be there."""
    if choice == "python":
        return ""
    if choice == "auto":
        path = Path(sys.prefix) / "bin" / INIT_NAME
        if not (path.is_file() and os.access(path, os.X_OK)):
            return ""
        try:
            check_traversable(path.parent, "TASK_SANDBOX_INIT")
        except SandboxUnavailable:
            return ""
        return str(path)
    path = Path(choice)
    if not (path.is_absolute() and path.is_file() and os.access(path, os.X_OK)):
        raise SandboxUnavailable(
            f"TASK_SANDBOX_INIT={choice!r} is not an executable file: build it with "
            f"`make install` (cc -O2 -o {INIT_NAME} runs/tasktypes/sandbox_init.c), or set "
            "TASK_SANDBOX_INIT=auto or python"
        )
    check_traversable(path.parent, "TASK_SANDBOX_INIT")
    return str(path)


def interpreter() -> str:
    """The worker's Python, outside any virtual environment (the sandbox sees no venv)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return os.path.join(sys.base_prefix, "bin", version)


def _interpreter_mounts() -> list[str]:
    prefix = sys.base_prefix
    if prefix == "/usr" or prefix.startswith("/usr/"):
        return []  # under /usr, already there
    return ["--ro-bind", prefix, prefix]


def _site_packages() -> list[str]:
    paths = sysconfig.get_paths()
    return list(dict.fromkeys(p for p in (paths["purelib"], paths["platlib"]) if p))


def _python_mounts(sandbox: Sandbox) -> list[str]:
    args = _interpreter_mounts()
    if sandbox.environment is not None:
        check_traversable(Path(sandbox.environment).parent, "PACKAGE_ENV_DIR")
        args += ["--ro-bind", sandbox.environment, sandbox.environment]
    for site in () if sandbox.environment is not None else _site_packages():
        if os.path.isdir(site):
            args += ["--ro-bind", site, site]
            for name in sandbox.hidden_packages:
                if os.path.isdir(os.path.join(site, name)):
                    args += ["--tmpfs", os.path.join(site, name)]
    for host, inside in _runner_files(sandbox.runner_modules):
        args += ["--ro-bind", host, inside]
    return args


def _runner_files(files: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Host module files of the `runs` package, at /orc/python/<path> inside."""
    return [(host, f"{RUNNER_DIR}/{path}") for host, path in files]


def _inside_cwd(cwd: str | None) -> str:
    if not cwd:
        return HOME
    return cwd if cwd.startswith("/") else os.path.normpath(os.path.join(HOME, cwd))


@functools.cache
def check_traversable(root: Path, setting: str = "TASK_SANDBOX_ROOT") -> None:
    """The tasks' uids must reach `root` (their directories, a package's environment)."""
    for path in (root, *root.parents):
        if not os.stat(path).st_mode & 0o001:
            raise SandboxUnavailable(
                f"the directory {root} is out of the tasks' reach: {path} is not "
                f"traversable by other users (chmod o+x {path}, or set {setting})"
            )


WORKSPACE_PREFIX = "task-"
SWEEP_MIN_AGE_SECONDS = 60.0


def _mkdtemp(root: Path) -> str:
    import tempfile

    return tempfile.mkdtemp(prefix=WORKSPACE_PREFIX, dir=root)


def sweep_workspaces(root: Path, min_age: float = SWEEP_MIN_AGE_SECONDS) -> int:
    """Remove the task workspaces under `root` that no live process holds (Workspace): what
    a worker killed mid-task left, the task's files included. One made in the last
    `min_age` seconds is left alone (its maker locks it right after making it). Returns
    how many were removed; what cannot be read or removed is left for the next sweep."""
    return _sweep(root, lambda name: name.startswith(WORKSPACE_PREFIX), min_age)


def _sweep(folder: Path, ours: Callable[[str], bool], min_age: float) -> int:
    """Remove the directories in `folder` named `ours` that nobody holds a flock on and
    that have not changed for `min_age` seconds; links are not followed."""
    try:
        entries = [e for e in os.scandir(folder) if ours(e.name)]
    except OSError:
        return 0
    removed, now = 0, time.time()
    for entry in entries:
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < min_age:
                continue
            held = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # gone, not a directory, or a link: not ours to follow
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(held)  # in use by a live process
            continue
        try:
            remove_tree(Path(entry.path))
            removed += 1
        except OSError as exc:
            logger.warning("could not remove %s, left by a stopped worker: %s", entry.path, exc)
        finally:
            os.close(held)
    return removed


# --- outcome ---------------------------------------------------------------------------------

_ALLOCATION_FAILED = (
    b"MemoryError",
    b"Cannot allocate memory",
    b"out of memory",
    b"Out of memory",
    b"bad_alloc",
    b"memory exhausted",
)
_FORK_FAILED = (
    b"Resource temporarily unavailable",
    b"fork: retry",
    b"Cannot fork",
    b"can't fork",
)
_FILE_TOO_LARGE = (b"File too large",)


def limit_hint(limits: Limits, *, exit_code: int | None, tail: bytes) -> str | None:
    """Which limit a failed task most likely hit: certain for the limits the kernel
    enforces with a signal (cpu_seconds: SIGXCPU, file_size_mb: SIGXFSZ), read from the
    end of its output for the others (a failed allocation, fork or write)."""
    # Killed by the signal (negative), or a shell reporting its child's death (128 + n).
    number = -exit_code if exit_code and exit_code < 0 else (exit_code or 0) - 128
    name = LIMIT_SIGNALS.get(number)
    if name and getattr(limits, name):
        return f"the task exceeded its limit {limits.describe(name)}"
    if exit_code == 0:
        return None
    checks = (
        ("memory_mb", _ALLOCATION_FAILED),
        ("processes", _FORK_FAILED),
        ("file_size_mb", _FILE_TOO_LARGE),
    )
    for name, phrases in checks:
        if getattr(limits, name) and any(p in tail for p in phrases):
            return f"the task most likely reached its limit {limits.describe(name)}"
    return None


def probe(bwrap: str = "bwrap", uid: int | None = None) -> str | None:
    """None if this process can make a sandbox (as `uid` when root); else why not. It uses
    what a sandbox serving task after task needs of bwrap (SERVED: a POSIX message queue
    mount, read-only remounts), so an older bwrap is named here, not at the first task."""
    import subprocess

    path = shutil.which(bwrap)
    if path is None:
        return (
            f"{bwrap!r} (bubblewrap) is not installed on this worker: install it "
            "(Debian/Ubuntu: apt-get install bubblewrap)"
        )
    drop: dict[str, Any] = {}
    if os.geteuid() == 0 and uid is not None:
        drop = {"user": uid, "group": uid, "extra_groups": []}
    argv = [
        path,
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--die-with-parent",
        *_system_mounts(),
        *_interpreter_mounts(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        *SERVED,
        "--",
        interpreter(),
        "-I",
        "-S",
        "-c",
        "pass",
    ]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=30, check=False, **drop)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bubblewrap could not start: {exc}"
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip() or f"exit code {done.returncode}"
        return f"bubblewrap cannot make a sandbox here: {message}"
    return None


def _system_mounts() -> tuple[str, ...]:
    return (*_usr_mounts(), *_etc_binds())


@functools.cache
def _usr_mounts() -> tuple[str, ...]:
    """/usr and the top-level links into it (or the directories, where /usr is not merged),
    read-only: the host's layout, read once per process."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in USR_LINKS:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return tuple(args)


def _etc_binds() -> tuple[str, ...]:
    """The ETC_PATHS entries bound one by one (about 20 mounts, each costing a sandbox's
    start and teardown CPU): where the task has a mount of its own inside /etc."""
    args: list[str] = []
    for name in ETC_PATHS:
        if os.path.exists(f"/etc/{name}"):
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    return tuple(args)


_ETC_LOCK = threading.Lock()
_ETC_COPIES: dict[Path, tuple[float, Path]] = {}  # root -> (when compared, the copy)
# The copies this process has used, each held (a shared flock) for the process's lifetime:
# a sandbox it made may bind one, and `sweep_etc_copies` removes only those nobody holds.
_ETC_HELD: dict[Path, int] = {}
_IDENTITIES: set[tuple[Path, int]] = set()


def prepared_etc(root: Path) -> Path:
    """A copy of the host's ETC_PATHS entries under `root`, bound read-only at /etc as one
    mount rather than about 20 (each one costs the sandbox's start and teardown CPU: about
    4 ms of a shell task's on the 2-core machine, docs/performance.md).

    Named by a digest of what it copies (names, types, sizes, times, inodes), so the worker
    processes of a host share one, and a change on the host (a new resolv.conf, renewed
    certificates) makes a new one, which sandboxes made after the next comparison (at most
    ETC_RECHECK_SECONDS later) see. A top-level link is followed, as a bind would; links
    inside directories stay links (into /usr, which the sandbox has). What the worker
    cannot read is left out; modes are kept, so what only root may read stays so. `passwd`
    and `group` are empty: the task's own are bound over them (`_identity`). Copies the
    host's /etc no longer matches stay while a process that used them lives (a sandbox
    may have one bound); `sweep_etc_copies` removes them after."""
    now = time.monotonic()
    with _ETC_LOCK:
        known = _ETC_COPIES.get(root)
        if known is not None and now - known[0] < ETC_RECHECK_SECONDS and known[1].is_dir():
            return known[1]
        digest = hashlib.sha256(repr(_etc_state()).encode()).hexdigest()[:20]
        copy = root / "etc" / digest
        while not _hold(copy):
            _copy_etc(copy)
        _ETC_COPIES[root] = (now, copy)
        return copy


def _hold(copy: Path) -> bool:
    """Hold `copy` (shared) for this process's lifetime; False if it does not exist (not
    made yet, or a sweep removed it before the lock was ours)."""
    if copy in _ETC_HELD:
        return True
    try:
        held = os.open(copy, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    fcntl.flock(held, fcntl.LOCK_SH)
    if os.fstat(held).st_nlink == 0:  # removed between the open and the lock
        os.close(held)
        return False
    _ETC_HELD[copy] = held
    return True


def sweep_etc_copies(root: Path, min_age: float = SWEEP_MIN_AGE_SECONDS) -> int:
    """Remove the copies of /etc under `root` (prepared_etc) that no live process holds:
    those the host no longer matches once the workers that used them are gone, and what a
    worker killed while copying left (`.new-*`). One changed in the last `min_age`
    seconds is left alone. Returns how many were removed."""
    return _sweep(root / "etc", lambda name: True, min_age)


def _etc_state() -> list[tuple[str, int, int, int, int]]:
    state = []
    for name in ETC_PATHS:
        top = os.path.join(ETC_SOURCE, name)
        try:
            info = os.stat(top)
        except OSError:
            continue
        state.append(_signature(name, info))
        if not os.path.isdir(top):
            continue
        for parent, dirs, files in os.walk(top):
            for entry in sorted(dirs + files):
                path = os.path.join(parent, entry)
                with contextlib.suppress(OSError):
                    state.append(_signature(os.path.relpath(path, ETC_SOURCE), os.lstat(path)))
    return state


def _signature(name: str, info: os.stat_result) -> tuple[str, int, int, int, int]:
    return (name, info.st_mode, info.st_size, info.st_mtime_ns, info.st_ino)


def _copy_etc(copy: Path) -> None:
    """Made aside and renamed into place: a copy there is complete."""
    copy.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
    import tempfile

    made = Path(tempfile.mkdtemp(prefix=".new-", dir=copy.parent))
    try:
        for name in ETC_PATHS:
            source, target = Path(ETC_SOURCE) / name, made / name
            with contextlib.suppress(OSError, shutil.Error):
                if source.is_dir():
                    shutil.copytree(source, target, symlinks=True, ignore_dangling_symlinks=True)
                elif source.exists():
                    shutil.copy2(source, target)
        for name in ("passwd", "group"):
            (made / name).touch(mode=0o644)
        os.chmod(made, 0o755)  # noqa: S103 (the tasks' uids read it, as they read /etc)
        try:
            os.rename(made, copy)
        except OSError:  # another worker process made it first
            if not copy.is_dir():
                raise
            shutil.rmtree(made, ignore_errors=True)
    except BaseException:
        shutil.rmtree(made, ignore_errors=True)
        raise


def _identity(root: Path, uid: int, gid: int) -> Path:
    """The task's /etc/passwd and /etc/group, its own user and group only (written once per
    process and uid, in place atomically)."""
    folder = root / "users" / str(uid)
    if (root, uid) in _IDENTITIES and (folder / "group").is_file():
        return folder
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chmod(folder.parent, 0o711)  # noqa: S103 (traversable, not listable)
    contents = {
        "passwd": (
            "root:x:0:0::/nonexistent:/usr/sbin/nologin\n"
            f"task:x:{uid}:{gid}:task:{HOME}:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        "group": f"root:x:0:\ntask:x:{gid}:\nnogroup:x:65534:\n",
    }
    for name, text in contents.items():
        staged = folder / f".{name}.{os.getpid()}.{threading.get_ident()}"
        staged.write_text(text)
        os.chmod(staged, 0o644)
        os.replace(staged, folder / name)
    _IDENTITIES.add((root, uid))
    return folder


def parse_status(raw: bytes) -> Mapping[str, Any]:
    """The supervisor's report as {"exit": n} | {"signal": n} | {"error": "..."}; empty if
    it never ran (the sandbox could not be made). The report is its first line (a sandbox
    that serves another task says so on the next: `ready` or `spent`)."""
    line = raw.split(b"\n", 1)[0]
    kind, _, value = line.decode("utf-8", "replace").partition(" ")
    if kind == "error":
        return {"error": value}
    if kind in ("exit", "signal") and value.lstrip("-").isdigit():
        return {kind: int(value)}
    return {}
