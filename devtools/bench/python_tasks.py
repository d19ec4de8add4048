"""The python task benchmarks (issue 23): python tasks calling a trivial function of a package
the bench tenant uploads, beside raw Celery calling the same function
(devtools/bench/team_function.py, whose text is the package's module).

- `chain`: 100 python tasks in a chain; `fanout`: root -> 1000 python tasks -> join. Both
  run from warm zygotes: `prepare()` uploads the package and has every worker process run
  it before anything is measured.
- `cold_start`: the first run of a package version uploaded just before, one task, two
  ways: its environment not on the workers' disk yet (the worker builds it, then starts
  the zygote: a new host's first run), and its environment built by the upload into the
  workers' cache (a single-host installation: only the zygote starts). Then the warm
  one-task run, for comparison. Every repetition uploads new versions, so each first run
  really is a first.

The workers' environment cache is the bench's own (`ENV_DIR`, under var/bench), emptied
when the bench starts; the bench process's uploads build theirs in `UPLOAD_ENV_DIR`
unless an upload is to warm the workers' cache. No package index: the wheel has no
dependencies, and PACKAGE_INDEX_URL is empty for the workers and the uploads alike."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import shutil
import statistics
import time
import zipfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.test import override_settings

from devtools.bench import team_function
from devtools.bench.scenarios import Engine
from orchestrator.context import tenant_scope
from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from runs.packages import upload_package
from workflows.models import CodePackage, Workflow

__all__ = [
    "CALLABLE",
    "ENV_DIR",
    "MODULE",
    "UPLOAD_ENV_DIR",
    "PythonTasks",
    "reset_environments",
    "wheel",
    "worker_env",
]

ENV_DIR = Path(settings.VAR_DIR) / "bench" / "envs"  # the bench's workers' cache
UPLOAD_ENV_DIR = Path(settings.VAR_DIR) / "bench" / "upload-envs"  # the bench process's
PACKAGE = "bench-python"  # the warm package (its version follows the function's text)
COLD_PACKAGE = "bench-python-cold"  # a new version per cold start
MODULE = "bench_team_code"
CALLABLE = f"{MODULE}:step"
WARM_SAMPLES = 5


def worker_env() -> dict[str, str]:
    """The settings the bench's processes need for team code: the bench's own environment
    cache, and no package index (nothing is fetched)."""
    return {"PACKAGE_ENV_DIR": str(ENV_DIR), "PACKAGE_INDEX_URL": "", "PACKAGE_FIND_LINKS": ""}


def reset_environments() -> None:
    """Empty the bench's environment caches (before its workers start): environments of
    earlier invocations must not make this one's first runs warm."""
    for directory in (ENV_DIR, UPLOAD_ENV_DIR):
        shutil.rmtree(directory, ignore_errors=True)


def _source() -> str:
    return Path(team_function.__file__).read_text()


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def wheel(name: str, version: str) -> tuple[str, bytes]:
    """A wheel of one module, `MODULE`, holding the function's text; the same name and
    version always make the same bytes (an upload of it again is the package stored)."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    members = {
        f"{MODULE}/__init__.py": _source().encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: orchestrator-bench\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [_record_line(path, data) for path, data in members.items()]
    members[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in members.items():
            archive.writestr(zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return f"{dist}-{version}-py3-none-any.whl", buffer.getvalue()


def _median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000


def _durations(instances: list[TaskInstance]) -> list[float]:
    """Each task's start -> end as recorded (seconds)."""
    return [(t.ended_at - t.started_at).total_seconds() for t in instances]  # type: ignore[operator]


