"""The OpenTelemetry extra through every framework: a span per call request and per step, parented
to the request's traceparent; a run with a sleep and a step retried once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from eagerstep.core.function import Function
from eagerstep.extras.otel import OpenTelemetryMiddleware
from tests.http import functions
from tests.http.clients.base import HttpClient
from tests.http.middleware_functions import TRACERS
from tests.support.driver import drive
from tests.support.orchestrator import RecordingOrchestrator
from tests.support.requests import wire_event

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    middleware = OpenTelemetryMiddleware(tracer_provider=provider)
    attached = [functions.mw_flow, functions.mw_flow_async, functions.mw_flow_standard]
    for fn in attached:
        fn.middleware.append(middleware)
    yield exporter
    for fn in attached:
        fn.middleware.remove(middleware)
    provider.shutdown()


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


@pytest.mark.parametrize(
    ("fn", "checkpointed"),
    [(functions.mw_flow, True), (functions.mw_flow_async, True), (functions.mw_flow_standard, False)],
)
def test_the_span_tree_of_a_run_with_a_retried_step_and_a_sleep(
    http_client: HttpClient,
    orchestrator: RecordingOrchestrator,
    exporter: InMemorySpanExporter,
    fn: Function[Any],
    checkpointed: bool,
) -> None:
    result = drive(
        http_client.handle,
        fn.fully_qualified_id,
        wire_event("test/mw"),
        orchestrator=orchestrator,
        request_options={"extra_headers": {"traceparent": TRACEPARENT}},
    )
    assert result.completed, result.error
    spans = [s for s in exporter.get_finished_spans() if _attrs(s).get("eagerstep.run_id") == result.run_id]
    runs = sorted((s for s in spans if s.name.startswith("eagerstep.run ")), key=lambda s: s.start_time or 0)
    steps = [s for s in spans if s.name.startswith("eagerstep.step ")]
    assert len(runs) == result.invocations  # one span per call request
    for span in runs:  # each a child of the orchestrator's trace, from the traceparent header
        assert span.context is not None and span.parent is not None
        assert format(span.context.trace_id, "032x") == TRACE_ID
        assert format(span.parent.span_id, "016x") == PARENT_ID
        assert span.kind is SpanKind.SERVER and span.name == f"eagerstep.run {fn.id}"
        assert _attrs(span)["eagerstep.function_id"] == fn.fully_qualified_id
    assert [_attrs(s)["eagerstep.replaying"] for s in runs] == [False] + [True] * (len(runs) - 1)
    assert _attrs(runs[-1])["eagerstep.outcome"] == "completed"

    # every step span is a child of its request's span
    run_ids = {s.context.span_id: i for i, s in enumerate(runs) if s.context is not None}
    tree: list[tuple[int, str, int, bool, bool, str]] = []
    for span in sorted(steps, key=lambda s: s.start_time or 0):
        assert span.parent is not None and span.parent.span_id in run_ids
        attrs = _attrs(span)
        tree.append(
            (
                run_ids[span.parent.span_id],
                attrs["eagerstep.step_id"],
                attrs["eagerstep.attempt"],
                attrs["eagerstep.checkpointed"],
                attrs["eagerstep.step.scheduled"],
                span.status.status_code.name,
            )
        )
    # with checkpointing, "a" runs in the first request and the sleep is reached in it too; in
    # standard mode, each step is a request of its own
    first_b = 1 if checkpointed else 2
    expected = [
        (0, "a", 0, checkpointed, False, "UNSET"),
        (0 if checkpointed else 1, "nap", 0, False, True, "UNSET"),
        (first_b, "b", 0, checkpointed, False, "ERROR"),  # fails...
        (first_b + 1, "b", 1, False, False, "UNSET"),  # ...and its retry replies with the result
        (first_b + 2, "emit", 0, False, False, "UNSET"),
    ]
    assert tree == expected
    failed = next(s for s in steps if s.status.status_code is StatusCode.ERROR)
    assert [e.name for e in failed.events] == ["exception"]
    assert "b fails on attempt 0" in str(failed.status.description)
    assert all((s.end_time or 0) >= (s.start_time or 0) for s in spans)


def test_without_traceparent_a_run_starts_its_own_trace(
    http_client: HttpClient, orchestrator: RecordingOrchestrator, exporter: InMemorySpanExporter
) -> None:
    result = drive(
        http_client.handle, functions.mw_flow.fully_qualified_id, wire_event("t"), orchestrator=orchestrator
    )
    assert result.completed
    runs = [
        s
        for s in exporter.get_finished_spans()
        if s.name.startswith("eagerstep.run ") and _attrs(s)["eagerstep.run_id"] == result.run_id
    ]
    assert runs and all(s.parent is None for s in runs)


def test_spans_made_in_a_steps_code_are_its_children(
    http_client: HttpClient, orchestrator: RecordingOrchestrator
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    middleware = OpenTelemetryMiddleware(tracer_provider=provider)
    functions.mw_nested.middleware.append(middleware)
    TRACERS.append(provider.get_tracer("test"))
    try:
        result = drive(http_client.handle, functions.mw_nested.fully_qualified_id, orchestrator=orchestrator)
    finally:
        TRACERS.clear()
        functions.mw_nested.middleware.clear()
        provider.shutdown()
    assert result.completed and result.output == "traced"
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    inside, step, run = (
        by_name["inside the step"],
        by_name["eagerstep.step outer"],
        by_name["eagerstep.run mw-nested"],
    )
    assert (
        inside.parent is not None
        and step.context is not None
        and inside.parent.span_id == step.context.span_id
    )
    assert step.parent is not None and run.context is not None and step.parent.span_id == run.context.span_id
