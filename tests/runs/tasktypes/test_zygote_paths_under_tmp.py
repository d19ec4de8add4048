"""What a task's sandbox mounts below /tmp stays visible to a task forked by a zygote, as it
was to a python task in a sandbox of its own: a tenant's host directory (policy
`task_mounts`) and the package's environment (PACKAGE_ENV_DIR under /tmp, as the test
workers have it), whose data files and not yet imported modules a task reads at run time.
The task's private /tmp is bound over the zygote's; what was mounted below it must not go.
Each is checked below /tmp and, for comparison, below /var/tmp."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runs.tasktypes.test_zygote_support import (
    PROBE,
    build_environment,
    run_source,
    start_zygote,
)
from tests.teamcode_support import open_up

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the suite runs as root in CI")

TENANT = 4444
FILES = {
    **PROBE,
    "probe_pkg/queries/daily.sql": "select 1\n",
    "probe_pkg/later.py": "WHEN = 'imported when first used'\n",
}
READ = """
import importlib, pathlib, probe_pkg
here = pathlib.Path(probe_pkg.__file__).parent
result = {
    'data': (here / 'queries' / 'daily.sql').read_text(),
    'later': importlib.import_module('probe_pkg.later').WHEN,
}
"""


@pytest.fixture(params=["/tmp", "/var/tmp"])  # noqa: S108 (where the test puts its directories)
def base(request: pytest.FixtureRequest) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="orc-zygote-paths-", dir=request.param))
    open_up(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_tenants_mounted_directory_is_visible_to_its_tasks(base: Path) -> None:
    env = build_environment(base / "build")
    shared = base / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    policy = {"task_mounts": [{"path": str(shared), "writable": True}]}
    zygote = start_zygote(env, TENANT, policy)
    try:
        ran = run_source(
            zygote,
            "import os\nopen(f'{shared}/out.txt', 'w').write('from the task')\n"
            "result = sorted(os.listdir(shared))",
            shared=str(shared),
        )
    finally:
        zygote.stop()

    assert ran.run.exit_code == 0, ran.output
    assert ran.result == ["out.txt"]
    assert (shared / "out.txt").read_text() == "from the task"


def test_a_task_reads_its_packages_files_at_run_time(base: Path) -> None:
    env = build_environment(base / "build", FILES)
    zygote = start_zygote(env, TENANT)  # preloads probe_pkg only
    try:
        ran = run_source(zygote, READ)
    finally:
        zygote.stop()

    assert ran.run.exit_code == 0, ran.output
    assert ran.result == {"data": "select 1\n", "later": "imported when first used"}
