"""Every variable the settings read is passed through by compose (to every process, in the
shared environment) and has a row in docs/deployment.md's table, so an operator who sets one
in `docker/.env` gets what the docs say; compose passes nothing the settings do not read.
And an empty variable (what compose passes when the operator set none) means the default."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ROOT / "orchestrator" / "settings.py"
COMPOSE = ROOT / "docker" / "compose.yml"
DEPLOYMENT = ROOT / "docs" / "deployment.md"


def read_by_settings() -> set[str]:
    text = SETTINGS.read_text()
    found = set(re.findall(r'env_\w+\(\s*"([A-Z][A-Z0-9_]+)"', text))
    found |= set(re.findall(r'os\.environ(?:\.get\(|\[)\s*"([A-Z][A-Z0-9_]+)"', text))
    return found - {"DJANGO_SETTINGS_MODULE"}


def test_the_settings_read_a_plausible_number_of_variables() -> None:
    names = read_by_settings()
    assert len(names) > 100  # the pattern still finds them
    assert {"DATABASE_URL", "TASK_LEASE_SECONDS", "PACKAGE_STORAGE_OPTIONS"} <= names


def test_compose_passes_every_variable_the_settings_read_and_no_other() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    shared = set(compose["x-orchestrator-env"])
    names = read_by_settings()
    assert sorted(names - shared) == []
    assert sorted(shared - names) == []
    for service in ("migrate", "web", "worker", "housekeeper", "notifier", "beat"):
        environment = compose["services"][service]["environment"]
        assert names <= set(environment), service


def test_deployment_docs_list_every_variable() -> None:
    section = DEPLOYMENT.read_text().split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    listed = {
        name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])
    }
    assert sorted(read_by_settings() - listed) == []


def test_an_empty_variable_means_the_default() -> None:
    """What compose passes for a variable the operator did not set: every setting as if it
    were unset (PACKAGE_INDEX_URL aside: empty there means no index, as documented)."""
    names = sorted(read_by_settings() - {"PACKAGE_INDEX_URL"})
    script = (
        "import json, os, sys\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'orchestrator.settings'\n"
        "from django.conf import settings\n"
        "names = [n for n in dir(settings) if n.isupper()]\n"
        "print(json.dumps({n: repr(getattr(settings, n)) for n in names}))\n"
    )
    base = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT)}
    unset = _settings_with(script, base)
    empty = _settings_with(script, base | dict.fromkeys(names, ""))
    differ = sorted(n for n in unset if unset[n] != empty.get(n))
    assert differ == [], {n: (unset[n][:200], empty.get(n, "")[:200]) for n in differ}


def _settings_with(script: str, env: dict[str, str]) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded: dict[str, str] = json.loads(done.stdout)
    return loaded
