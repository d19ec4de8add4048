"""A retry delay longer than Redis's visibility timeout (after which Redis hands an unacked
message to another consumer), and a try that runs longer than it: retries are timed by the
database, not by a broker countdown, and a redelivered message finds its try taken, so
each try runs exactly once."""

from __future__ import annotations

import pytest

from tests.runs.engine.helpers import attempts_of
from tests.runs.reliability.conftest import Cluster

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster_env() -> dict[str, str]:
    return {"CELERY_VISIBILITY_TIMEOUT": "2"}


def test_a_retry_later_than_the_visibility_timeout_runs_once(cluster: Cluster) -> None:
    # Try 1 fails; try 2, six seconds later, outlasts the visibility timeout, then succeeds.
    script = 'if [ "{{ try_number }}" = "1" ]; then exit 1; fi; sleep 5'
    workflow = cluster.apply(
        {
            "name": "patient",
            "tasks": {
                "t": {
                    "type": "shell",
                    "command": cluster.body(script),
                    "retries": 1,
                    "retry_delay": 6,
                }
            },
        }
    )
    (run,) = cluster.trigger(workflow)
    cluster.wait_finished([run], 60)
    run.refresh_from_db()
    assert run.state == "success"
    tries = attempts_of(cluster, run, "t")
    assert [(a.try_number, a.state) for a in tries] == [(1, "failed"), (2, "success")]
    assert (tries[1].started_at - tries[0].ended_at).total_seconds() >= 5.4  # 6 s, -10% jitter
    assert cluster.executions() == {(run.pk, "t", 1): 1, (run.pk, "t", 2): 1}
