"""Multi-step def and async def functions driven to completion, request by request, as a server would."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import eagerstep
from eagerstep.core.comm import CommHandler
from tests.support.driver import RunResult, drive, drive_async
from tests.support.orchestrator import RecordingOrchestrator
from tests.support.requests import wire_event


def build(client: eagerstep.Client) -> tuple[CommHandler, dict[str, int]]:
    calls: dict[str, int] = {}

    def count(name: str, value: Any) -> Any:
        calls[name] = calls.get(name, 0) + 1
        return value

    @client.function(id="flow", trigger=eagerstep.Event("shop/order"), retries=2)
    def flow(ctx: eagerstep.Context) -> Any:
        order = ctx.step.run("load", count, "load", {"id": ctx.event.data["id"], "total": 10})
        for i in range(3):
            ctx.step.run("line", count, f"line{i}", i)
        ctx.step.sleep("cool-off", "1m")
        left, right = ctx.step.parallel(
            [
                lambda: ctx.step.run("left", count, "left", "L"),
                lambda: ctx.step.run("right", count, "right", "R"),
            ]
        )
        paid = ctx.step.wait_for_event("paid", event="shop/paid", timeout="1h")
        child = ctx.step.invoke("child", function="shop-child", data={"x": 1})
        after = ctx.step.run("after", count, "after", "done")
        return {
            "order": order,
            "pair": [left, right],
            "paid": paid and paid.data,
            "child": child,
            "after": after,
        }

    @client.function(id="aflow", trigger=eagerstep.Event("shop/order"), retries=2)
    async def aflow(ctx: eagerstep.AsyncContext) -> Any:
        async def acount(name: str, value: Any) -> Any:
            await asyncio.sleep(0)
            return count(name, value)

        order = await ctx.step.run("load", acount, "load", {"id": ctx.event.data["id"], "total": 10})
        for i in range(3):
            await ctx.step.run("line", acount, f"line{i}", i)
        await ctx.step.sleep("cool-off", "1m")
        left, right = await ctx.step.parallel(
            [
                lambda: ctx.step.run("left", acount, "left", "L"),
                lambda: ctx.step.run("right", acount, "right", "R"),
            ]
        )
        paid = await ctx.step.wait_for_event("paid", event="shop/paid", timeout="1h")
        child = await ctx.step.invoke("child", function="shop-child", data={"x": 1})
        after = await ctx.step.run("after", acount, "after", "done")
        return {
            "order": order,
            "pair": [left, right],
            "paid": paid and paid.data,
            "child": child,
            "after": after,
        }

    return CommHandler(client, [flow, aflow], framework="test"), calls


EXPECTED = {
    "order": {"id": 7, "total": 10},
    "pair": ["L", "R"],
    "paid": {"ok": True},
    "child": {"sum": 3},
    "after": "done",
}
ANSWERS: dict[str, Any] = {
    "wait_for_event": {"paid": wire_event("shop/paid", {"ok": True})},
    "invoke": {"child": {"data": {"sum": 3}}},
}


def check(result: RunResult, calls: dict[str, int]) -> None:
    assert result.completed, result.error
    assert result.output == EXPECTED
    # Every step body ran exactly once over the whole run.
    assert calls == {"load": 1, "line0": 1, "line1": 1, "line2": 1, "left": 1, "right": 1, "after": 1}


@pytest.mark.parametrize("fn_id", ["shop-flow", "shop-aflow"])
def test_standard_mode_through_handle(fn_id: str) -> None:
    handler, calls = build(eagerstep.Client(app_id="shop", dev=True, checkpointing=False))
    result = drive(handler.handle, fn_id, wire_event("shop/order", {"id": 7}), **ANSWERS)
    check(result, calls)
    # One request per step, sleep, wait, invoke, plus the parallel group's targeted calls.
    assert result.invocations == 12
    kinds = [[op["op"] for op in batch] for batch in result.op_batches]
    assert all(len(batch) == 1 for batch in kinds if batch[0] != "StepPlanned")
    assert ["StepPlanned", "StepPlanned"] in kinds


@pytest.mark.parametrize("fn_id", ["shop-flow", "shop-aflow"])
async def test_standard_mode_through_handle_async(fn_id: str) -> None:
    handler, calls = build(eagerstep.Client(app_id="shop", dev=True, checkpointing=False))
    result = await drive_async(handler.handle_async, fn_id, wire_event("shop/order", {"id": 7}), **ANSWERS)
    check(result, calls)
    assert result.invocations == 12
    handler.close()


@pytest.mark.parametrize("fn_id", ["shop-flow", "shop-aflow"])
def test_checkpointing_through_handle(orchestrator: RecordingOrchestrator, fn_id: str) -> None:
    client = eagerstep.Client(app_id="shop", dev=True, api_base_url=orchestrator.url)
    handler, calls = build(client)
    result = drive(
        handler.handle, fn_id, wire_event("shop/order", {"id": 7}), orchestrator=orchestrator, **ANSWERS
    )
    check(result, calls)
    # load + 3 lines in one request up to the sleep; the group, wait, invoke as standard; then after.
    assert result.invocations < 12
    assert result.op_batches[0][-1]["op"] == "Sleep"
    assert result.op_batches[-1][-1]["op"] == "RunComplete"


@pytest.mark.parametrize("fn_id", ["shop-flow", "shop-aflow"])
async def test_checkpointing_through_handle_async(orchestrator: RecordingOrchestrator, fn_id: str) -> None:
    client = eagerstep.Client(app_id="shop", dev=True, api_base_url=orchestrator.url)
    handler, calls = build(client)
    result = await drive_async(
        handler.handle_async, fn_id, wire_event("shop/order", {"id": 7}), orchestrator=orchestrator, **ANSWERS
    )
    check(result, calls)
    assert result.invocations < 12
    handler.close()


def test_retries_until_success() -> None:
    client = eagerstep.Client(app_id="shop", dev=True, checkpointing=False)
    attempts: list[int] = []

    @client.function(id="flaky", trigger=eagerstep.Event("e"), retries=3)
    def flaky(ctx: eagerstep.Context) -> Any:
        def unstable() -> str:
            attempts.append(ctx.attempt)
            if len(attempts) < 3:
                raise RuntimeError("try again")
            return "ok"

        return ctx.step.run("unstable", unstable)

    result = drive(CommHandler(client, [flaky], framework="test").handle, "shop-flaky", max_attempts=4)
    assert result.completed and result.output == "ok"
    assert attempts == [0, 1, 2]
