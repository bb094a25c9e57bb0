"""The functions the benchmarks serve: N trivial ``step.run`` calls, in both modes, def and async def.

Each function records when it started (wall clock, for "function start -> run end"), times its own
step loop with ``perf_counter_ns`` and returns the figures, so the
in-worker overhead per checkpointed step (everything ``step.run`` adds around the step body) is
measured where users pay it: inside a real request, behind a real server, with the sender running.
The step body's own cost is measured in the same request (the same loop calling the body directly)
and subtracted.

Function ids: ``steps-{n}-cp`` / ``steps-{n}-std`` (def), ``asteps-{n}-cp`` (async def) and
``three-cp`` / ``three-std`` (3 steps, for throughput), ``io-10-cp`` / ``io-10-std`` (10 steps that each
wait 2 ms, as on a small database or HTTP call: checkpoints then happen during the run),
``par-eager`` / ``par-orch`` (a parallel group of 3 branches that each wait 50 ms, with checkpointing:
run in the worker, or planned for the orchestrator). Events: ``bench/<id>``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import eagerstep

STEP_COUNTS = (1, 10, 100)
IO_STEPS = 10
IO_SECONDS = 0.002
ENGINE_URL = os.environ.get("BENCH_ENGINE_URL", "http://127.0.0.1:8288")


def event_name(fn_id: str) -> str:
    return f"bench/{fn_id}"


def body(i: int) -> int:
    """The trivial step body."""
    return i


def io_body(i: int) -> int:
    """A step that waits on I/O for a while (2 ms), like a small database or HTTP call."""
    time.sleep(IO_SECONDS)
    return i


def _body_ns(n: int) -> int:
    t0 = time.perf_counter_ns()
    for i in range(n):
        body(i)
    return time.perf_counter_ns() - t0


client = eagerstep.Client(
    app_id="bench",
    dev=True,
    api_base_url=ENGINE_URL,
    event_api_base_url=ENGINE_URL,
)


def _make_sync(n: int, checkpointing: bool) -> eagerstep.Function[Any]:
    fn_id = f"steps-{n}-{'cp' if checkpointing else 'std'}"

    def handler(ctx: eagerstep.Context) -> dict[str, Any]:
        started = time.time()
        base = _body_ns(n)
        t0 = time.perf_counter_ns()
        total = 0
        for i in range(n):
            total += ctx.step.run(f"s{i}", body, i)
        loop_ns = time.perf_counter_ns() - t0
        return {"n": n, "total": total, "loop_ns": loop_ns, "body_ns": base, "started": started}

    handler.__name__ = fn_id.replace("-", "_")
    return client.function(
        id=fn_id, trigger=eagerstep.Event(event_name(fn_id)), retries=0, checkpointing=checkpointing
    )(handler)


def _make_async(n: int) -> eagerstep.Function[Any]:
    fn_id = f"asteps-{n}-cp"

    async def handler(ctx: eagerstep.Context) -> dict[str, Any]:
        started = time.time()
        base = _body_ns(n)
        t0 = time.perf_counter_ns()
        total = 0
        for i in range(n):
            total += await ctx.step.run(f"s{i}", body, i)
        loop_ns = time.perf_counter_ns() - t0
        return {"n": n, "total": total, "loop_ns": loop_ns, "body_ns": base, "started": started}

    handler.__name__ = fn_id.replace("-", "_")
    return client.function(
        id=fn_id, trigger=eagerstep.Event(event_name(fn_id)), retries=0, checkpointing=True
    )(handler)


def _make_three(checkpointing: bool) -> eagerstep.Function[Any]:
    fn_id = f"three-{'cp' if checkpointing else 'std'}"

    def handler(ctx: eagerstep.Context) -> int:
        return sum(ctx.step.run(f"s{i}", body, i) for i in range(3))

    handler.__name__ = fn_id.replace("-", "_")
    return client.function(
        id=fn_id,
        trigger=eagerstep.Event(event_name(fn_id)),
        retries=0,
        checkpointing=checkpointing,
    )(handler)


def _make_io(checkpointing: bool) -> eagerstep.Function[Any]:
    fn_id = f"io-{IO_STEPS}-{'cp' if checkpointing else 'std'}"

    def handler(ctx: eagerstep.Context) -> dict[str, Any]:
        started = time.time()
        total = sum(ctx.step.run(f"s{i}", io_body, i) for i in range(IO_STEPS))
        return {"n": IO_STEPS, "total": total, "started": started}

    handler.__name__ = fn_id.replace("-", "_")
    return client.function(
        id=fn_id, trigger=eagerstep.Event(event_name(fn_id)), retries=0, checkpointing=checkpointing
    )(handler)


PARALLEL_BRANCHES = 3
PARALLEL_SECONDS = 0.05


def parallel_body(i: int) -> int:
    """One branch of the parallel group: 50 ms of I/O, like a model or payment-provider call."""
    time.sleep(PARALLEL_SECONDS)
    return i


def _make_parallel(mode: str) -> eagerstep.Function[Any]:
    fn_id = f"par-{'eager' if mode == 'eager' else 'orch'}"

    def handler(ctx: eagerstep.Context) -> dict[str, Any]:
        started = time.time()
        results = ctx.step.parallel(
            [lambda i=i: ctx.step.run(f"b{i}", parallel_body, i) for i in range(PARALLEL_BRANCHES)]
        )
        return {"n": PARALLEL_BRANCHES, "total": sum(results), "started": started}

    handler.__name__ = fn_id.replace("-", "_")
    return client.function(
        id=fn_id, trigger=eagerstep.Event(event_name(fn_id)), retries=0, checkpointing=True, parallel=mode
    )(handler)


FUNCTIONS: list[eagerstep.Function[Any]] = [
    *(_make_sync(n, cp) for n in STEP_COUNTS for cp in (True, False)),
    *(_make_async(n) for n in STEP_COUNTS),
    _make_three(True),
    _make_three(False),
    _make_io(True),
    _make_io(False),
    _make_parallel("eager"),
    _make_parallel("orchestrated"),
]


def official_functions(inngest_client: Any) -> list[Any]:
    """The same N-step and 3-step functions written with the official ``inngest`` SDK (standard mode only:
    its Python SDK has no checkpointing)."""
    import inngest

    functions: list[Any] = []
    for n in STEP_COUNTS:
        fn_id = f"steps-{n}-std"

        def handler(ctx: Any, n: int = n) -> dict[str, Any]:
            total = 0
            for i in range(n):
                total += ctx.step.run(f"s{i}", body, i)
            return {"n": n, "total": total}

        functions.append(
            inngest_client.create_function(
                fn_id=fn_id, trigger=inngest.TriggerEvent(event=event_name(fn_id)), retries=0
            )(handler)
        )

    def io(ctx: Any) -> dict[str, Any]:
        return {"n": IO_STEPS, "total": sum(ctx.step.run(f"s{i}", io_body, i) for i in range(IO_STEPS))}

    io_id = f"io-{IO_STEPS}-std"
    functions.append(
        inngest_client.create_function(
            fn_id=io_id, trigger=inngest.TriggerEvent(event=event_name(io_id)), retries=0
        )(io)
    )

    def three(ctx: Any) -> int:
        return sum(ctx.step.run(f"s{i}", body, i) for i in range(3))

    functions.append(
        inngest_client.create_function(
            fn_id="three-std",
            trigger=inngest.TriggerEvent(event=event_name("three-std")),
            retries=0,
        )(three)
    )
    return functions
