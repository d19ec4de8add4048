"""The shipped Grafana dashboard and Prometheus alert rules (deploy/) name only series that
/metrics exposes, with labels those series have: checked against a real scrape after a run,
so a renamed metric or label breaks this test, not an operator's night."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from orchestrator import metrics
from runs.services import trigger_run
from tests.events.support import drain
from tests.runs.engine.helpers import Engine
from tests.workers import REDIS_URL

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "orchestrator.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
TOKEN = "dashboards-" + "y" * 20
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
# Label matchers after a series name: {a="x", b=~"y"}; grouping labels: by (a, b), on (a).
SELECTOR = re.compile(r"\b(orc_[a-z0-9_]+)\s*(\{[^}]*\})?")
GROUPING = re.compile(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")


def dashboard_expressions() -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    document = json.loads(DASHBOARD.read_text())
    walk(document["panels"])
    walk(document["templating"])
    found.extend(v["definition"] for v in document["templating"]["list"] if v.get("definition"))
    return found


def alert_expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


@pytest.fixture
def exposed(settings: Any, transactional_db: None) -> Iterator[dict[str, tuple[str, set[str]]]]:
    """{sample name: (family type, its labels)} of a real scrape after a run, with another
    in flight and a worker's heartbeat: every series /metrics can show."""
    settings.METRICS_ENABLED = True
    settings.METRICS_REDIS_URL = REDIS_URL
    settings.METRICS_KEY_PREFIX = f"orc-test-{uuid.uuid4().hex[:10]}:metrics:"
    settings.METRICS_TOKEN = TOKEN
    settings.TASK_CONTINUE_SECONDS = 0
    metrics.reset()
    engine = Engine(workers=None)
    workflow = engine.apply({"name": "probe", "tasks": {"a": {"type": "noop"}}})
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
    drain(engine, run)
    with engine.scope():  # one in flight, for the gauges of work in flight
        trigger_run(actor=engine.actor, workflow=workflow)
    metrics.heartbeat("w1@host")
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    series: dict[str, tuple[str, set[str]]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        labels = set(metrics.SPECS[family.name].labels) if family.name in metrics.SPECS else set()
        for sample in family.samples:
            labels |= set(sample.labels) - {"le"}
        base = family.name
        for suffix in SUFFIXES[family.type]:
            series[base + suffix] = (family.type, labels)
    yield series
    metrics.reset()


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_series_named_exists_with_its_labels(
    source: str, exposed: dict[str, tuple[str, set[str]]]
) -> None:
    expressions = dashboard_expressions() if source == "dashboard" else alert_expressions()
    assert len(expressions) >= 10
    named: set[str] = set()
    for expression in expressions:
        for name, matchers in SELECTOR.findall(expression):
            named.add(name)
            assert name in exposed, f"{source}: {name} is not exposed ({expression})"
            used = set(re.findall(r"([a-z_]+)\s*[=!]~?", matchers))
            _, labels = exposed[name]
            assert used <= labels | {"le"}, f"{source}: {name} has no label {used - labels}"
        for group in GROUPING.findall(expression):
            grouping = {g.strip() for g in group.split(",") if g.strip()} - {"le"}
            series = [n for n, _ in SELECTOR.findall(expression)]
            available = set().union(*(exposed[n][1] for n in series)) if series else set()
            assert grouping <= available, f"{source}: grouping by {grouping} in {expression}"
    # The dashboard covers the service as the issue asks: runs, tries, durations, queues,
    # the scheduler, the reconciler, deliveries, requests and workers.
    if source == "dashboard":
        assert {
            "orc_runs_finished_total",
            "orc_task_attempts_finished_total",
            "orc_task_duration_seconds_bucket",
            "orc_task_queued_seconds_bucket",
            "orc_queue_depth",
            "orc_scheduler_lag_seconds_bucket",
            "orc_reconciler_actions_total",
            "orc_notification_deliveries_total",
            "orc_http_request_duration_seconds_bucket",
            "orc_worker_up",
            "orc_tenant_concurrent_runs_limit",
        } <= named


def test_the_alert_rules_are_well_formed() -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    names = [rule["alert"] for group in rules["groups"] for rule in group["rules"]]
    assert len(names) == len(set(names))
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert rule["annotations"]["summary"]
            if "for" in rule:
                assert re.fullmatch(r"\d+[smh]", rule["for"])
            # Balanced parentheses and braces: a typo promtool would refuse.
            expression = rule["expr"]
            assert expression.count("(") == expression.count(")"), rule["alert"]
            assert expression.count("{") == expression.count("}"), rule["alert"]
    assert {
        "OrchestratorSchedulerStalled",
        "OrchestratorQueueGrowing",
        "OrchestratorLeaseExpiries",
        "OrchestratorDeliveryFailures",
    } <= set(names)
