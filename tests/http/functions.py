"""The functions every framework serves in the conformance suite: one per behaviour under test."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import eagerstep

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


@client.function(id="every-kind", trigger=eagerstep.Event("test/every-kind"))
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
    *CONFORMANCE_SUITE,
]
