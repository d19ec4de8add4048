"""Workflow pages: the list (each workflow's schedule in words, its next firing and a strip
of its last runs), a workflow (its graph, params, schedule with the next firings, and the
grid of recent runs x tasks) and its versions with a side-by-side diff of any two.

Every page reads through the selectors inside the tenant's scope (TenantPage), in a number
of statements that does not grow with the workflows, runs or tasks shown: the strips of a
whole list page are one statement (each workflow's range starts at its 20th newest run,
which the workflows' statement finds), a grid two (its runs, then their task instances)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote

from django.urls import path, reverse
from django.utils.safestring import SafeString, mark_safe

from orchestrator.errors import NotFound
from orchestrator.integers import ascii_int
from portal.drawings import Drawing, drawing_of
from portal.pages import TenantPage, keyset_page
from portal.views.webhooks import webhooks_context
from portal.wording import cron_in_words, side_by_side
from runs.models import WorkflowRun
from runs.selectors import (
    RecentRun,
    latest_runs,
    latest_runs_by_workflow,
    task_states_of_runs,
    with_latest_runs_start,
)
from workflows.models import Schedule, Workflow, WorkflowVersion
from workflows.scheduling import schedule_of, upcoming
from workflows.selectors import get_versions, get_workflow, listed_workflows, version_list
from workflows.services import spec_yaml
from workflows.spec import EventTrigger, WorkflowSpec

__all__ = [
    "WorkflowListPage",
    "WorkflowPage",
    "WorkflowVersionsPage",
    "urlpatterns",
]

PAGE_SIZE = 50
STRIP_RUNS = 20
GRID_RUNS = 25
FIRE_TIMES = 10
VERSIONS_SHOWN = 200


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _url_around(name: str, *args: str, slot: str) -> tuple[str, str]:
    """What comes before and after the last argument in the URLs of `name`: hrefs that
    differ only there are made by joining, not by one reverse() each (a grid's 2,500
    cells would cost 40 ms). The slot is the marker's last occurrence, as the last
    argument comes last in the path."""
    before, _, after = reverse(name, args=[*args, slot]).rpartition(slot)
    return before, after


def _schedule(workflow: Workflow) -> Schedule | None:
    try:
        return workflow.schedule
    except Schedule.DoesNotExist:
        return None


# --- the list --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunCell:
    """One run in a strip or a grid's header: its state, link and tooltip."""

    run_id: int
    state: str
    href: str
    title: str


@dataclass(frozen=True)
class WorkflowRow:
    workflow: Workflow
    schedule: Schedule | None
    schedule_words: str
    runs: list[RunCell]

    @property
    def strip_html(self) -> SafeString:
        """The strip's squares, written here and not by the template: a page's 1,000 of them
        cost the template engine 10 ms, and this 1 ms (see GridRow.cells_html)."""
        return mark_safe(  # noqa: S308 (every value in it is escaped)
            "".join(
                f'<a class="cell st-{escape(run.state)}" href="{escape(run.href)}" '
                f'title="{escape(run.title)}" aria-label="{escape(run.title)}"></a>'
                for run in self.runs
            )
        )


def _run_cells(runs: Sequence[WorkflowRun | RecentRun], run_url: tuple[str, str]) -> list[RunCell]:
    before, after = run_url
    return [
        RunCell(
            run.id,
            run.state,
            f"{before}{run.id}{after}",
            f"run {run.id}: {run.state}, {_utc(run.created_at)}",
        )
        for run in runs
    ]


class WorkflowListPage(TenantPage):
    """Live workflows by name, 50 a page (keyset paging: page 100 costs what page 1 does),
    searchable by name and description and filtered by tag."""

    permission = "workflow.view"
    template_name = "portal/workflows/list.html"
    nav = "workflows"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        query = self.request.GET
        search = query.get("q", "").strip()
        tag = query.get("tag", "").strip()
        workflows = listed_workflows(tag=tag or None, search=search or None)
        page = keyset_page(
            with_latest_runs_start(workflows, count=STRIP_RUNS),
            key="name",
            descending=False,
            cursor=query.get("cursor") or None,
            size=PAGE_SIZE,
        )
        starts = {w.pk: w.latest_runs_start for w in page.items}  # type: ignore[attr-defined]
        strips = latest_runs_by_workflow(starts, per_workflow=STRIP_RUNS)
        run_url = _url_around("portal:run", self.tenant.slug, slot="987654321")
        rows = []
        for workflow in page.items:
            schedule = _schedule(workflow)
            words = cron_in_words(schedule.cron) if schedule else ""
            rows.append(
                WorkflowRow(workflow, schedule, words, _run_cells(strips[workflow.pk], run_url))
            )
        return {
            "title": "Workflows",
            "rows": rows,
            "page": page,
            "q": search,
            "tag": tag,
            "filtered": bool(search or tag),
            "strip_runs": STRIP_RUNS,
        }


