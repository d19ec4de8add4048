"""Trigger rules: when a task may run, given the states of its direct upstreams.

A pure function with Apache Airflow 3's semantics (airflow/ti_deps/deps/
trigger_rule_dep.py, scheduler mode): first the rule may settle the task early as
`skipped` or `upstream_failed`; otherwise it runs when the rule is met, or it waits.
Root tasks and `always` run whatever the upstream states. No Django.

One departure, so that a verdict depends only on the upstreams' final states and never on
the order they finished in: Airflow settles `all_success` on its first skipped or failed
upstream, so a skip and a failure give `skipped` or `upstream_failed` by which came first.
Here a failure settles it at once (`upstream_failed`), and a skip only once every upstream
has finished without one. Every other rule already gives one verdict whatever the order
(its early verdicts are the final ones), and is Airflow's unchanged."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["FINISHED", "Counts", "Decision", "evaluate", "group_state", "group_states"]

Decision = Literal["wait", "run", "skip", "upstream_failed"]


@dataclass(frozen=True)
class Counts:
    """Direct upstreams: how many in all, and how many finished in each state."""

    upstream: int
    success: int = 0
    skipped: int = 0
    failed: int = 0
    upstream_failed: int = 0

    @classmethod
    def of(cls, upstream: int, states: Iterable[str]) -> Counts:
        states = list(states)
        return cls(
            upstream=upstream,
            success=states.count("success"),
            skipped=states.count("skipped"),
            failed=states.count("failed"),
            upstream_failed=states.count("upstream_failed"),
        )

    @property
    def done(self) -> int:
        return self.success + self.skipped + self.failed + self.upstream_failed

    @property
    def upstream_done(self) -> bool:
        return self.done >= self.upstream


def _settle(rule: str, c: Counts) -> Decision | None:
    """The early verdict, if any (Airflow's `flag_upstream_failed` rewrite)."""
    failed_any = c.failed or c.upstream_failed
    if rule == "all_success":
        if failed_any:
            return "upstream_failed"
        # Not at the first skip, as Airflow does: a failure may still come, which would
        # make it upstream_failed, and the verdict would depend on the order.
        if c.skipped and c.upstream_done:
            return "skip"
    elif rule == "all_failed":
        if c.success or c.skipped:
            return "skip"
    elif rule == "all_done_min_one_success":
        if c.skipped:
            return "skip"
        if c.done - c.skipped >= c.upstream - c.skipped and c.success == 0:
            return "upstream_failed"
    elif rule == "all_skipped":
        if c.success or failed_any:
            return "skip"
    elif rule == "one_success":
        if c.upstream_done and c.done == c.skipped:
            return "skip"
        if c.upstream_done and c.success <= 0:
            return "upstream_failed"
    elif rule == "one_failed" and c.upstream_done and not failed_any:
        return "skip"
    elif rule == "one_done":
        if c.upstream_done and not (c.failed or c.success):
            return "skip"
    elif rule == "none_failed":
        if failed_any:
            return "upstream_failed"
    elif rule == "none_failed_min_one_success":
        if failed_any:
            return "upstream_failed"
        if c.skipped == c.upstream:
            return "skip"
    elif rule == "none_skipped" and c.skipped:
        return "skip"
    return None


def _met(rule: str, c: Counts) -> bool:
    if rule == "all_success":
        return c.upstream - c.success <= 0
    if rule == "all_failed":
        return c.upstream - c.failed - c.upstream_failed <= 0
    if rule == "all_done":
        return c.upstream_done
    if rule == "all_done_min_one_success":
        return c.skipped == 0 and c.upstream_done and c.success > 0
    if rule == "all_skipped":
        return c.upstream - c.skipped <= 0
    if rule == "one_success":
        return c.success > 0
    if rule == "one_failed":
        return bool(c.failed or c.upstream_failed)
    if rule == "one_done":
        return c.success + c.failed > 0
    if rule in ("none_failed", "none_failed_min_one_success"):
        return c.upstream - c.success - c.skipped <= 0
    if rule == "none_skipped":
        return c.upstream_done and c.skipped == 0
    raise ValueError(f"unknown trigger rule {rule!r}")


def evaluate(rule: str, counts: Counts) -> Decision:
    if counts.upstream == 0 or rule == "always":
        return "run"
    settled = _settle(rule, counts)
    if settled is not None:
        return settled
    return "run" if _met(rule, counts) else "wait"


# What a task instance may end as (runs.models.TaskInstance.FINISHED, without Django).
FINISHED = frozenset({"success", "failed", "skipped", "upstream_failed", "cancelled"})
UNFINISHED = "running"  # what a group with an unfinished instance counts as


def group_state(states: list[str]) -> str:
    """A mapped task's state as its downstream sees it (the rules see a mapped task as its
    group): unfinished while any instance is; then failed if any failed, else
    upstream_failed if any, else cancelled if any, else skipped if all were skipped, else
    success. One instance: its own state."""
    if len(states) == 1:
        return states[0]
    if any(s not in FINISHED for s in states):
        return UNFINISHED
    for worst in ("failed", "upstream_failed", "cancelled"):
        if worst in states:
            return worst
    return "skipped" if all(s == "skipped" for s in states) else "success"


def group_states(rows: Iterable[tuple[str, str]]) -> dict[str, str]:
    """(task id, state) rows of a run's instances, folded per task by `group_state`."""
    by_task: dict[str, list[str]] = {}
    for task_id, state in rows:
        by_task.setdefault(task_id, []).append(state)
    return {task_id: group_state(states) for task_id, states in by_task.items()}
