"""The datasets pages: every member sees the tenant's datasets and, for one, who writes and
reads it, its latest updates (linked to their runs) and its lineage as nested lists; another
tenant's dataset only while it is shared; and a run's page lists the versions it read and
produced when its spec names datasets."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client
from django.utils import timezone

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.models import TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.events.lineage_support import REPORT_FILE, apply, apply_chain, record_update, share
from tests.harness import Team
from workflows.models import Workflow

pytestmark = pytest.mark.django_db


def signed_in(client: Client, team: Team, role: str = "viewer") -> Client:
    client.force_login(team.users[role])
    return client


def page(client: Client, url: str, **query: Any) -> str:
    response = client.get(url, query)
    assert response.status_code == 200, response.content[:2000]
    return response.content.decode()


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def section(html: str, element_id: str) -> str:
    start = html.index(f'id="{element_id}"')
    return html[start : html.index("</div>", start)]


def a_run(team: Team, workflow: Workflow) -> WorkflowRun:
    with tenant_scope([team.tenant]):
        return trigger_run(actor=Actor.cli(), workflow=workflow, params={}).run


def test_it_lists_the_datasets_with_their_counts(client: Client, team: Team) -> None:
    workflows = apply_chain(team)
    record_update(team, "raw.orders", workflow=workflows["extract"], task_id="pull")
    html = page(signed_in(client, team), f"/t/{team.slug}/datasets/")
    assert '<a href="/t/acme/datasets/" aria-current="page">Datasets</a>' in html
    assert re.findall(r'data-dataset="([^"]+)"', html) == [
        "raw.orders",
        REPORT_FILE,
        "warehouse.orders",
    ]
    assert f'href="/t/acme/datasets/{REPORT_FILE}/"' in html
    row = text_of(html.split('data-dataset="raw.orders"')[1].split("</tr>")[0])
    assert "this tenant" in row
    assert "never" not in row  # updated once
    assert re.search(r"\b1 1\s*$", row.strip())  # one producer, one consumer


def test_it_pages_the_list_and_says_when_there_is_nothing(client: Client, team: Team) -> None:
    signed_in(client, team)
    assert "No datasets yet" in page(client, f"/t/{team.slug}/datasets/")
    names = [f"d{i:02}" for i in range(51)]  # at most 50 outlets a task
    tasks = {
        "a": {"type": "noop", "outlets": names[:30]},
        "b": {"type": "noop", "outlets": names[30:]},
    }
    apply(team, {"name": "w", "tasks": tasks})
    first = page(client, f"/t/{team.slug}/datasets/")
    assert first.count("data-dataset=") == 50
    [link] = re.findall(r'href="\?cursor=([^"]+)" rel="next"', first)
    second = page(client, f"/t/{team.slug}/datasets/", cursor=link)
    assert re.findall(r'data-dataset="([^"]+)"', second) == ["d50"]
    bad = page(client, f"/t/{team.slug}/datasets/", cursor="%%")
    assert "invalid cursor" in bad


def test_it_shows_a_datasets_producers_consumers_updates_and_lineage(
    client: Client, team: Team
) -> None:
    workflows = apply_chain(team)
    run = a_run(team, workflows["clean"])
    record_update(team, "warehouse.orders", run=run, task_id="tidy", metadata={"rows": 7})
    html = page(signed_in(client, team), f"/t/{team.slug}/datasets/warehouse.orders/")
    text = text_of(html)
    assert "clean , task tidy" in text
    assert "report , task build (inlet)" in text
    assert "report , task wait (sensor)" in text
    assert f'href="/t/acme/runs/{run.pk}/"' in html
    assert "{&quot;rows&quot;: 7}" in html
    upstream, downstream = section(html, "upstream"), section(html, "downstream")
    assert "workflow:acme:clean" in upstream
    assert "dataset:acme:raw.orders" in upstream
    assert "workflow:acme:extract" in upstream  # two steps by default
    assert "workflow:acme:report" in downstream
    assert f"dataset:acme:{REPORT_FILE}" in downstream
    assert "workflow:acme:extract" not in section(
        page(client, f"/t/{team.slug}/datasets/warehouse.orders/", depth=1), "upstream"
    )
    assert "depth" in page(client, f"/t/{team.slug}/datasets/warehouse.orders/", depth=9)


def test_it_has_a_page_for_a_name_with_slashes_and_colons(client: Client, team: Team) -> None:
    apply_chain(team)
    html = page(signed_in(client, team), f"/t/{team.slug}/datasets/{quote(REPORT_FILE)}/")
    assert f'<h1 class="mono">{REPORT_FILE}</h1>' in html
    assert "Never updated yet" in html


def test_it_shows_another_tenants_dataset_only_while_shared(
    client: Client, team: Team, outsider: Team
) -> None:
    workflows = apply_chain(team)
    record_update(team, "warehouse.orders", run=a_run(team, workflows["clean"]), task_id="tidy")
    apply(
        outsider,
        {
            "name": "mirror",
            "tasks": {
                "copy": {"type": "noop", "inlets": [{"tenant": "acme", "name": "warehouse.orders"}]}
            },
        },
    )
    client.force_login(outsider.owner)
    url = f"/t/{outsider.slug}/datasets/warehouse.orders/"
    assert client.get(url, {"owner": "acme"}).status_code == 404
    assert client.get(f"/t/{team.slug}/datasets/warehouse.orders/").status_code == 404
    share(team, outsider, "warehouse.orders")
    html = page(client, url, owner="acme")
    assert "shared by" in html
    updates = section(html, "ds-updates")
    assert "run #" in updates
    assert "/runs/" not in updates  # acme's runs are not globex's to open
    assert "workflow:acme:" not in html  # the owner's workflows stay hidden
    assert "workflow:globex:mirror" in section(html, "downstream")
    listed = page(client, f"/t/{outsider.slug}/datasets/")
    assert 'href="/t/globex/datasets/warehouse.orders/?owner=acme"' in listed


def test_it_needs_a_member(client: Client, team: Team, outsider: Team) -> None:
    apply_chain(team)
    anonymous = client.get(f"/t/{team.slug}/datasets/")
    assert anonymous.status_code == 302
    assert "/login" in anonymous["Location"]
    client.force_login(outsider.owner)
    assert client.get(f"/t/{team.slug}/datasets/").status_code == 404


# --- the run page -------------------------------------------------------------------------


def test_it_lists_the_versions_a_run_read_and_produced_on_its_page(
    client: Client, team: Team
) -> None:
    workflows = apply_chain(team)
    earlier = record_update(team, "warehouse.orders", at=timezone.now() - dt.timedelta(hours=1))
    run = a_run(team, workflows["report"])
    TaskInstance.objects.dangerously_unscoped().filter(run=run, task_id="build").update(
        started_at=timezone.now()
    )
    made = record_update(team, REPORT_FILE, run=run, task_id="build")
    html = page(signed_in(client, team), f"/t/{team.slug}/runs/{run.pk}/")
    read, produced = section(html, "datasets-read"), section(html, "datasets-produced")
    assert "warehouse.orders" in read
    assert f"update #{earlier.pk}" in read
    assert REPORT_FILE in produced
    assert f"update #{made.pk}" in produced


def test_it_shows_no_datasets_section_for_a_run_without_any(client: Client, team: Team) -> None:
    workflow = apply(team, {"name": "plain", "tasks": {"t": {"type": "noop"}}})
    run = a_run(team, workflow)
    assert 'id="run-datasets"' not in page(
        signed_in(client, team), f"/t/{team.slug}/runs/{run.pk}/"
    )
