"""The trivial function the python benchmarks call, written once: its text is the module
`bench_team_code` of the wheel `manage.py bench` uploads as the bench tenant's package
(devtools/bench/python_tasks.py), and the raw-Celery baseline imports it from here
(devtools/bench/baseline.py), so the engine and the floor run the same code.

Standard library only, no Django: it runs in the package's environment in the task
sandbox, and in the baseline's workers, which load nothing of the project's apps."""

from __future__ import annotations

__all__ = ["step"]


def step(n: int = 0) -> dict[str, int]:
    """The next number: enough work to have a result to record, no more."""
    return {"n": n + 1}
