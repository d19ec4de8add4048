"""Traces (OpenTelemetry; docs/metrics.md, "Traces"): off unless an OTLP endpoint is set
(OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, the exporter's own
variables). Then the web's requests and the workers' Celery tasks are spans (the Django and
Celery instrumentations), and each run is a trace: its `run` span, a child of the request
that triggered it (or a root, for a schedule or an event), is kept on the run as a W3C
`traceparent`; every try of its tasks, on whichever worker, is a span under it. The broker
carries nothing for it: the run's row does, so a try sent again by the reconciler, or run
by a worker's continuation, still lands in its run's trace."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django.conf import settings

__all__ = ["enabled", "end_state", "setup", "span", "start_run", "tracer"]

_setup_lock = threading.Lock()
_set_up = False


def enabled() -> bool:
    return bool(settings.TRACING_ENABLED)


def setup() -> None:
    """Install the tracer provider (an OTLP exporter, batched) and the Django and Celery
    instrumentations, once per process; nothing when tracing is off."""
    global _set_up
    if not enabled() or _set_up:
        return
    with _setup_lock:
        if _set_up:
            return
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.instrumentation.django import DjangoInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(
            resource=Resource.create({"service.name": settings.OTEL_SERVICE_NAME})
        )
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        DjangoInstrumentor().instrument()
        CeleryInstrumentor().instrument()  # type: ignore[no-untyped-call]
        _set_up = True


def tracer() -> Any:
    from opentelemetry import trace

    return trace.get_tracer("orchestrator")


def start_run(workflow: str, tenant_id: int, source: str) -> tuple[str, Any]:
    """The run's span (a child of the current span: the request that triggers it), ended
    at once; returns its `traceparent` to keep on the run, and the span, to name the run
    once its id is known. ("", None) when tracing is off."""
    if not enabled():
        return "", None
    from opentelemetry.propagate import inject
    from opentelemetry.trace import set_span_in_context

    run_span = tracer().start_span(
        f"run {workflow}",
        attributes={"orc.tenant_id": tenant_id, "orc.workflow": workflow, "orc.trigger": source},
    )
    carrier: dict[str, str] = {}
    inject(carrier, context=set_span_in_context(run_span))
    return carrier.get("traceparent", ""), run_span


@contextmanager
def span(
    name: str, traceparent: str, attributes: Mapping[str, Any], start_time: int | None = None
) -> Iterator[Any]:
    """A span under the run whose `traceparent` is given (None when tracing is off)."""
    if not enabled():
        yield None
        return
    from opentelemetry.propagate import extract

    parent = extract({"traceparent": traceparent}) if traceparent else None
    with tracer().start_as_current_span(
        name, context=parent, attributes=dict(attributes), start_time=start_time
    ) as current:
        yield current


def end_state(current: Any, state: str, error: str = "") -> None:
    """Mark a try's span with how it ended (an error status for a failure)."""
    if current is None:
        return
    from opentelemetry.trace import Status, StatusCode

    current.set_attribute("orc.state", state)
    if state == "failed":
        current.set_status(Status(StatusCode.ERROR, error[:500]))
