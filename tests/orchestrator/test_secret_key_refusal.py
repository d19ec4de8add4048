"""With DEBUG off, a web server, worker or beat refuses to start on the built-in
SECRET_KEY (the encryption and audit keys derive from it); with DEBUG on, or with a
SECRET_KEY of its own, it starts, and tooling such as `check --deploy` runs either way."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import LazySettings
from django.core.exceptions import ImproperlyConfigured

from orchestrator.checks import require_secret_key
from tests.subprocesses import ROOT, fresh_shell_env

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REFUSAL = "SECRET_KEY is not set, and DEBUG is off"
HOW_TO_MAKE_ONE = 'python -c "import secrets; print(secrets.token_urlsafe(50))"'


def _run(argv: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = fresh_shell_env(
        VAR_DIR=str(tmp_path),
        CELERY_BROKER_URL=REDIS_URL,
        CELERY_KEY_PREFIX=f"orc-test-{secrets.token_hex(5)}:",
        DEBUG="0",
    )
    base.pop("SECRET_KEY", None)
    return subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **env},
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "celery", "-A", "orchestrator", "worker", "--loglevel", "ERROR"],
        ["-m", "celery", "-A", "orchestrator", "beat", "--loglevel", "ERROR"],
        ["-c", "import orchestrator.wsgi"],
    ],
    ids=["worker", "beat", "wsgi"],
)
def test_it_refuses_to_serve_or_work_on_the_built_in_key_with_debug_off(
    argv: list[str], tmp_path: Path, migrated_var: Callable[[Path], Path]
) -> None:
    # A migrated database, as a real installation has (beat reads its schedule first).
    result = _run(argv, migrated_var(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert REFUSAL in output
    assert HOW_TO_MAKE_ONE in output


@pytest.mark.slow
@pytest.mark.parametrize(
    "env",
    [{"SECRET_KEY": secrets.token_urlsafe(50)}, {"DEBUG": "1"}],
    ids=["own-key", "debug-on"],
)
def test_the_web_server_starts_with_a_key_of_its_own_or_debug_on(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = _run(["-c", "import orchestrator.wsgi"], tmp_path, **env)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_check_deploy_still_runs_and_reports_the_key(tmp_path: Path) -> None:
    result = _run(["manage.py", "check", "--deploy"], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "(security.W009) Your SECRET_KEY" in output


def test_the_refusal_depends_on_debug_and_the_key(settings: LazySettings) -> None:
    settings.DEBUG = False
    settings.SECRET_KEY = settings.INSECURE_DEV_SECRET_KEY
    with pytest.raises(ImproperlyConfigured, match=REFUSAL):
        require_secret_key()
    settings.DEBUG = True
    require_secret_key()
    settings.DEBUG = False
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    require_secret_key()
