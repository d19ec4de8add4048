"""The benchmark tool's own logic (the benchmark itself runs with `make bench`)."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from devtools.bench.stats import Client, Figure, percentile


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0


def test_a_figure_reports_median_range_and_target() -> None:
    lower = Figure("handoff", "ms", [5.0, 3.0, 4.0], "lower", target=4.5)
    assert lower.median == 4.0
    assert lower.meets_target() is True
    assert lower.as_dict()["min"] == 3.0
    assert lower.as_dict()["max"] == 5.0
    higher = Figure("rate", "tasks/s", [100.0, 300.0, 200.0], "higher", target=250.0)
    assert higher.meets_target() is False
    assert Figure("x", "ms", [1.0], "lower").meets_target() is None


def test_the_client_refuses_anything_but_loopback() -> None:
    with pytest.raises(AssertionError):
        Client("http://10.0.0.5:8000/api", "token")


@pytest.mark.django_db
def test_bench_refuses_the_embedded_mode(settings: object) -> None:
    settings.EMBEDDED_BROKER = True  # type: ignore[attr-defined]
    with pytest.raises(CommandError, match="CELERY_BROKER_URL"):
        call_command("bench", "--repeat", "1")


def test_task_start_measures_both_ways() -> None:
    from devtools.bench.task_start import task_start

    figures = task_start(samples=3)
    assert set(figures) == {"plain_ms", "sandboxed_ms", "cost_ms"}
    assert 0 < figures["plain_ms"] < 5000
    assert 0 < figures["sandboxed_ms"] < 5000
    assert figures["cost_ms"] == figures["sandboxed_ms"] - figures["plain_ms"]
