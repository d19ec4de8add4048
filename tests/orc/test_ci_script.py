"""examples/ci/orc-apply.sh, the CI step docs/cli.md ("GitOps from CI") shows, run as
documented from a team's git checkout: a dry run that applies nothing, an apply that
records the commit, a prune, and a failing pipeline on an invalid spec, with its paths."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.orc.support import ORC, Done, OrcServer, write_specs
from tests.subprocesses import ROOT

pytestmark = pytest.mark.slow

SCRIPT = ROOT / "examples" / "ci" / "orc-apply.sh"


def documented_lines() -> list[str]:
    section = (ROOT / "docs" / "cli.md").read_text().split("\n## GitOps from CI\n", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "docs/cli.md's GitOps from CI section shows how to run the script"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=CI", "-c", "user.email=ci@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def step(line: str, repo: Path, env: dict[str, str]) -> Done:
    """One documented line, as the CI's shell runs it from the checkout."""
    done = subprocess.run(
        ["sh", "-c", line.replace("examples/ci/orc-apply.sh", str(SCRIPT))],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Done(done.returncode, done.stdout, done.stderr)


def test_the_documented_pipeline_checks_applies_and_prunes(
    server: OrcServer, home: Path, tmp_path: Path
) -> None:
    dry_run, apply, prune = documented_lines()
    assert dry_run.startswith("ORC_DRY_RUN=1 ")
    assert prune.startswith("ORC_PRUNE=1 ")
    repo = write_specs(
        tmp_path / "repo",
        {
            "workflows/etl/extract.yaml": "name: extract\ntasks:\n  pull: {type: noop}\n",
            "workflows/report.yaml": "name: report\ntasks:\n  send: {type: noop}\n",
        },
    )
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "specs")
    env = server.orc_env(home, tenant="ci")

    def workflows() -> dict[str, object]:
        listed = server.get("workflows/", tenant="ci")
        return {w["name"]: w["current_version"]["source_commit"] for w in listed}

    checked = step(dry_run, repo, env)
    assert checked.code == 0, checked
    assert (
        "--- validating workflows/\nworkflows/etl/extract.yaml: OK (extract, 1 tasks)\n"
        in checked.out
    )
    assert "extract: would be created (version 1)\n" in checked.out
    assert checked.out.endswith("--- dry run: nothing applied\n")
    assert workflows() == {}

    applied = step(apply, repo, env)
    assert applied.code == 0, applied
    assert applied.out.endswith(
        "--- applying\nextract: created (version 1)\nreport: created (version 1)\n"
    )
    head = git(repo, "rev-parse", "HEAD")
    assert workflows() == {"extract": head, "report": head}

    git(repo, "rm", "-q", "workflows/report.yaml")
    git(repo, "commit", "-q", "-m", "no more reports")
    pruned = step(prune, repo, env)
    assert pruned.code == 0, pruned
    assert pruned.out.endswith("extract: unchanged (version 1)\nreport: pruned\n")
    assert list(workflows()) == ["extract"]


def test_an_invalid_spec_fails_the_pipeline_with_its_paths(
    server: OrcServer, home: Path, tmp_path: Path
) -> None:
    repo = write_specs(
        tmp_path / "repo",
        {"workflows/bad.yaml": "name: bad\ntasks:\n  a: {type: noop, depends_on: [b]}\n"},
    )
    env = {**server.orc_env(home, tenant="ci"), "ORC": str(ORC)}
    failed = step(documented_lines()[1], repo, env)
    assert failed.code == 2
    assert failed.err == (
        "workflows/bad.yaml: tasks.a.depends_on[0]: unknown task 'b'; tasks: a\n"
        "error: 1 of 1 files are invalid\n"
    )
    assert "--- applying" not in failed.out
    missing = step(documented_lines()[1], repo, {k: v for k, v in env.items() if k != "ORC_TOKEN"})
    assert missing.code != 0
    assert "set ORC_TOKEN to an API token (a CI secret)" in missing.err
