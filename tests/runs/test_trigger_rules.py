"""Trigger rules evaluate a task from the states of its direct upstreams, as Airflow 3's
scheduler does (trigger_rule_dep.py with flag_upstream_failed): some rules settle a task
early (`skip`, `upstream_failed`) before every upstream has finished; `one_*` rules run
as soon as one upstream qualifies; root tasks and `always` run at once. One departure:
the verdict never depends on the order the upstreams finished in (`all_success` with a
skip and a failure is `upstream_failed`, whichever came first)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runs.trigger_rules import Counts, evaluate
from workflows.spec import TRIGGER_RULES

# Upstream states as the engine reads them: unfinished ones count only towards `upstream`.
S, F, K, UF = "success", "failed", "skipped", "upstream_failed"
P, R = "pending", "running"

TABLE: list[tuple[str, tuple[str, ...], str]] = [
    # all_success: every upstream succeeded; a failure settles it at once, a skip once
    # every upstream has finished (a failure still to come would outweigh it).
    ("all_success", (P, P), "wait"),
    ("all_success", (S, R), "wait"),
    ("all_success", (S, S), "run"),
    ("all_success", (S, S, S), "run"),
    ("all_success", (F, R), "upstream_failed"),
    ("all_success", (UF, P), "upstream_failed"),
    ("all_success", (K, R), "wait"),  # Airflow: skip; here a failure may still come
    ("all_success", (K, S, P), "wait"),
    ("all_success", (S, K), "skip"),
    ("all_success", (K, K), "skip"),
    ("all_success", (K, F), "upstream_failed"),
    ("all_success", (K, F, S), "upstream_failed"),  # a failure outweighs a skip
    # all_failed: every upstream failed or upstream_failed; a success or skip skips it.
    ("all_failed", (P, P), "wait"),
    ("all_failed", (F, R), "wait"),
    ("all_failed", (F, F), "run"),
    ("all_failed", (F, UF), "run"),
    ("all_failed", (UF, UF), "run"),
    ("all_failed", (S, R), "skip"),
    ("all_failed", (K, R), "skip"),
    ("all_failed", (F, F, S), "skip"),
    # all_done: every upstream finished, however.
    ("all_done", (P, P), "wait"),
    ("all_done", (S, R), "wait"),
    ("all_done", (F, UF, R), "wait"),
    ("all_done", (S, F), "run"),
    ("all_done", (K, K), "run"),
    ("all_done", (F, UF, K), "run"),
    # all_done_min_one_success: every upstream finished, none skipped, one succeeded.
    ("all_done_min_one_success", (P, P), "wait"),
    ("all_done_min_one_success", (S, R), "wait"),
    ("all_done_min_one_success", (F, R), "wait"),
    ("all_done_min_one_success", (S, F), "run"),
    ("all_done_min_one_success", (S, UF, F), "run"),
    ("all_done_min_one_success", (S, S), "run"),
    ("all_done_min_one_success", (F, F), "upstream_failed"),
    ("all_done_min_one_success", (F, UF), "upstream_failed"),
    ("all_done_min_one_success", (K, R), "skip"),  # Airflow's code: any skip skips it
    ("all_done_min_one_success", (S, K), "skip"),
    # all_skipped: every upstream skipped; anything else finished skips it at once.
    ("all_skipped", (P, P), "wait"),
    ("all_skipped", (K, R), "wait"),
    ("all_skipped", (K, K), "run"),
    ("all_skipped", (S, R), "skip"),
    ("all_skipped", (F, R), "skip"),
    ("all_skipped", (UF, K), "skip"),
    # one_success: runs at the first success without waiting for the others.
    ("one_success", (P, P, P), "wait"),
    ("one_success", (S, P, R), "run"),
    ("one_success", (F, K, R), "wait"),
    ("one_success", (F, F, S), "run"),
    ("one_success", (K, S), "run"),
    ("one_success", (F, F, F), "upstream_failed"),
    ("one_success", (F, K, UF), "upstream_failed"),
    ("one_success", (K, K, K), "skip"),
    # one_failed: runs at the first failed or upstream_failed upstream.
    ("one_failed", (P, P, P), "wait"),
    ("one_failed", (F, P, R), "run"),
    ("one_failed", (UF, P, R), "run"),
    ("one_failed", (S, S, R), "wait"),
    ("one_failed", (S, K, F), "run"),
    ("one_failed", (S, S, S), "skip"),
    ("one_failed", (S, K, K), "skip"),
    # one_done: runs at the first success or failure; upstream_failed does not count.
    ("one_done", (P, P, P), "wait"),
    ("one_done", (S, P, R), "run"),
    ("one_done", (F, P, R), "run"),
    ("one_done", (UF, P, R), "wait"),
    ("one_done", (K, UF, R), "wait"),
    ("one_done", (UF, UF, F), "run"),
    ("one_done", (UF, K, UF), "skip"),
    ("one_done", (K, K, K), "skip"),
    # none_failed: every upstream succeeded or skipped; a failure settles it at once.
    ("none_failed", (P, P), "wait"),
    ("none_failed", (S, R), "wait"),
    ("none_failed", (S, K), "run"),
    ("none_failed", (K, K), "run"),
    ("none_failed", (F, R), "upstream_failed"),
    ("none_failed", (UF, S), "upstream_failed"),
    # none_failed_min_one_success: as none_failed, but all skipped skips it.
    ("none_failed_min_one_success", (P, P), "wait"),
    ("none_failed_min_one_success", (K, R), "wait"),
    ("none_failed_min_one_success", (S, K), "run"),
    ("none_failed_min_one_success", (S, S), "run"),
    ("none_failed_min_one_success", (K, K), "skip"),
    ("none_failed_min_one_success", (F, R), "upstream_failed"),
    ("none_failed_min_one_success", (UF, K), "upstream_failed"),
    # none_skipped: every upstream finished and none skipped; a skip settles it at once.
    ("none_skipped", (P, P), "wait"),
    ("none_skipped", (S, R), "wait"),
    ("none_skipped", (S, F), "run"),
    ("none_skipped", (F, UF), "run"),
    ("none_skipped", (K, R), "skip"),
    ("none_skipped", (S, K), "skip"),
    # always: whatever the upstreams.
    ("always", (P, P), "run"),
    ("always", (F, UF), "run"),
    ("always", (K, R), "run"),
]


@pytest.mark.parametrize(
    ("rule", "upstream", "expected"),
    TABLE,
    ids=[f"{rule}-{'_'.join(states)}" for rule, states, _ in TABLE],
)
def test_it_decides_like_airflow(rule: str, upstream: tuple[str, ...], expected: str) -> None:
    assert evaluate(rule, Counts.of(len(upstream), upstream)) == expected


def test_it_covers_every_rule_of_the_spec() -> None:
    assert {rule for rule, _, _ in TABLE} == set(TRIGGER_RULES)


@pytest.mark.parametrize("rule", TRIGGER_RULES)
def test_it_runs_root_tasks_whatever_the_rule(rule: str) -> None:
    assert evaluate(rule, Counts(upstream=0)) == "run"


def test_it_refuses_an_unknown_rule() -> None:
    with pytest.raises(ValueError, match="unknown trigger rule 'all_sucess'"):
        evaluate("all_sucess", Counts.of(1, ["success"]))


@st.composite
def finished_upstreams(draw: st.DrawFn) -> Counts:
    """1 to 8 upstreams, every one finished in some state."""
    success, skipped, failed, upstream_failed = (
        draw(st.integers(min_value=0, max_value=8)) for _ in range(4)
    )
    total = success + skipped + failed + upstream_failed
    if total == 0:
        success = total = 1
    return Counts(total, success, skipped, failed, upstream_failed)


@given(rule=st.sampled_from(TRIGGER_RULES), counts=finished_upstreams())
def test_it_never_waits_once_every_upstream_has_finished(rule: str, counts: Counts) -> None:
    assert evaluate(rule, counts) != "wait"


@given(rule=st.sampled_from(TRIGGER_RULES), upstream=st.integers(min_value=1, max_value=8))
def test_it_decides_nothing_before_an_upstream_finishes(rule: str, upstream: int) -> None:
    expected = "run" if rule == "always" else "wait"
    assert evaluate(rule, Counts(upstream)) == expected


def verdict_in_order(rule: str, order: tuple[str, ...]) -> str:
    """The verdict the engine reaches when the upstreams finish one by one in this order:
    the first that is not `wait` (the task is decided then, never again)."""
    done: list[str] = []
    for state in order:
        done.append(state)
        decision = evaluate(rule, Counts.of(len(order), done))
        if decision != "wait":
            return decision
    return "wait"


# Final upstream states that Airflow decides by the order they finished in: the skip first
# gives `skip`, the failure first `upstream_failed`. Here always `upstream_failed`.
ORDER_DEPENDENT_IN_AIRFLOW: list[tuple[str, tuple[str, ...]]] = [
    ("all_success", (K, F)),
    ("all_success", (K, UF)),
    ("all_success", (S, K, F)),
    ("all_success", (K, K, UF)),
    ("all_success", (K, F, UF)),
    ("all_success", (S, S, K, F)),
]


@pytest.mark.parametrize(
    ("rule", "final"),
    ORDER_DEPENDENT_IN_AIRFLOW,
    ids=[f"{rule}-{'_'.join(states)}" for rule, states in ORDER_DEPENDENT_IN_AIRFLOW],
)
def test_it_lets_a_failure_outweigh_a_skip_in_any_order(rule: str, final: tuple[str, ...]) -> None:
    verdicts = {verdict_in_order(rule, order) for order in itertools.permutations(final)}
    assert verdicts == {"upstream_failed"}


def test_it_settles_on_the_failure_as_soon_as_it_is_known() -> None:
    assert verdict_in_order("all_success", (F, K, S)) == "upstream_failed"
    assert evaluate("all_success", Counts.of(3, [K, F])) == "upstream_failed"  # S to come


def test_it_skips_all_success_when_the_last_upstream_finishes_whatever_its_state() -> None:
    """The engine re-evaluates a waiting all_success task only on a failure or when its
    last upstream finishes (progress.unmoved_by_success): that must be enough."""
    assert evaluate("all_success", Counts.of(3, [K, S])) == "wait"
    assert evaluate("all_success", Counts.of(3, [K, S, S])) == "skip"
    assert evaluate("all_success", Counts.of(3, [K, S, K])) == "skip"
    assert evaluate("all_success", Counts.of(3, [K, S, F])) == "upstream_failed"


@st.composite
def final_states(draw: st.DrawFn) -> tuple[str, ...]:
    return tuple(draw(st.lists(st.sampled_from([S, K, F, UF]), min_size=1, max_size=6)))


@given(rule=st.sampled_from(TRIGGER_RULES), final=final_states(), data=st.data())
def test_it_decides_the_same_whatever_order_the_upstreams_finish_in(
    rule: str, final: tuple[str, ...], data: st.DataObject
) -> None:
    one = data.draw(st.permutations(final))
    other = data.draw(st.permutations(final))
    assert verdict_in_order(rule, tuple(one)) == verdict_in_order(rule, tuple(other))


@given(rule=st.sampled_from(TRIGGER_RULES), final=final_states(), data=st.data())
def test_it_decides_early_only_what_every_remaining_upstream_would_confirm(
    rule: str, final: tuple[str, ...], data: st.DataObject
) -> None:
    """An early verdict is the verdict on the final states: which is why the order in
    which the engine sees them, or which of them it skips looking at, cannot matter."""
    known = data.draw(st.integers(min_value=0, max_value=len(final)))
    early = evaluate(rule, Counts.of(len(final), final[:known]))
    assert early in ("wait", evaluate(rule, Counts.of(len(final), final)))
