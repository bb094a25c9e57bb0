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


FUNCTIONS = [steps, async_steps, standard, every_kind, fails, non_retriable, retry_after, step_fails]