# --- one workflow ----------------------------------------------------------------------


# A task of a run in the grid: (state, href, title); state "none" and no href when that
# run's version had no such task. A tuple, as a 100-task grid makes 2,500 of them.
GridCell = tuple[str, str, str]


@dataclass(frozen=True)
class GridRow:
    task_id: str
    in_graph: bool  # a task of the current version (others come from older versions' runs)
    cells: list[GridCell]

    @property
    def cells_html(self) -> SafeString:
        """The row's <td>s, written here and not by the template: the template engine takes
        20 ms for a 100-task grid's 2,500 cells, a fifth of the page's budget; this 2 ms."""
        return mark_safe(  # noqa: S308 (every value in it is escaped)
            "".join(
                f'<td><a class="cell st-{escape(state)}" href="{escape(href)}" '
                f'title="{escape(title)}"></a></td>'
                if href
                else f'<td><span class="cell st-none" title="{escape(title)}"></span></td>'
                for state, href, title in self.cells
            )
        )


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None
    required: bool
    description: str
    constraints: str


@dataclass(frozen=True)
class FireTime:
    """A firing in the schedule's timezone and in UTC, written out here: the template's
    date filter would convert both to the server's zone."""

    instant: dt.datetime
    local: str
    utc: str

    @classmethod
    def of(cls, local: dt.datetime) -> FireTime:
        return cls(local, local.strftime("%a %Y-%m-%d %H:%M %Z"), _utc(local))


def _grid(
    order: list[str],
    runs: list[RunCell],
    states: dict[int, dict[str, tuple[str, int]]],
    task_urls: dict[int, tuple[str, str]],
) -> list[GridRow]:
    """Rows are the tasks in the graph's order, then those only older runs had; columns
    are the runs, oldest first (Airflow's grid)."""
    extra = sorted({t for run in runs for t in states[run.run_id]} - set(order))
    in_graph = set(order)
    rows = []
    for task_id in [*order, *extra]:
        segment = quote(task_id, safe="")
        cells: list[GridCell] = []
        for run in runs:
            found = states[run.run_id].get(task_id)
            if found is None:
                cells.append(("none", "", f"{task_id} · run {run.run_id}: not in its version"))
                continue
            state, tries = found
            before, after = task_urls[run.run_id]
            retry = f", try {tries}" if tries > 1 else ""
            title = f"{task_id} · run {run.run_id}: {state}{retry}"
            cells.append((state, f"{before}{segment}{after}", title))
        rows.append(GridRow(task_id, task_id in in_graph, cells))
    return rows


def _params(spec: WorkflowSpec) -> list[Param]:
    rows = []
    for name, param in sorted(spec.params.items()):
        limits = [
            f"one of {', '.join(json.dumps(v) for v in param.enum)}" if param.enum else "",
            f"≥ {param.minimum:g}" if param.minimum is not None else "",
            f"≤ {param.maximum:g}" if param.maximum is not None else "",
            f"matches {param.pattern}" if param.pattern else "",
        ]
        rows.append(
            Param(
                name=name,
                type=param.type,
                default=None if param.default is None else json.dumps(param.default),
                required=param.required,
                description=param.description or "",
                constraints="; ".join(x for x in limits if x),
            )
        )
    return rows


def _parsed(raw: dict[str, Any]) -> WorkflowSpec:
    """A version's spec as models, but for its schedule: the page shows the schedule's row,
    and validating a timezone lists the zoneinfo directory (10 ms a page)."""
    return WorkflowSpec.model_validate({k: v for k, v in raw.items() if k != "schedule"})


