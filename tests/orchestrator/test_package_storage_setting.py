"""PACKAGE_STORAGE_BACKEND and PACKAGE_STORAGE_OPTIONS choose where uploaded team code wheels
are kept (docs/deployment.md); a value that is not a JSON object stops the start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SHOW = (
    "import django; django.setup(); "
    "from django.core.files.storage import storages; "
    "s = storages['packages']; print(type(s).__name__, s.location)"
)


def settle(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "DJANGO_SETTINGS_MODULE": "orchestrator.settings", **env}
    return subprocess.run(
        [sys.executable, "-c", SHOW], env=environ, capture_output=True, text=True, check=False
    )


def test_the_options_set_the_storage(tmp_path: Path) -> None:
    done = settle(tmp_path, PACKAGE_STORAGE_OPTIONS=f'{{"location": "{tmp_path}/wheels"}}')
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["FileSystemStorage", f"{tmp_path}/wheels"]


def test_options_that_are_not_a_json_object_are_refused(tmp_path: Path) -> None:
    done = settle(tmp_path, PACKAGE_STORAGE_OPTIONS='["location"]')
    assert done.returncode != 0
    assert "PACKAGE_STORAGE_OPTIONS: expected a JSON object" in done.stderr