class PythonTasks:
    """The python scenarios, on the bench's running service (`engine`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        digest = hashlib.sha256(_source().encode()).hexdigest()
        # A new text is a new version: packages are immutable, and the database is kept.
        self.version = f"1.0.{int(digest[:8], 16)}"
        self.cold_versions = itertools.count(int(time.time() * 1000))

    # --- set-up ----------------------------------------------------------------------------

    def prepare(self, processes: int) -> None:
        """Upload the package (or find it uploaded by an earlier invocation), and have each
        of the engine's `processes` worker processes start its zygote for it: the scenarios
        measure warm tasks."""
        self._upload(PACKAGE, self.version, UPLOAD_ENV_DIR)
        workflow = self._fanout_workflow("bench-python-warm-up", 4 * processes)
        runs: list[WorkflowRun] = []
        for _ in range(20):
            runs.append(self._run(workflow)[0])
            if self._processes_that_ran(runs) >= processes:
                break
        else:
            raise RuntimeError(f"the python tasks did not reach all {processes} worker processes")
        self.chain(10)

    def _upload(self, name: str, version: str, env_dir: Path) -> CodePackage:
        """Upload as the bench's owner, building the environment (the upload proves it
        installs) into `env_dir`, without any index."""
        filename, data = wheel(name, version)
        engine = self.engine
        with (
            override_settings(PACKAGE_ENV_DIR=env_dir, PACKAGE_INDEX_URL="", PACKAGE_FIND_LINKS=[]),
            tenant_scope([engine.tenant]),
        ):
            return upload_package(
                actor=engine.actor, tenant=engine.tenant, filename=filename, data=data
            )

    def _spec(self, name: str, tasks: dict[str, Any], version: str | None = None) -> Workflow:
        return self.engine.apply(
            {
                "name": name,
                "max_active_tasks": min(len(tasks), 1000),
                "code": {
                    "package": PACKAGE if version is None else COLD_PACKAGE,
                    "version": version or self.version,
                },
                "tasks": tasks,
            }
        )

    @staticmethod
    def _task(n: int, after: list[str] | None = None) -> dict[str, Any]:
        task: dict[str, Any] = {"type": "python", "callable": CALLABLE, "kwargs": {"n": n}}
        if after:
            task["depends_on"] = after
        return task

    def _fanout_workflow(self, name: str, width: int) -> Workflow:
        leaves = [f"l{i:04d}" for i in range(width)]
        tasks = {"root": self._task(0)}
        tasks.update({leaf: self._task(i + 1, ["root"]) for i, leaf in enumerate(leaves)})
        tasks["join"] = self._task(width + 1, leaves)
        return self._spec(name, tasks)

    # --- running ---------------------------------------------------------------------------

    def _run(self, workflow: Workflow) -> tuple[WorkflowRun, float]:
        """Trigger and wait for its success (else the first failed task's error): the run,
        and seconds from just before the trigger to its recorded end."""
        run, started = self.engine.trigger(workflow)
        try:
            (done,) = self.engine.wait([run.pk])
        except RuntimeError:
            raise RuntimeError(f"{workflow.name}: {self._first_error(run)}") from None
        return done, (done.ended_at - started).total_seconds()  # type: ignore[operator]

    def _first_error(self, run: WorkflowRun) -> str:
        with tenant_scope([self.engine.tenant]):
            attempt = (
                TaskAttempt.objects.filter(task_instance__run=run)
                .exclude(error="")
                .order_by("started_at")
                .first()
            )
        return attempt.error[-2000:] if attempt is not None else f"run {run.pk} failed"

    def _processes_that_ran(self, runs: list[WorkflowRun]) -> int:
        """How many worker processes ran the tasks of `runs`."""
        with tenant_scope([self.engine.tenant]):
            attempts = TaskAttempt.objects.filter(task_instance__run__in=runs, pid__isnull=False)
            return attempts.values("pid").distinct().count()

    # --- scenarios -------------------------------------------------------------------------

    def chain(self, length: int = 100) -> dict[str, float]:
        """`length` python tasks in a chain: wall time (trigger -> run success), the median
        handoff (task n's end -> task n+1's start) and the median task (start -> end, which
        holds the zygote's fork and the function's call)."""
        names = [f"t{i:04d}" for i in range(length)]
        tasks = {name: self._task(i, names[i - 1 : i]) for i, name in enumerate(names)}
        run, wall = self._run(self._spec(f"bench-python-chain-{length}", tasks))
        tis = self.engine.instances(run)
        gaps = [
            (b.started_at - a.ended_at).total_seconds()  # type: ignore[operator]
            for a, b in itertools.pairwise(tis)
        ]
        durations = _durations(tis)
        return {
            "wall_s": wall,
            "handoff_ms": _median_ms(gaps),
            "task_ms": _median_ms(durations),
        }

    def fanout(self, width: int = 1000) -> dict[str, float]:
        """root -> `width` parallel python tasks -> join: tasks per second, recorded."""
        run, wall = self._run(self._fanout_workflow(f"bench-python-fanout-{width}", width))
        durations = _durations(self.engine.instances(run))
        return {
            "wall_s": wall,
            "tasks_per_s": (width + 2) / wall,
            "task_ms": _median_ms(durations),
        }

    def cold_start(self) -> dict[str, float]:
        """One-task runs: the first of a new version whose environment the worker builds;
        the first of a new version whose environment the upload built into the workers'
        cache; and the warm package's (median of WARM_SAMPLES). Trigger -> run success."""
        figures: dict[str, float] = {}
        for key, env_dir in (("cold_ms", UPLOAD_ENV_DIR), ("prebuilt_ms", ENV_DIR)):
            version = f"1.{next(self.cold_versions)}"
            package = self._upload(COLD_PACKAGE, version, env_dir)
            if (ENV_DIR / package.digest).is_dir() != (env_dir == ENV_DIR):
                raise RuntimeError(f"{COLD_PACKAGE} {version}: the workers' cache is not as set")
            workflow = self._spec(f"bench-python-{key[:-3]}", {"only": self._task(1)}, version)
            figures[key] = self._run(workflow)[1] * 1000
            if not (ENV_DIR / package.digest).is_dir():  # the worker built it, or used it
                raise RuntimeError(f"no environment of {version} in {ENV_DIR} after its run")
        warm = self._spec("bench-python-warm", {"only": self._task(1)})
        figures["warm_ms"] = _median_ms([self._run(warm)[1] for _ in range(WARM_SAMPLES)])
        return figures