class WorkflowPage(TenantPage):
    """A workflow's current version drawn as a graph (coloured by its latest run), its
    params, its schedule with the next firings, and the grid of its last 25 runs."""

    permission = "workflow.view"
    template_name = "portal/workflows/detail.html"
    nav = "workflows"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        workflow = get_workflow(kwargs["workflow"])
        version = workflow.current_version
        if version is None:  # pragma: no cover (apply always sets one)
            raise NotFound(f"workflow {workflow.name!r} has no version")
        spec = _parsed(version.spec)
        drawing = drawing_of(spec)
        return {
            "title": workflow.name,
            "workflow": workflow,
            "version": version,
            "spec": spec,
            "drawing": drawing,
            "params": _params(spec),
            "tab": "overview",
            **self._runs(workflow, drawing),
            **_schedule_context(schedule_of(workflow)),
            **_triggers_context(spec, version.spec),
            **webhooks_context(workflow),
        }

    def _runs(self, workflow: Workflow, drawing: Drawing) -> dict[str, Any]:
        """The grid of the last runs x tasks, and the graph's states: the latest run's."""
        slug = self.tenant.slug
        run_url = _url_around("portal:run", slug, slot="987654321")
        columns = _run_cells(latest_runs(workflow, count=GRID_RUNS), run_url)
        states = task_states_of_runs([c.run_id for c in columns])
        task_urls = {
            c.run_id: _url_around("portal:task", slug, str(c.run_id), slot="~task~")
            for c in columns
        }
        latest = columns[-1] if columns else None
        return {
            "columns": columns,
            "grid": _grid(drawing.order, columns, states, task_urls),
            "latest": latest,
            "dag_states": {t: s for t, (s, _) in states[latest.run_id].items()} if latest else {},
            "dag_links": {t: f"#grid-{t}" for t in drawing.order} if latest else {},
        }


def _triggers_context(spec: WorkflowSpec, raw: dict[str, Any]) -> dict[str, Any]:
    """What else starts runs: the datasets of a dataset schedule (from the raw spec, as
    `_parsed` leaves the schedule out; "tenant/name" for another tenant's) and the event
    triggers."""
    datasets = [
        ref if isinstance(ref, str) else f"{ref['tenant']}/{ref['name']}"
        for ref in (raw.get("schedule") or {}).get("datasets") or ()
    ]
    events = [t.event for t in spec.triggers if isinstance(t, EventTrigger)]
    return {"dataset_schedule": datasets, "event_triggers": events}


def _schedule_context(schedule: Schedule | None) -> dict[str, Any]:
    if schedule is None:
        return {"schedule": None}
    return {
        "schedule": schedule,
        "schedule_words": cron_in_words(schedule.cron),
        "fire_times": [FireTime.of(f) for f in upcoming(schedule, count=FIRE_TIMES)],
    }


# --- versions and their diff -------------------------------------------------------------


def _number(raw: str | None, default: int) -> int:
    if not raw:
        return default
    number = ascii_int(raw)
    if number is None:
        raise NotFound(f"{raw!r} is not a version number")
    return number


class WorkflowVersionsPage(TenantPage):
    """The versions, newest first, and a side-by-side diff of the canonical YAML of any two
    (`?a=&b=`, by default the previous version against the current one)."""

    permission = "workflow.view"
    template_name = "portal/workflows/versions.html"
    nav = "workflows"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        workflow = get_workflow(kwargs["workflow"])
        current = workflow.current_version.number if workflow.current_version else 1
        versions = list(version_list(workflow)[:VERSIONS_SHOWN])
        a = _number(self.request.GET.get("a"), max(current - 1, 1))
        b = _number(self.request.GET.get("b"), current)
        pair: dict[int, WorkflowVersion] = get_versions(workflow, [a, b])
        rows = side_by_side(
            spec_yaml(pair[a].spec).splitlines(), spec_yaml(pair[b].spec).splitlines()
        )
        return {
            "title": f"{workflow.name}: versions",
            "workflow": workflow,
            "versions": versions,
            "shown_all": len(versions) < VERSIONS_SHOWN,
            "current": current,
            "a": pair[a],
            "b": pair[b],
            "rows": rows,
            "changed": any(row.kind not in ("same", "fold") for row in rows),
            "tab": "versions",
        }


urlpatterns = [
    path("workflows/", WorkflowListPage.as_view(), name="workflows"),
    path("workflows/<str:workflow>/", WorkflowPage.as_view(), name="workflow"),
    path(
        "workflows/<str:workflow>/versions/",
        WorkflowVersionsPage.as_view(),
        name="workflow-versions",
    ),
]
