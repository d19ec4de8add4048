"""Real git repositories for the git sync tests, never the network: a bare repository
(`git init --bare`, the "remote") and a working clone that commits spec files and pushes,
as a team's CI would. Sources clone the bare one through file:// (GITSYNC_ALLOW_LOCAL)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["Repo", "spec_text"]


def spec_text(name: str, timeout: str = "1m") -> str:
    return f"""\
name: {name}
tasks:
  extract: {{type: shell, command: [echo, "{{{{ ds }}}}"], timeout: {timeout}}}
  done: {{type: noop, depends_on: [extract]}}
"""


class Repo:
    """`origin.git` (bare) and `work` (a clone of it) under `root`, on branch main."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bare = root / "origin.git"
        self.work = root / "work"
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", "--bare", "--initial-branch=main", str(self.bare), cwd=root)
        self.git("init", "--quiet", "--initial-branch=main", str(self.work), cwd=root)
        self.git("remote", "add", "origin", str(self.bare))

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def git(self, *args: str, cwd: Path | None = None) -> str:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "CI",
            "GIT_AUTHOR_EMAIL": "ci@example.com",
            "GIT_COMMITTER_NAME": "CI",
            "GIT_COMMITTER_EMAIL": "ci@example.com",
        }
        done = subprocess.run(
            ["git", *args],
            cwd=cwd or self.work,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def write(self, path: str, text: str) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def remove(self, path: str) -> None:
        (self.work / path).unlink()

    def push(self, message: str = "change", branch: str = "main") -> str:
        """Commit everything in the working clone and push it: the new commit's id."""
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        self.git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}")
        return self.git("rev-parse", "HEAD").strip()
