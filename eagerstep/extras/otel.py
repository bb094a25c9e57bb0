"""OpenTelemetry tracing: a span per call request of a run and a span per step (``pip install
eagerstep[otel]``).

    from eagerstep.extras.otel import OpenTelemetryMiddleware

    client = eagerstep.Client(app_id="shop", middleware=[OpenTelemetryMiddleware()])

The request's span is a child of the span current when the function starts (a framework's own
instrumentation), else of the trace in the request's ``traceparent`` header, else a new trace. A
step that runs here gets a span from the moment it starts to the moment it ends, current while its
code runs (so spans the code makes are its children; a parallel group's steps run concurrently and
their spans are siblings, not current); a step handed to the orchestrator (a sleep, a wait, an
invoke, a step planned for a request of its own) gets a span with ``eagerstep.step.scheduled``.
Memoised steps get no span: the request's span counts them (``eagerstep.memoised_steps``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eagerstep._version import __version__
from eagerstep.core.errors import NonRetriableError
from eagerstep.core.middleware import Middleware, RunInfo, RunOutcome, StepInfo, StepResult

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError(
        "eagerstep.extras.otel needs the OpenTelemetry API: pip install 'eagerstep[otel]'"
    ) from exc

__all__ = ["OpenTelemetryMiddleware"]


@dataclass
class _Spans:
    run: Span
    run_context: Any
    token: object
    steps: dict[str, tuple[Span, object | None]] = field(default_factory=dict)


class OpenTelemetryMiddleware(Middleware):
    """Spans for runs and steps. ``tracer_provider``: default, the global one."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("eagerstep", __version__, tracer_provider=tracer_provider)

    # -- the request ---------------------------------------------------------------------------

    def before_function(self, run: RunInfo) -> None:
        parent = None
        kind = SpanKind.INTERNAL
        if not trace.get_current_span().get_span_context().is_valid:
            kind = SpanKind.SERVER
            if "traceparent" in run.headers:
                parent = propagate.extract(run.headers)
        event_name = run.event.get("name")
        span = self.tracer.start_span(
            f"eagerstep.run {run.function.id}",
            context=parent,
            kind=kind,
            attributes={
                "eagerstep.run_id": run.run_id,
                "eagerstep.function_id": run.function_id,
                "eagerstep.attempt": run.attempt,
                "eagerstep.checkpointing": run.checkpointing,
                "eagerstep.replaying": run.replaying,
                "eagerstep.memoised_steps": run.memoised_steps,
                "eagerstep.event_name": event_name if isinstance(event_name, str) else "",
            },
        )
        run_context = trace.set_span_in_context(span, parent)
        run.values[self] = _Spans(span, run_context, otel_context.attach(run_context))

    def after_function(self, run: RunInfo, outcome: RunOutcome) -> None:
        spans: _Spans | None = run.values.pop(self, None)
        if spans is None:
            return
        for span, token in reversed(list(spans.steps.values())):  # left open by an interrupted step
            _detach(token)
            span.end()
        span = spans.run
        span.set_attribute("eagerstep.outcome", outcome.kind)
        if outcome.kind == "failed" and outcome.error is not None:
            span.set_attribute("eagerstep.final", outcome.final)
            span.record_exception(outcome.error)
            span.set_status(Status(StatusCode.ERROR, f"{type(outcome.error).__name__}: {outcome.error}"))
        _detach(spans.token)
        span.end()

    # -- steps ---------------------------------------------------------------------------------

    def before_step(self, step: StepInfo) -> None:
        spans: _Spans | None = step.run.values.get(self)
        if spans is None or step.memoised:
            return
        span = self.tracer.start_span(
            f"eagerstep.step {step.id}",
            context=spans.run_context,
            attributes={
                "eagerstep.run_id": step.run.run_id,
                "eagerstep.step_id": step.id,
                "eagerstep.step.hashed_id": step.hashed_id,
                "eagerstep.step.kind": step.kind,
                "eagerstep.attempt": step.attempt,
                "eagerstep.checkpointed": step.checkpointed,
                "eagerstep.step.scheduled": not step.executed,
                "eagerstep.step.parallel": step.parallel,
            },
        )
        token = None
        if step.executed and not step.parallel:
            token = otel_context.attach(trace.set_span_in_context(span, spans.run_context))
        spans.steps[step.hashed_id] = (span, token)

    def after_step(self, step: StepInfo, result: StepResult) -> None:
        spans: _Spans | None = step.run.values.get(self)
        if spans is None:
            return
        entry = spans.steps.pop(step.hashed_id, None)
        if entry is None:
            return
        span, token = entry
        _detach(token)
        if result.error is not None:
            error = result.error
            span.set_attribute("eagerstep.step.final", result.final or isinstance(error, NonRetriableError))
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        end = result.start_ns + result.duration_ns if result.start_ns and result.duration_ns else None
        span.end(end_time=end)


def _detach(token: object | None) -> None:
    if token is not None:
        otel_context.detach(token)  # type: ignore[arg-type]
