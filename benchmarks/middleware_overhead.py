"""Per-step overhead of middleware on a checkpointed step: none installed, empty hooks, OpenTelemetry.

    .venv/bin/python benchmarks/middleware_overhead.py [--steps 200 2000] [--repeats 20]

The same measurement as ``checkpoint_overhead.py`` (whose harness this reuses: N trivial steps in
one call request, in checkpointing mode, against a recording orchestrator in another process), with
the function's middleware set to:

- none: the plain request state, as every function without middleware runs;
- empty hooks: a middleware overriding ``before_step``/``after_step`` with hooks that do nothing
  (the cost of the hook machinery itself: the hooked request state, a StepInfo per step);
- OpenTelemetry: ``eagerstep.extras.otel`` with the SDK's TracerProvider and a BatchSpanProcessor
  whose exporter drops the spans (a span per request and per step, recorded and batched as in
  production, minus the network).

Microseconds per step (median / min / max over the repeats), the step body excluded.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.checkpoint_overhead import Bench, Result, measure, start_orchestrator, summarise  # noqa: E402
from eagerstep.core import transport  # noqa: E402
from eagerstep.core.middleware import Middleware, StepInfo, StepResult  # noqa: E402


class EmptyHooks(Middleware):
    def before_step(self, step: StepInfo) -> None:
        pass

    def after_step(self, step: StepInfo, result: StepResult) -> None:
        pass


def otel_middleware() -> tuple[Middleware, Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from eagerstep.extras.otel import OpenTelemetryMiddleware

    class Dropped(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropped()))
    return OpenTelemetryMiddleware(tracer_provider=provider), provider


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Measure, print the table, and return its rows (``make bench`` puts them in RESULTS.md)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, nargs="+", default=[200, 2000], help="steps per run")
    parser.add_argument("--repeats", type=int, default=20, help="runs measured per row (default 20)")
    args = parser.parse_args(argv)
    otel, provider = otel_middleware()
    configs: list[tuple[str, list[Middleware]]] = [
        ("none", []),
        ("empty hooks", [EmptyHooks()]),
        ("OpenTelemetry", [otel]),
    ]
    proc, url = start_orchestrator()
    bench = Bench(url)
    rows: list[tuple[str, str, int, Result]] = []
    try:

        async def all_rows() -> None:
            for is_async in (False, True):
                function = bench.functions[is_async, 1]
                for n in args.steps:
                    for label, middleware in configs:
                        function.middleware[:] = middleware
                        result = await measure(bench, is_async, n, False, args.repeats)
                        rows.append(("async def" if is_async else "def", label, n, result))
                function.middleware.clear()
            await transport.shutdown_async()

        asyncio.run(all_rows())
    finally:
        transport.shutdown(timeout=5)
        bench.handler.close()
        provider.shutdown()
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=10)
    print(f"Middleware overhead per checkpointed step: trivial steps, {args.repeats} runs per row.")
    print("Microseconds per step (median / min / max), the step body excluded; 'step loop' and")
    print("'whole request' as in checkpoint_overhead.py. '+ vs none': the step-loop median minus the")
    print("row without middleware.\n")
    print(
        f"{'function':10} {'middleware':14} {'N':>5}  {'step loop':>20}  {'whole request':>20}  "
        f"{'+ vs none':>9}"
    )
    base: dict[tuple[str, int], float] = {}
    table: list[dict[str, Any]] = []
    for flavour, label, n, r in rows:
        loop = statistics.median(r.loop_us)
        if label == "none":
            base[flavour, n] = loop
        extra = loop - base.get((flavour, n), loop)
        print(
            f"{flavour:10} {label:14} {n:5d}  {summarise(r.loop_us):>20}  {summarise(r.request_us):>20}  "
            f"{extra:+9.1f}"
        )
        table.append(
            {
                "function": flavour,
                "middleware": label,
                "steps": n,
                "loop": summarise(r.loop_us),
                "request": summarise(r.request_us),
                "extra": f"{extra:+.1f}",
            }
        )
    return table


if __name__ == "__main__":
    main()
