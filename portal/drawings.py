"""A version's graph as the pages draw it (portal/templates/portal/parts/dag.html): the
layout, the tasks in dependency order, and each task's type and trigger rule."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from portal.dag_layout import DagLayout, default_label_width, layout
from runs.graph import graph_for
from workflows import dag
from workflows.spec import WorkflowSpec

__all__ = ["Drawing", "drawing_of", "task_type", "version_drawing"]

CAPTION_CHAR_WIDTH = 6  # px per character of the 11 px "type · rule" line under the id
BADGE_WIDTH = 56  # room right of a mapped task's id for its count badge ("x10000" wide)


@dataclass(frozen=True)
class Drawing:
    dag: DagLayout
    order: list[str]
    task_types: dict[str, str]
    trigger_rules: dict[str, str]
    # Tasks that fan out at run time (`map`): a run's page badges them with their count.
    mapped: frozenset[str] = frozenset()


def task_type(task: Any) -> str:
    kind = getattr(task, "kind", None)
    return f"{task.type} {kind}" if kind else str(task.type)


def drawing_of(spec: WorkflowSpec) -> Drawing:
    """Tasks are taken by id: the stored spec's key order is the database's (PostgreSQL's
    jsonb orders keys by length), so ties in the graph and the grid are broken by name. A
    column is as wide as its longest id or "type · rule" caption."""
    upstream = {task_id: list(spec.tasks[task_id].depends_on) for task_id in sorted(spec.tasks)}
    edges = [(up, task_id) for task_id, ups in upstream.items() for up in ups]
    types = {task_id: task_type(task) for task_id, task in spec.tasks.items()}
    rules = {task_id: str(task.trigger_rule) for task_id, task in spec.tasks.items()}
    mapped = frozenset(t for t, task in spec.tasks.items() if task.map is not None)

    def width(task_id: str) -> int:
        caption = f"{types.get(task_id, '')} · {rules.get(task_id, '')}"
        badge = BADGE_WIDTH if task_id in mapped else 0
        return max(default_label_width(task_id) + badge, CAPTION_CHAR_WIDTH * len(caption))

    return Drawing(
        dag=layout(list(upstream), edges, label_width=width),
        order=dag.topological_order(upstream),
        task_types=types,
        trigger_rules=rules,
        mapped=mapped,
    )


@functools.lru_cache(maxsize=256)
def version_drawing(version_id: int) -> Drawing:
    """A stored version's drawing, made once per process: a version never changes."""
    return drawing_of(graph_for(version_id).spec)
