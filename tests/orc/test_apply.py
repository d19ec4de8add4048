"""`orc apply` through the bulk apply endpoint: the plan printed exactly as `manage.py
apply` prints it, dry runs that change nothing, prune, invalid files reported with their
paths and nothing applied, and the role it takes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.orc.support import OrcServer, orc, write_specs

pytestmark = pytest.mark.slow

ALPHA = "name: alpha\ntasks:\n  extract: {type: noop}\n"
BETA = "name: beta\ntags: [nightly]\ntasks:\n  load: {type: noop}\n"


@pytest.fixture
def gitops(server: OrcServer, home: Path) -> dict[str, str]:
    return server.orc_env(home, tenant="gitops")


def names(server: OrcServer) -> list[str]:
    return sorted(w["name"] for w in server.get("workflows/", tenant="gitops"))


def test_apply_prints_the_plan_manage_py_apply_prints(
    server: OrcServer, gitops: dict[str, str], tmp_path: Path
) -> None:
    write_specs(tmp_path / "specs", {"alpha.yaml": ALPHA, "jobs/beta.yaml": BETA})
    args = ("specs", "--dry-run", "--prune", "--diff")
    theirs = server.manage("apply", *args, "--tenant", "gitops", cwd=tmp_path)
    ours = orc("apply", *args, env=gitops, cwd=tmp_path)
    assert (theirs.code, ours.code) == (0, 0), (theirs, ours)
    assert ours.out == theirs.out
    assert ours.out.splitlines()[0] == "alpha: would be created (version 1)"
    assert names(server) == []  # a dry run keeps nothing

    applied = orc("apply", "specs", env=gitops, cwd=tmp_path)
    assert applied.out == "alpha: created (version 1)\nbeta: created (version 1)\n"
    again = orc("apply", "specs", "-o", "json", env=gitops, cwd=tmp_path)
    plan = json.loads(again.out)
    assert plan["dry_run"] is False
    assert [(c["workflow"], c["path"], c["action"], c["version"]) for c in plan["changes"]] == [
        ("alpha", "specs/alpha.yaml", "unchanged", 1),
        ("beta", "specs/jobs/beta.yaml", "unchanged", 1),
    ]

    (tmp_path / "specs" / "jobs" / "beta.yaml").unlink()
    (tmp_path / "specs" / "alpha.yaml").write_text(
        ALPHA + "  load: {type: noop, depends_on: [extract]}\n"
    )
    pruned = orc("apply", "specs", "--prune", env=gitops, cwd=tmp_path)
    assert pruned.out == "alpha: new version 2\nbeta: pruned\n"
    assert names(server) == ["alpha"]


def test_invalid_files_are_reported_with_their_paths_and_nothing_is_applied(
    server: OrcServer, gitops: dict[str, str], tmp_path: Path
) -> None:
    write_specs(
        tmp_path / "specs",
        {
            "gamma.yaml": "name: gamma\ntasks:\n  a: {type: noop}\n",
            "broken.yaml": "name: broken\ntasks:\n  a: {type: noop, depends_on: [b]}\n",
        },
    )
    before = names(server)
    done = orc("apply", "specs", env=gitops, cwd=tmp_path)
    assert done.code == 2
    assert done.out == ""
    assert done.err == (
        "specs/broken.yaml: tasks.a.depends_on[0]: unknown task 'b'; tasks: a\n"
        "error: 1 of 2 files are invalid; nothing was applied\n"
    )
    assert names(server) == before


def test_a_viewer_may_not_apply(server: OrcServer, home: Path, tmp_path: Path) -> None:
    write_specs(tmp_path / "specs", {"alpha.yaml": ALPHA})
    viewer = server.orc_env(home, tenant="dev", role="viewer")
    done = orc("apply", "specs", "--dry-run", env=viewer, cwd=tmp_path)
    assert done.code == 3
    assert done.err.startswith("error: 403 Forbidden: "), done
