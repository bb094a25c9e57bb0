"""Functions for the middleware tests (tests/http/test_middleware.py, tests/extras): defined on the
conformance client by ``tests.http.functions`` (``define(client)``), so every framework serves them.
They have no middleware of their own: each test attaches what it needs to ``function.middleware``
and takes it off afterwards."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import eagerstep
from eagerstep.core.function import Function

#: (run id, step name) -> how many times its body ran
BODIES: Counter[tuple[str, str]] = Counter()
#: the OpenTelemetry tracer mw-nested's step uses (the test puts one here)
TRACERS: list[Any] = []
_lock = threading.Lock()


def _body(run_id: str, name: str, fail_on_attempt: int = -1, attempt: int = 0) -> dict[str, Any]:
    with _lock:
        BODIES[(run_id, name)] += 1
    if attempt == fail_on_attempt:
        raise ValueError(f"{name} fails on attempt {attempt}")
    return {"step": name, "secret": f"{name}-secret"}


async def _async_body(run_id: str, name: str, fail_on_attempt: int = -1, attempt: int = 0) -> dict[str, Any]:
    return _body(run_id, name, fail_on_attempt, attempt)


def define(client: eagerstep.Client) -> dict[str, Function[Any]]:
    """Define the functions on ``client``; their names and functions."""

    @client.function(id="mw-flow", trigger=eagerstep.Event("test/mw-flow"), retries=2)
    def mw_flow(ctx: eagerstep.Context) -> dict[str, Any]:
        """A step, a sleep, then a step that fails on its first attempt, and an event sent."""
        a = ctx.step.run("a", _body, ctx.run_id, "a")
        ctx.step.sleep("nap", "1s")
        b = ctx.step.run("b", _body, ctx.run_id, "b", 0, ctx.attempt)
        ctx.step.send_event("emit", {"name": "test/mw-emitted", "data": {"encrypted": {"pin": 1234}, "k": 1}})
        return {"a": a, "b": b, "event": ctx.event.data}

    @client.function(id="mw-flow-async", trigger=eagerstep.Event("test/mw-flow-async"), retries=2)
    async def mw_flow_async(ctx: eagerstep.AsyncContext) -> dict[str, Any]:
        a = await ctx.step.run("a", _async_body, ctx.run_id, "a")
        await ctx.step.sleep("nap", "1s")
        b = await ctx.step.run("b", _async_body, ctx.run_id, "b", 0, ctx.attempt)
        await ctx.step.send_event(
            "emit", {"name": "test/mw-emitted", "data": {"encrypted": {"pin": 1234}, "k": 1}}
        )
        return {"a": a, "b": b, "event": ctx.event.data}

    @client.function(
        id="mw-flow-standard",
        trigger=eagerstep.Event("test/mw-flow-standard"),
        retries=2,
        checkpointing=False,
    )
    def mw_flow_standard(ctx: eagerstep.Context) -> dict[str, Any]:
        return mw_flow.handler(ctx)  # type: ignore[no-any-return]

    @client.function(id="mw-parallel", trigger=eagerstep.Event("test/mw-parallel"))
    def mw_parallel(ctx: eagerstep.Context) -> list[Any]:
        """An eager group: three branches, the second of two steps (so the group takes two rounds)."""
        run = ctx.run_id
        before = ctx.step.run("before", _body, run, "before")

        def second() -> list[Any]:
            return [ctx.step.run("p2a", _body, run, "p2a"), ctx.step.run("p2b", _body, run, "p2b")]

        group = ctx.step.parallel(
            [
                lambda: ctx.step.run("p1", _body, run, "p1"),
                second,
                lambda: ctx.step.run("p3", _body, run, "p3"),
            ]
        )
        return [before, *group]

    @client.function(id="mw-parallel-async", trigger=eagerstep.Event("test/mw-parallel-async"))
    async def mw_parallel_async(ctx: eagerstep.AsyncContext) -> list[Any]:
        run = ctx.run_id
        before = await ctx.step.run("before", _async_body, run, "before")

        async def second() -> list[Any]:
            return [
                await ctx.step.run("p2a", _async_body, run, "p2a"),
                await ctx.step.run("p2b", _async_body, run, "p2b"),
            ]

        group = await ctx.step.parallel(
            [
                lambda: ctx.step.run("p1", _async_body, run, "p1"),
                second,
                lambda: ctx.step.run("p3", _async_body, run, "p3"),
            ]
        )
        return [before, *group]

    @client.function(id="mw-fails", trigger=eagerstep.Event("test/mw-fails"), retries=1)
    def mw_fails(ctx: eagerstep.Context) -> None:
        """A step that fails on every attempt, not caught: the run fails."""
        ctx.step.run("doomed", _body, ctx.run_id, "doomed", ctx.attempt, ctx.attempt)

    @client.function(id="mw-wait", trigger=eagerstep.Event("test/mw-wait"))
    def mw_wait(ctx: eagerstep.Context) -> Any:
        """Wait for an event; return its data as the code sees it."""
        got = ctx.step.wait_for_event("reply", event="test/mw-reply", timeout="1m")
        return None if got is None else got.data

    @client.function(id="mw-nested", trigger=eagerstep.Event("test/mw-nested"))
    def mw_nested(ctx: eagerstep.Context) -> str:
        """A step whose code makes a span of its own (with the tracer a test puts in TRACERS)."""

        def traced() -> str:
            with TRACERS[-1].start_as_current_span("inside the step"):
                return "traced"

        return ctx.step.run("outer", traced)

    @client.function(id="mw-invoke", trigger=eagerstep.Event("test/mw-invoke"))
    def mw_invoke(ctx: eagerstep.Context) -> Any:
        return ctx.step.invoke(
            "call", function="conformance-steps", data={"encrypted": {"card": "4111"}, "plain": 2}
        )

    return {
        "mw_invoke": mw_invoke,
        "mw_wait": mw_wait,
        "mw_nested": mw_nested,
        "mw_flow": mw_flow,
        "mw_flow_async": mw_flow_async,
        "mw_flow_standard": mw_flow_standard,
        "mw_parallel": mw_parallel,
        "mw_parallel_async": mw_parallel_async,
        "mw_fails": mw_fails,
    }
