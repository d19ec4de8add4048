"""OpenLineage is configured from the environment (docs/lineage.md): OPENLINEAGE_URL alone
turns it on over HTTP, OPENLINEAGE_TRANSPORT picks another transport, and a transport
without what it needs stops the start-up."""

from __future__ import annotations

import os
import subprocess
import sys

SHOW = (
    "from django.conf import settings; "
    "print(settings.OPENLINEAGE_TRANSPORT, settings.OPENLINEAGE_ENABLED, "
    "settings.OPENLINEAGE_ENDPOINT, settings.OPENLINEAGE_NAMESPACE)"
)


def settle(**env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OPENLINEAGE_")}
    environ.update({"DJANGO_SETTINGS_MODULE": "orchestrator.settings", **env})
    return subprocess.run(
        [sys.executable, "-c", SHOW], env=environ, capture_output=True, text=True, check=False
    )


def test_it_is_off_unless_configured() -> None:
    done = settle()
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["off", "False", "api/v1/lineage", "orchestrator"]


def test_a_url_turns_it_on_over_http() -> None:
    done = settle(OPENLINEAGE_URL="http://marquez:5000", OPENLINEAGE_NAMESPACE="orc")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["http", "True", "api/v1/lineage", "orc"]


def test_console_and_file_need_no_url() -> None:
    console = settle(OPENLINEAGE_TRANSPORT="console")
    assert console.stdout.split()[:2] == ["console", "True"], console.stderr
    file = settle(
        OPENLINEAGE_TRANSPORT="file", OPENLINEAGE_FILE="/var/log/orchestrator/lineage.jsonl"
    )
    assert file.stdout.split()[:2] == ["file", "True"], file.stderr


def test_off_wins_over_a_url() -> None:
    done = settle(OPENLINEAGE_URL="http://marquez:5000", OPENLINEAGE_TRANSPORT="off")
    assert done.stdout.split()[:2] == ["off", "False"], done.stderr


def test_a_transport_without_what_it_needs_stops_the_start_up() -> None:
    for env, message in [
        ({"OPENLINEAGE_TRANSPORT": "kafka"}, "expected http, console, file or off"),
        ({"OPENLINEAGE_TRANSPORT": "http"}, "OPENLINEAGE_TRANSPORT=http needs OPENLINEAGE_URL"),
        ({"OPENLINEAGE_TRANSPORT": "file"}, "OPENLINEAGE_TRANSPORT=file needs OPENLINEAGE_FILE"),
    ]:
        done = settle(**env)
        assert done.returncode != 0
        assert message in done.stderr
