"""eagerstep.testing against a FastAPI app (ASGI, async def functions), with the pytest plugin."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("fastapi")

from fastapi import FastAPI

import eagerstep
from eagerstep.integrations.fastapi import router
from eagerstep.testing import asgi

pytest_plugins = ["eagerstep.testing.plugin"]
pytestmark = [pytest.mark.fastapi, pytest.mark.timeout(60)]

client = eagerstep.Client(app_id="harness-fastapi")


async def fetch(record: int) -> dict[str, int]:
    await asyncio.sleep(0)
    return {"id": record}


@client.function(id="enrich", trigger=eagerstep.Event("demo/enrich"), retries=2)
async def enrich(ctx: eagerstep.AsyncContext) -> dict[str, Any]:
    record = await ctx.step.run("fetch", fetch, int(ctx.event.data["id"]))
    await ctx.step.sleep("rate-limit", "10m")
    score = await ctx.step.run("score", lambda: record["id"] * 2)
    child = await ctx.step.invoke("child", function=double, data={"n": score})
    return {"record": record["id"], "score": score, "child": child}


@client.function(id="double", trigger=eagerstep.Event("demo/double"))
async def double(ctx: eagerstep.AsyncContext) -> int:
    return int(await ctx.step.run("times-two", lambda: ctx.event.data["n"] * 2))


app = FastAPI()
app.include_router(router(client, [enrich, double]), prefix="/api/inngest")


def test_async_function_with_sleep_invoke_and_a_retried_step(eagerstep_harness: Any) -> None:
    h = eagerstep_harness(asgi(app), client)
    assert h.functions == ["harness-fastapi-double", "harness-fastapi-enrich"]
    h.fail_step("fetch", times=1)
    done = h.run("demo/enrich", {"id": 21})
    assert done.completed, done.error
    assert done.output == {"record": 21, "score": 42, "child": 84}
    assert done.step_names == ["fetch", "rate-limit", "score", "child"]
    # A retried step runs as its own call (the engine targets it): its result comes in the reply.
    assert done.step("fetch").attempts == 2 and done.step("fetch").orchestrated
    assert done.step("score").checkpointed
    assert done.step("rate-limit").via == "orchestrator"
