"""The functions every framework serves in the conformance suite: one per behaviour under test."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import eagerstep
from tests.http import middleware_functions

client = eagerstep.Client(app_id="conformance")


def _add(a: int, b: int) -> int:
    return a + b


@client.function(id="steps", trigger=eagerstep.Event("test/steps"))
def steps(ctx: eagerstep.Context) -> dict[str, Any]:
    first = ctx.step.run("first", _add, ctx.event.data.get("start", 1), 1)
    second = ctx.step.run("second", _add, first, 10)
    return {"first": first, "second": second}


@client.function(id="async-steps", trigger=eagerstep.Event("test/async-steps"))
async def async_steps(ctx: eagerstep.Context) -> dict[str, Any]:
    first = await ctx.step.run("first", _add, 1, 1)
    second = await ctx.step.run("second", _add, first, 10)
    return {"first": first, "second": second}


@client.function(id="standard", trigger=eagerstep.Event("test/standard"), checkpointing=False)
def standard(ctx: eagerstep.Context) -> dict[str, Any]:
    first = ctx.step.run("first", _add, 1, 1)
    second = ctx.step.run("second", _add, first, 10)
    return {"first": first, "second": second}


@client.function(id="every-kind", trigger=eagerstep.Event("test/every-kind"), parallel="orchestrated")
def every_kind(ctx: eagerstep.Context) -> dict[str, Any]:
    ran = ctx.step.run("run", _add, 2, 3)
    ctx.step.sleep("nap", timedelta(seconds=5))
    reply = ctx.step.wait_for_event("reply", event="test/reply", timeout=timedelta(minutes=1))
    invoked = ctx.step.invoke("call", function=steps, data={"start": 5})
    ctx.step.send_event("emit", {"name": "test/emitted", "data": {"ran": ran}})
    left, right = ctx.step.parallel(
        [lambda: ctx.step.run("left", _add, 1, 0), lambda: ctx.step.run("right", _add, 2, 0)]
    )
    return {
        "ran": ran,
        "reply": None if reply is None else dict(reply)["data"] if isinstance(reply, dict) else reply.data,
        "invoked": invoked,
        "parallel": [left, right],
    }


@client.function(id="fails", trigger=eagerstep.Event("test/fails"), retries=1, checkpointing=False)
def fails(ctx: eagerstep.Context) -> None:
    raise ValueError("boom")


@client.function(id="non-retriable", trigger=eagerstep.Event("test/non-retriable"))
def non_retriable(ctx: eagerstep.Context) -> None:
    raise eagerstep.NonRetriableError("stop here")


@client.function(id="retry-after", trigger=eagerstep.Event("test/retry-after"))
def retry_after(ctx: eagerstep.Context) -> None:
    raise eagerstep.RetryAfterError("later", timedelta(seconds=30))


def _explode() -> None:
    raise ValueError("step exploded")


@client.function(id="step-fails", trigger=eagerstep.Event("test/step-fails"), retries=1)
def step_fails(ctx: eagerstep.Context) -> str:
    try:
        ctx.step.run("explode", _explode)
    except eagerstep.StepError as error:
        return f"caught {error.name}"
    return "unreachable"


# Eager parallel groups: the steps of a group run concurrently in the request. Each body records
# that it ran; with ``{"meet": true}`` in the event, p1, p2a and p3 wait for one another (so they
# must run at the same time); p2b follows p2a in the same branch.

EXECUTED: Counter[tuple[str, str]] = Counter()
_executed_lock = threading.Lock()
_meeting: dict[str, threading.Barrier] = {}


def _ran(run_id: str, name: str) -> None:
    with _executed_lock:
        EXECUTED[(run_id, name)] += 1


def _meet(run_id: str) -> None:
    with _executed_lock:
        barrier = _meeting.setdefault(run_id, threading.Barrier(3, timeout=10))
    barrier.wait()  # BrokenBarrierError (a step error) unless the three bodies run concurrently


def _branch_step(run_id: str, name: str, meets: bool) -> str:
    _ran(run_id, name)
    if meets:
        _meet(run_id)
    return name.upper()


@client.function(id="eager-parallel", trigger=eagerstep.Event("test/eager-parallel"))
def eager_parallel(ctx: eagerstep.Context) -> dict[str, Any]:
    run, meet = ctx.run_id, bool(ctx.event.data.get("meet"))
    before = ctx.step.run("before", _branch_step, run, "before", False)

    def second_branch() -> str:
        first = ctx.step.run("p2a", _branch_step, run, "p2a", meet)
        return first + ctx.step.run("p2b", _branch_step, run, "p2b", False)

    group = ctx.step.parallel(
        [
            lambda: ctx.step.run("p1", _branch_step, run, "p1", meet),
            second_branch,
            lambda: ctx.step.run("p3", _branch_step, run, "p3", meet),
        ]
    )
    ctx.step.sleep("nap", "1s")
    after = ctx.step.run("after", _branch_step, run, "after", False)
    return {"before": before, "group": list(group), "after": after}


async def _async_branch_step(run_id: str, name: str, meets: bool) -> str:
    _ran(run_id, name)
    if meets:  # the three bodies are tasks on one loop: each waits until all three have started
        for _ in range(1000):
            with _executed_lock:
                started = sum(EXECUTED[(run_id, n)] for n in ("p1", "p2a", "p3"))
            if started >= 3:
                break
            await asyncio.sleep(0.005)
        else:
            raise TimeoutError("the group's steps did not run concurrently")
    return name.upper()


@client.function(id="eager-parallel-async", trigger=eagerstep.Event("test/eager-parallel-async"))
async def eager_parallel_async(ctx: eagerstep.AsyncContext) -> dict[str, Any]:
    run, meet = ctx.run_id, bool(ctx.event.data.get("meet"))
    before = await ctx.step.run("before", _async_branch_step, run, "before", False)

    async def second_branch() -> str:
        first = await ctx.step.run("p2a", _async_branch_step, run, "p2a", meet)
        return first + await ctx.step.run("p2b", _async_branch_step, run, "p2b", False)

    group = await ctx.step.parallel(
        [
            lambda: ctx.step.run("p1", _async_branch_step, run, "p1", meet),
            second_branch,
            lambda: ctx.step.run("p3", _async_branch_step, run, "p3", meet),
        ]
    )
    await ctx.step.sleep("nap", "1s")
    after = await ctx.step.run("after", _async_branch_step, run, "after", False)
    return {"before": before, "group": list(group), "after": after}


def _flaky(run_id: str, name: str, attempt: int) -> str:
    _ran(run_id, name)
    if name == "f2" and attempt == 0:
        raise ValueError("f2 failed on its first attempt")
    return name


@client.function(id="eager-flaky", trigger=eagerstep.Event("test/eager-flaky"))
def eager_flaky(ctx: eagerstep.Context) -> list[str]:
    run, attempt = ctx.run_id, ctx.attempt
    return list(
        ctx.step.parallel([lambda n=n: ctx.step.run(n, _flaky, run, n, attempt) for n in ("f1", "f2", "f3")])
    )


async def _async_flaky(run_id: str, name: str, attempt: int) -> str:
    await asyncio.sleep(0)
    return _flaky(run_id, name, attempt)


@client.function(id="eager-flaky-async", trigger=eagerstep.Event("test/eager-flaky-async"))
async def eager_flaky_async(ctx: eagerstep.AsyncContext) -> list[str]:
    run, attempt = ctx.run_id, ctx.attempt
    return list(
        await ctx.step.parallel(
            [lambda n=n: ctx.step.run(n, _async_flaky, run, n, attempt) for n in ("f1", "f2", "f3")]
        )
    )


# The fixtures of the Inngest server's SDK conformance suite (``inngest alpha conformance run
# --transport serve``; cases in inngest/inngest ``pkg/conformance/runner/serve``): the runner finds
# them by the suffix of their id, and expects exactly these steps, ids and results. Standard mode.


@client.function(
    id="test-suite-simple-fn", trigger=eagerstep.Event("tests/function.test"), checkpointing=False
)
def suite_simple(ctx: eagerstep.Context) -> dict[str, Any]:
    return {"name": ctx.event.name, "body": "ok"}


@client.function(id="test-suite-step-test", trigger=eagerstep.Event("tests/step.test"), checkpointing=False)
def suite_steps(ctx: eagerstep.Context) -> dict[str, Any]:
    first = ctx.step.run("first step", lambda: "first step")
    ctx.step.sleep("sleep", "2s")
    ctx.step.run("second step", lambda: {"first": first, "second": True})
    return {"body": "ok", "name": ctx.event.name}


def _flaky_first_step(ctx: eagerstep.Context) -> str:
    if ctx.attempt == 0:
        raise Exception("broken")
    return f"{ctx.event.data['steps']['ok']}: {ctx.attempt + 1}"


@client.function(id="test-suite-retry-test", trigger=eagerstep.Event("tests/retry.test"), checkpointing=False)
def suite_retry(ctx: eagerstep.Context) -> dict[str, Any]:
    ctx.step.run("first step", _flaky_first_step, ctx)
    if ctx.attempt == 0:
        raise Exception("broken func")
    return {"body": "ok", "name": ctx.event.name}


@client.function(
    id="test-suite-cancel-test",
    trigger=eagerstep.Event("tests/cancel.test"),
    cancel_on=[eagerstep.Event("cancel/please", if_="event.data.request_id == async.data.request_id")],
    checkpointing=False,
)
def suite_cancel(ctx: eagerstep.Context) -> str:
    ctx.step.sleep("sleep", "10s")
    return "not cancelled"


@client.function(
    id="test-suite-wait-for-event", trigger=eagerstep.Event("tests/wait.test"), checkpointing=False
)
def suite_wait(ctx: eagerstep.Context) -> dict[str, Any]:
    resumed = ctx.step.wait_for_event(
        "wait",
        event="test/resume",
        if_="async.data.resume == true && async.data.id == event.data.id",
        timeout="10s",
    )
    return {"result": resumed.data if resumed is not None else None}


CONFORMANCE_SUITE = [suite_simple, suite_steps, suite_retry, suite_cancel, suite_wait]

FUNCTIONS = [
    steps,
    async_steps,
    standard,
    every_kind,
    fails,
    non_retriable,
    retry_after,
    step_fails,
    eager_parallel,
    eager_parallel_async,
    eager_flaky,
    eager_flaky_async,
    *CONFORMANCE_SUITE,
]

# The middleware tests' functions, as globals (Django discovers a module's functions by its globals).
_middleware = middleware_functions.define(client)
mw_flow = _middleware["mw_flow"]
mw_flow_async = _middleware["mw_flow_async"]
mw_flow_standard = _middleware["mw_flow_standard"]
mw_parallel = _middleware["mw_parallel"]
mw_parallel_async = _middleware["mw_parallel_async"]
mw_fails = _middleware["mw_fails"]
mw_wait = _middleware["mw_wait"]
mw_nested = _middleware["mw_nested"]
mw_invoke = _middleware["mw_invoke"]
FUNCTIONS += _middleware.values()
