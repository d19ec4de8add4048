"""`orc workflows list|show|pause|unpause` and `orc backfill`, for people and for
scripts, with the roles they take."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.orc.support import OrcServer, orc

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("dev_workflows")]


def test_workflows_list_and_show_for_scripts(dev_env: dict[str, str]) -> None:
    tagged = json.loads(orc("workflows", "list", "--tag", "demo", "-o", "json", env=dev_env).out)
    assert [w["name"] for w in tagged] == ["hello"]
    shown = yaml.safe_load(orc("workflows", "show", "hello", "-o", "yaml", env=dev_env).out)
    assert shown["current_version"]["number"] == 1
    assert shown["current_version"]["spec"]["tasks"]["done"] == {
        "type": "noop",
        "depends_on": ["greet"],
    }


def test_an_operator_pauses_and_unpauses_a_viewer_may_not(
    server: OrcServer, dev_env: dict[str, str]
) -> None:
    operator = {**dev_env, "ORC_TOKEN": server.tokens["dev:operator"]}
    viewer = {**dev_env, "ORC_TOKEN": server.tokens["dev:viewer"]}
    refused = orc("workflows", "pause", "daily", env=viewer)
    assert refused.code == 3
    assert refused.err.startswith("error: 403 Forbidden: ")
    paused = orc("workflows", "pause", "daily", env=operator)
    assert (paused.code, paused.out) == (0, "workflow daily paused\n")
    assert server.get("workflows/daily/")["paused"] is True
    not_now = orc("trigger", "daily", env=operator)
    assert not_now.code == 3
    assert not_now.err.startswith("error: 409 Conflict: "), not_now
    forced = orc("trigger", "daily", "--force", "-o", "json", env=operator)
    assert json.loads(forced.out)["workflow"] == "daily"
    unpaused = orc("workflows", "unpause", "daily", env=operator)
    assert (unpaused.code, unpaused.out) == (0, "workflow daily unpaused\n")


def test_backfill_dry_run_lists_the_intervals_then_a_backfill_starts(
    server: OrcServer, dev_env: dict[str, str]
) -> None:
    args = ("backfill", "daily", "--start", "2024-01-01", "--end", "2024-01-03", "--dry-run")
    done = orc(*args, "-o", "json", env=dev_env)
    assert done.code == 0, done
    assert done.err == "3 intervals; nothing was created (dry run)\n"
    plan = json.loads(done.out)
    assert plan["total"] == 3
    assert [i["logical_date"][:10] for i in plan["intervals"]] == [
        "2024-01-01",
        "2024-01-02",
        "2024-01-03",
    ]
    assert {i["action"] for i in plan["intervals"]} == {"create"}
    assert server.get("backfills/") == []
    started = orc("backfill", "daily", "--start", "2024-01-01", "--end", "2024-01-02", env=dev_env)
    assert started.code == 0, started
    backfill = server.get("backfills/")[0]
    assert re.fullmatch(rf"backfill {backfill['id']} of daily: \w+, 2 intervals\n", started.out)
