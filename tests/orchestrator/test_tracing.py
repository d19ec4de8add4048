"""Traces (OpenTelemetry), with an in-memory exporter: a run triggered over the API is one
trace: the request's span, the run's span under it, and a span per task try under that,
whichever process runs the try; a failed try's span is an error. Off, nothing is traced."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from opentelemetry import trace
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from runs.models import WorkflowRun
from runs.services import trigger_run
from tests.events.support import drain
from tests.harness import make_token
from tests.runs.engine.helpers import Engine

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = {
    "name": "traced",
    "tasks": {
        "extract": {"type": "noop"},
        "load": {
            "type": "python",
            "callable": "runs.library:fail",
            "depends_on": ["extract"],
            "retries": 1,
            "retry_delay": 0,
        },
    },
}

_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))


@pytest.fixture
def spans(settings: Any) -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory (the process's provider is set once: OpenTelemetry allows
    no second one), with the Django instrumentation for this test."""
    trace.set_tracer_provider(_PROVIDER)  # a no-op after the first time
    settings.TRACING_ENABLED = True
    settings.TASK_CONTINUE_SECONDS = 0
    _EXPORTER.clear()
    DjangoInstrumentor().instrument()
    try:
        yield _EXPORTER
    finally:
        DjangoInstrumentor().uninstrument()
        _EXPORTER.clear()


def test_a_run_is_one_trace_from_the_request_to_each_try(spans: InMemorySpanExporter) -> None:
    engine = Engine(workers=None)
    engine.apply(SPEC)
    token = make_token(engine.tenant, engine.user, "owner")
    answer = Client().post(
        "/api/v1/tenants/eng/workflows/traced/runs/",
        {"params": {}},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert answer.status_code == 201, answer.content
    run = WorkflowRun.objects.dangerously_unscoped().get(pk=answer.json()["id"])
    assert run.trace_context.startswith("00-")
    assert drain(engine, run).state == "failed"

    finished: list[ReadableSpan] = list(spans.get_finished_spans())
    [request] = [s for s in finished if s.kind == SpanKind.SERVER]
    [run_span] = [s for s in finished if s.name == "run traced"]
    tries = [s for s in finished if s.name.startswith("task ")]
    assert request.context is not None
    assert run_span.context is not None
    trace_id = request.context.trace_id
    assert run_span.parent is not None
    assert run_span.parent.span_id == request.context.span_id
    assert run_span.attributes is not None
    assert run_span.attributes["orc.run"] == run.pk
    # One span per try: extract once, load twice (a retry), all in the request's trace.
    assert sorted(s.name for s in tries) == ["task extract", "task load", "task load"]
    for span in tries:
        assert span.context is not None
        assert span.context.trace_id == trace_id
        assert span.parent is not None
        assert span.parent.span_id == run_span.context.span_id
        assert span.attributes is not None
        assert span.attributes["orc.run"] == run.pk
    loads = sorted(
        (s for s in tries if s.name == "task load"),
        key=lambda s: s.attributes["orc.try"] if s.attributes else 0,
    )
    assert [s.attributes["orc.try"] for s in loads if s.attributes] == [1, 2]
    assert all(s.status.status_code == StatusCode.ERROR for s in loads)
    [extract] = [s for s in tries if s.name == "task extract"]
    assert extract.status.status_code != StatusCode.ERROR


def test_off_nothing_is_traced(settings: Any) -> None:
    settings.TRACING_ENABLED = False
    settings.TASK_CONTINUE_SECONDS = 0
    _EXPORTER.clear()
    engine = Engine(workers=None)
    workflow = engine.apply(SPEC)
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
    drain(engine, run)
    assert run.trace_context == ""
    assert _EXPORTER.get_finished_spans() == ()
