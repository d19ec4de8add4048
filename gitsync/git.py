"""Git for GitOps pull mode: which remotes a sync may clone, and a shallow clone of one
branch into a temporary folder with the spec files under a path read out of it. `git`
runs as a subprocess with nothing of the platform's environment or configuration: no
user or system config, no prompts, no credential helpers, only the transports allowed
for the URL, symlinks checked out as plain files, and a deploy key (when given) in a
0600 file of its own that ssh alone is told to use. Pure: no Django."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from runs.tasktypes import netguard
from workflows.specfiles import SUFFIXES

__all__ = [
    "ALLOWED_REMOTES",
    "Checkout",
    "GitError",
    "Remote",
    "check_branch",
    "check_path",
    "check_remote",
    "checkout",
]

ALLOWED_REMOTES = "https://host/path, ssh://[user@]host[:port]/path or user@host:path"
# Where an operator allows a private git host (netguard's messages name both).
GIT_ALLOW = ("GITSYNC_ALLOWED_HOSTS", "git_allowed_hosts")
_SCP = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?P<path>.+)$"
)
# `<transport>::<address>` makes git run a remote helper (ext:: runs a command).
_HELPER = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
_BRANCH_BAD = re.compile(r"(^[-/.])|(\.\.)|([\x00-\x20\x7f~^:?*\[\\])|(@\{)|(/$)|(\.lock$)|(\.$)")
DEFAULT_TIMEOUT = 120
STDERR_KEPT = 4000  # characters of git's stderr kept in an error


class GitError(Exception):
    """The sync could not read the repository: a refused remote, or git failed (its stderr,
    the key's path masked, is the message)."""


@dataclass(frozen=True)
class Remote:
    """A remote a sync may clone: its kind (https, ssh or local) and, unless local, the
    host and port the network guard checked."""

    kind: str
    host: str
    port: int
    # The addresses the guard checked (none for local, or when not checked): git and ssh
    # connect to these, never to a second DNS answer for `host` (which could point
    # somewhere the guard refuses: DNS rebinding).
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Checkout:
    commit: str  # 40 hex digits, HEAD of the branch
    files: list[tuple[str, bytes]]  # (path in the repository, content), in path order
    too_large: list[tuple[str, int]]  # (path, size): spec files over the size limit, unread


def check_remote(
    url: str,
    *,
    allow_local: bool,
    allowed_hosts: Sequence[str] = (),
    resolver: netguard.Resolver | None = None,
    check_network: bool = True,
) -> Remote:
    """The remote `url` names, if a sync may clone it; raises GitError saying what would
    be accepted. https and ssh hosts go through the network guard the http task uses
    (private, loopback and metadata addresses refused unless `allowed_hosts` names them);
    file:// and local paths only with `allow_local` (tests and single-machine setups)."""
    url = url.strip()
    if not url or any(ord(c) < 32 or ord(c) == 127 or c.isspace() for c in url):
        raise GitError(f"{url!r} is not a git URL: expected {ALLOWED_REMOTES}")
    if url.startswith("-") or _HELPER.match(url):
        raise GitError(f"{url!r} is not a git URL: expected {ALLOWED_REMOTES}")
    local = url.startswith("file://") or url.startswith("/")
    if local:
        if not allow_local:
            raise GitError(
                f"{url!r}: local repositories (file:// and paths) are refused unless the "
                f"platform sets GITSYNC_ALLOW_LOCAL=1; expected {ALLOWED_REMOTES}"
            )
        return Remote("local", "", 0)
    kind, host, port = _host_of(url)
    if not check_network:
        return Remote(kind, host, port)
    try:
        checked = netguard.check_host(host, port, allowed_hosts, resolver, allow=GIT_ALLOW)
    except netguard.Blocked as exc:
        raise GitError(f"{url!r}: {exc}") from None
    except netguard.RequestFailed as exc:
        raise GitError(f"{url!r}: {exc}") from None
    return Remote(kind, host, port, tuple(str(a) for a in checked))


# What git hands ssh or curl as the host part of `scheme://<authority>/path`: checked whole,
# as git and ssh read it (ssh takes the host after the last '@', so "ssh://a#@b/x", which
# urlsplit reads as host a, would connect to b).
_AUTHORITY = re.compile(
    r"^(?:[A-Za-z0-9._~-]+@)?(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
)


def _host_of(url: str) -> tuple[str, str, int]:
    if "://" in url:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise GitError(
                f"{url!r} is not a git URL ({exc}): expected {ALLOWED_REMOTES}"
            ) from None
        scheme = parts.scheme.lower()
        if scheme not in ("https", "ssh"):
            raise GitError(
                f"{url!r}: the scheme {scheme}:// is not allowed; expected {ALLOWED_REMOTES}"
            )
        if not parts.hostname or parts.hostname.startswith("-"):
            raise GitError(f"{url!r} has no host: expected {ALLOWED_REMOTES}")
        if parts.password is not None or (scheme == "https" and parts.username is not None):
            raise GitError(
                f"{url!r} holds credentials, which would be stored and shown with the source: "
                "use an ssh URL and a deploy key (a secret) instead"
            )
        authority = url.split("://", 1)[1].split("/", 1)[0]
        if not _AUTHORITY.match(authority):
            raise GitError(
                f"{url!r}: the host part {authority!r} is not [user@]host[:port]; "
                f"expected {ALLOWED_REMOTES}"
            )
        return scheme, parts.hostname.rstrip("."), port or (443 if scheme == "https" else 22)
    match = _SCP.match(url)
    if match is None or match.group("host").startswith("-"):
        raise GitError(f"{url!r} is not a git URL: expected {ALLOWED_REMOTES}")
    return "ssh", match.group("host").strip("[]").rstrip("."), 22


def check_branch(branch: str) -> str:
    """A branch name git accepts and no option (`--upload-pack=...`); raises GitError."""
    if not branch or len(branch) > 255 or _BRANCH_BAD.search(branch):
        raise GitError(
            f"{branch!r} is not a branch name: letters, digits, '-', '_', '.' and '/', not "
            "starting with '-', '/' or '.', at most 255 characters"
        )
    return branch


def check_path(path: str) -> str:
    """A folder inside the repository, relative ("" for its root), never leaving it."""
    cleaned = path.strip().strip("/")
    parts = PurePosixPath(cleaned).parts if cleaned else ()
    if any(p in ("..", ".", ".git") for p in parts) or "\\" in cleaned:
        raise GitError(f"{path!r} is not a folder of the repository: e.g. workflows/prod")
    if any(ord(c) < 32 or ord(c) == 127 for c in cleaned) or len(cleaned) > 500:
        raise GitError(f"{path!r} is not a folder of the repository: e.g. workflows/prod")
    return "/".join(parts)


def checkout(
    url: str,
    branch: str,
    path: str,
    *,
    remote: Remote,
    deploy_key: str | None = None,
    known_hosts: str = "",
    timeout: int = DEFAULT_TIMEOUT,
    max_file_bytes: int | None = None,
    max_files: int = 10_000,
    git: str = "git",
) -> Checkout:
    """Clone `branch` of `url` (depth 1) into a temporary folder, read HEAD's commit and
    the spec files (*.yaml, *.yml, *.json) under `path`, and remove the folder. Raises
    GitError with git's stderr (the key's path masked) when it fails or times out."""
    branch, path = check_branch(branch), check_path(path)
    with tempfile.TemporaryDirectory(prefix="gitsync-") as scratch:
        home = Path(scratch)
        env = _environment(home, remote, deploy_key, known_hosts)
        mask = _masker(home)
        work = home / "repo"
        protocols = [
            "-c",
            "protocol.allow=never",
            "-c",
            f"protocol.{_transport(remote)}.allow=always",
        ]
        clone = [
            git,
            *protocols,
            *_pinned(remote),
            "-c",
            "core.symlinks=false",
            "-c",
            "http.followRedirects=false",
            "-c",
            "core.hooksPath=/dev/null",
            "clone",
            "--quiet",
            "--depth",
            "1",
            "--no-tags",
            "--single-branch",
            f"--branch={branch}",
            "--",
            url,
            str(work),
        ]
        _run(clone, env, timeout, mask, cwd=home)
        commit = _run([git, "-C", str(work), "rev-parse", "HEAD"], env, timeout, mask).strip()
        if not re.fullmatch(r"[0-9a-f]{40}", commit):
            raise GitError(f"git rev-parse HEAD answered {commit[:80]!r}, not a commit")
        return _read_specs(work, path, commit, max_file_bytes, max_files)


def _pinned(remote: Remote) -> list[str]:
    """https: curl connects to the checked addresses (CURLOPT_RESOLVE), still verifying
    the certificate for the host's name."""
    if remote.kind != "https" or not remote.addresses:
        return []
    shown = ",".join(f"[{a}]" if ":" in a else a for a in remote.addresses)
    return ["-c", f"http.curloptResolve={remote.host}:{remote.port}:{shown}"]


def _transport(remote: Remote) -> str:
    return {"https": "https", "ssh": "ssh", "local": "file"}[remote.kind]


def _environment(
    home: Path, remote: Remote, deploy_key: str | None, known_hosts: str
) -> dict[str, str]:
    """Nothing of the worker's environment (its secrets stay out of git and ssh), no
    config but the command line's, no prompt: a missing credential fails at once."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_PROTOCOL_FROM_USER": "0",
    }
    if remote.kind == "ssh":
        ssh = [
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"ConnectTimeout={20}",
        ]
        if known_hosts:
            ssh += ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}"]
        else:  # trust on first use, and each sync is a first use: see docs/gitops.md
            ssh += [
                "-o",
                "StrictHostKeyChecking=accept-new",
                "-o",
                f"UserKnownHostsFile={home / 'known_hosts'}",
            ]
        if remote.addresses:  # the checked address; the host's key looked up by its name
            # (as known_hosts writes it: [host]:port off port 22; an alias is taken as is)
            alias = remote.host if remote.port == 22 else f"[{remote.host}]:{remote.port}"
            ssh += ["-o", f"HostName={remote.addresses[0]}", "-o", f"HostKeyAlias={alias}"]
        if deploy_key:
            ssh += ["-i", str(_write_key(home, deploy_key))]
        else:
            ssh += ["-o", "IdentityFile=none"]
        env["GIT_SSH_COMMAND"] = shlex.join(ssh)
        env["GIT_SSH_VARIANT"] = "ssh"
    return env


def _write_key(home: Path, key: str) -> Path:
    """The deploy key in a file only this process's user may read (ssh refuses others)."""
    path = home / "deploy_key"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(key.replace("\r\n", "\n").rstrip("\n") + "\n")  # ssh wants the last newline
    return path


def _masker(home: Path) -> Callable[[str], str]:
    def mask(text: str) -> str:
        return text.replace(str(home), "<tmp>")

    return mask


def _run(
    argv: list[str],
    env: dict[str, str],
    timeout: int,
    mask: Callable[[str], str],
    cwd: Path | None = None,
) -> str:
    """Run git in its own process group (ssh included), killed whole on timeout."""
    try:
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise GitError(f"cannot run git: {exc}") from None
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise GitError(f"git {argv_verb(argv)} took longer than {timeout} s: stopped") from None
    if process.returncode != 0:
        said = mask(err.decode("utf-8", "replace")).strip()[-STDERR_KEPT:]
        raise GitError(
            f"git {argv_verb(argv)} failed (exit {process.returncode}): {said or 'no output'}"
        )
    return out.decode("utf-8", "replace")


def argv_verb(argv: Sequence[str]) -> str:
    """The git command's name in a git command line (`clone`, `rev-parse`)."""
    skip = False
    for word in argv[1:]:
        if skip:
            skip = False
            continue
        if word in ("-c", "-C"):
            skip = True
            continue
        if not word.startswith("-"):
            return word
    return "?"


def _read_specs(
    work: Path, path: str, commit: str, max_file_bytes: int | None, max_files: int
) -> Checkout:
    root = work / path if path else work
    if not root.is_dir() or root.is_symlink():
        raise GitError(f"the branch has no folder {path!r} at commit {commit[:12]}")
    files: list[tuple[str, bytes]] = []
    too_large: list[tuple[str, int]] = []
    for found in sorted(root.rglob("*")):
        relative = found.relative_to(work)
        if ".git" in relative.parts or found.suffix not in SUFFIXES:
            continue
        if found.is_symlink() or not found.is_file():  # core.symlinks=false: none expected
            continue
        if len(files) + len(too_large) >= max_files:
            raise GitError(f"more than {max_files} spec files under {path or 'the root'!r}")
        size = found.stat().st_size
        if max_file_bytes is not None and size > max_file_bytes:
            too_large.append((relative.as_posix(), size))
            continue
        files.append((relative.as_posix(), found.read_bytes()))
    return Checkout(commit, files, too_large)
