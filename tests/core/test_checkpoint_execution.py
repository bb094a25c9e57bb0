"""The execution side of checkpointing: when a request runs steps in
place and keeps going, when it falls back, and that no completed step is ever dropped."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

import eagerstep
from eagerstep.core import protocol
from eagerstep.core.comm import CommHandler, Response
from tests.support.orchestrator import RecordingOrchestrator, unused_url
from tests.support.requests import call_request

h = protocol.hash_step_id
FAST_FAIL = eagerstep.Checkpointing(
    max_attempts=1, retry_delay=timedelta(milliseconds=1), request_timeout=timedelta(seconds=2)
)


class Item(BaseModel):
    n: int


def handler_for(api: str, body: Any, *, checkpointing: Any = None, is_async: bool = False) -> CommHandler:
    client = eagerstep.Client(app_id="shop", dev=True, api_base_url=api, checkpointing=checkpointing)
    if is_async:

        @client.function(id="f", trigger=eagerstep.Event("e"), retries=2)
        async def af(ctx: eagerstep.AsyncContext) -> Any:
            return await body(ctx)

        return CommHandler(client, [af], framework="test")

    @client.function(id="f", trigger=eagerstep.Event("e"), retries=2)
    def f(ctx: eagerstep.Context) -> Any:
        return body(ctx)

    return CommHandler(client, [f], framework="test")


def ops_of(response: Response) -> list[dict[str, Any]]:
    assert response.status == 206, (response.status, response.body)
    ops = json.loads(response.body)
    assert isinstance(ops, list)
    return ops


def ten_steps(ctx: eagerstep.Context) -> Any:
    return {"total": sum(ctx.step.run(f"s{i}", lambda i=i: {"i": i})["i"] for i in range(10))}


def assert_each_step_once(
    orch: RecordingOrchestrator, run_id: str, ops: list[dict[str, Any]], names: list[str]
) -> None:
    stored = orch.stored_steps(run_id)
    replied = [op["id"] for op in ops if op["op"] == "StepRun"]
    assert not set(stored) & set(replied), "a confirmed step was sent again"
    assert sorted([*stored, *replied]) == sorted(h(n) for n in names)
    assert not stored.duplicates


def test_ten_steps_in_one_request(orchestrator: RecordingOrchestrator) -> None:
    handler = handler_for(orchestrator.url, ten_steps)
    request = call_request("shop-f", run_id="01RUNTENSTEPS0000000000000", request_id="req-1", generation_id=3)
    ops = ops_of(handler.handle(request))
    # every step was checkpointed before the reply, which carries RunComplete alone (§3.3b)
    assert ops == [{"op": "RunComplete", "id": protocol.RUN_COMPLETE_ID, "data": {"total": 45}}]
    assert_each_step_once(orchestrator, "01RUNTENSTEPS0000000000000", ops, [f"s{i}" for i in range(10)])
    calls = orchestrator.checkpoint_calls("01RUNTENSTEPS0000000000000")
    assert len(calls) <= 10
    for call in calls:
        body = call.json
        assert body["request_id"] == "req-1" and body["generation_id"] == 3
        assert body["fn_id"] == request.header("x-inngest-job-id") or body["fn_id"]
        for op in body["steps"]:
            assert op["timing"]["b"] >= 0 and op["userland"]["id"] == op["name"]


async def test_ten_async_steps_in_one_request(orchestrator: RecordingOrchestrator) -> None:
    async def body(ctx: eagerstep.AsyncContext) -> Any:
        total = 0
        for i in range(10):
            total += (await ctx.step.run(f"s{i}", lambda i=i: {"i": i}))["i"]
        return {"total": total}

    handler = handler_for(orchestrator.url, body, is_async=True)
    ops = ops_of(await handler.handle_async(call_request("shop-f", run_id="01RUNTENASYNC0000000000000")))
    assert ops == [{"op": "RunComplete", "id": protocol.RUN_COMPLETE_ID, "data": {"total": 45}}]
    assert_each_step_once(orchestrator, "01RUNTENASYNC0000000000000", ops, [f"s{i}" for i in range(10)])


def test_sleep_flushes_then_hands_over(orchestrator: RecordingOrchestrator) -> None:
    def body(ctx: eagerstep.Context) -> Any:
        ctx.step.run("a", lambda: 1)
        ctx.step.run("b", lambda: 2)
        ctx.step.sleep("nap", "1s")

    ops = ops_of(
        handler_for(orchestrator.url, body).handle(call_request("shop-f", run_id="01RUNSLEEP000000000000000"))
    )
    assert ops[-1]["op"] == "Sleep"
    # Flushed first: the steps reached the orchestrator before the reply.
    assert set(orchestrator.stored_steps("01RUNSLEEP000000000000000")) == {h("a"), h("b")}
    assert [op["op"] for op in ops] == ["Sleep"]


def test_checkpoint_api_failing_puts_steps_in_the_reply(orchestrator: RecordingOrchestrator) -> None:
    orchestrator.fail("/v1/checkpoint", status=500)
    handler = handler_for(orchestrator.url, ten_steps, checkpointing=FAST_FAIL)
    ops = ops_of(handler.handle(call_request("shop-f", run_id="01RUNFAIL0000000000000000")))
    assert [op["id"] for op in ops[:-1]] == [h(f"s{i}") for i in range(10)]
    assert ops[-1]["op"] == "RunComplete"


def test_checkpoint_api_down_puts_steps_in_the_reply() -> None:
    def body(ctx: eagerstep.Context) -> Any:
        ctx.step.run("a", lambda: 1)
        ctx.step.sleep("nap", "1s")

    ops = ops_of(handler_for(unused_url(), body, checkpointing=FAST_FAIL).handle(call_request("shop-f")))
    assert [op["op"] for op in ops] == ["StepRun", "Sleep"]
    assert ops[0]["id"] == h("a")


def test_stale_dispatch_stops_with_400_no_retry(orchestrator: RecordingOrchestrator) -> None:
    orchestrator.fail("/v1/checkpoint", status=409)
    ran: list[str] = []

    def body(ctx: eagerstep.Context) -> Any:
        ctx.step.run("a", lambda: ran.append("a"))
        ctx.step.sleep("nap", "1s")
        ctx.step.run("b", lambda: ran.append("b"))

    response = handler_for(orchestrator.url, body).handle(call_request("shop-f"))
    assert response.status == 400
    assert response.header("X-Inngest-No-Retry") == "true"
    assert json.loads(response.body)["code"] == "stale_dispatch"
    assert ran == ["a"]


def test_retry_request_returns_after_its_first_step(orchestrator: RecordingOrchestrator) -> None:
    ops = ops_of(
        handler_for(orchestrator.url, ten_steps).handle(
            call_request("shop-f", attempt=1, run_id="01RUNRETRY0000000000000000")
        )
    )
    assert [op["op"] for op in ops] == ["StepRun"]
    assert ops[0]["id"] == h("s0")
    assert orchestrator.checkpoint_calls("01RUNRETRY0000000000000000") == []


def test_step_error_flushes_then_replies_step_error(orchestrator: RecordingOrchestrator) -> None:
    def body(ctx: eagerstep.Context) -> Any:
        ctx.step.run("a", lambda: 1)
        ctx.step.run("b", lambda: 1 / 0)

    response = handler_for(orchestrator.url, body).handle(
        call_request("shop-f", run_id="01RUNSTEPERR00000000000000", max_attempts=3)
    )
    ops = ops_of(response)
    assert [op["op"] for op in ops] == ["StepError"]
    assert ops[0]["error"]["name"] == "ZeroDivisionError"
    assert response.header("X-Inngest-No-Retry") == "false"
    assert set(orchestrator.stored_steps("01RUNSTEPERR00000000000000")) == {h("a")}


def test_non_serialisable_output_fails_at_that_step(orchestrator: RecordingOrchestrator) -> None:
    def body(ctx: eagerstep.Context) -> Any:
        ctx.step.run("a", lambda: 1)
        ctx.step.run("bad", object)

    ops = ops_of(handler_for(orchestrator.url, body).handle(call_request("shop-f")))
    assert ops[-1]["op"] == "StepFailed"
    assert ops[-1]["id"] == h("bad")
    assert ops[-1]["error"]["name"] == "OutputSerializationError"


def test_output_is_recorded_when_the_step_ends(orchestrator: RecordingOrchestrator) -> None:
    shared: dict[str, Any] = {"v": 1}

    def body(ctx: eagerstep.Context) -> Any:
        out = ctx.step.run("a", lambda: shared)
        shared["v"] = 2  # mutating the step's own object later changes nothing recorded
        out["v"] = 3
        ctx.step.sleep("nap", "1s")

    ops_of(
        handler_for(orchestrator.url, body).handle(
            call_request("shop-f", run_id="01RUNMUTATE000000000000000")
        )
    )
    assert orchestrator.stored_steps("01RUNMUTATE000000000000000")[h("a")] == {"v": 1}


def test_max_runtime_plans_the_next_step(orchestrator: RecordingOrchestrator) -> None:
    config = eagerstep.Checkpointing(max_runtime=timedelta(0))
    ops = ops_of(
        handler_for(orchestrator.url, ten_steps, checkpointing=config).handle(call_request("shop-f"))
    )
    assert [op["op"] for op in ops] == ["StepPlanned"]
    assert ops[0]["id"] == h("s0")


@pytest.mark.parametrize(
    "options",
    [
        {"internal_fn_id": None},  # the server sent no ctx.fn_id
        {"disable_immediate_execution": True},
        {"step_id": h("s0")},
    ],
)
def test_standard_mode_when_checkpointing_is_not_allowed(
    orchestrator: RecordingOrchestrator, options: dict[str, Any]
) -> None:
    ops = ops_of(handler_for(orchestrator.url, ten_steps).handle(call_request("shop-f", **options)))
    assert len(ops) == 1
    assert orchestrator.calls_to("/v1/checkpoint") == []


def test_switched_off_per_function(orchestrator: RecordingOrchestrator) -> None:
    ops = ops_of(handler_for(orchestrator.url, ten_steps, checkpointing=False).handle(call_request("shop-f")))
    assert [op["op"] for op in ops] == ["StepRun"]


def test_function_error_after_unconfirmed_steps_replies_the_steps(
    orchestrator: RecordingOrchestrator,
) -> None:
    orchestrator.fail("/v1/checkpoint", status=500)

    def body(ctx: eagerstep.Context) -> Any:
        ctx.step.run("a", lambda: 1)
        raise RuntimeError("after a")

    ops = ops_of(handler_for(orchestrator.url, body, checkpointing=FAST_FAIL).handle(call_request("shop-f")))
    assert [op["id"] for op in ops] == [h("a")]


def test_function_error_after_confirmed_steps_is_a_normal_error(orchestrator: RecordingOrchestrator) -> None:
    def body(ctx: eagerstep.Context) -> Any:
        ctx.step.run("a", lambda: 1)
        raise eagerstep.NonRetriableError("stop")

    response = handler_for(orchestrator.url, body).handle(
        call_request("shop-f", run_id="01RUNFNERR0000000000000000")
    )
    assert response.status == 400
    assert response.header("X-Inngest-No-Retry") == "true"
    assert set(orchestrator.stored_steps("01RUNFNERR0000000000000000")) == {h("a")}


def test_pydantic_output_in_checkpoint_mode(orchestrator: RecordingOrchestrator) -> None:
    def make_item() -> Item:
        return Item(n=4)

    def body(ctx: eagerstep.Context) -> Any:
        item = ctx.step.run("item", make_item)
        assert isinstance(item, Item)
        typed = ctx.step.run("typed", lambda: {"n": 5}, output_type=Item)
        assert typed == Item(n=5)
        return item.n + typed.n

    ops = ops_of(handler_for(orchestrator.url, body).handle(call_request("shop-f")))
    assert ops[-1]["data"] == 9


def test_no_steps_means_a_plain_200(orchestrator: RecordingOrchestrator) -> None:
    response = handler_for(orchestrator.url, lambda ctx: "quick").handle(call_request("shop-f"))
    assert response.status == 200 and json.loads(response.body) == "quick"


def test_fallback_is_logged_once_with_the_reason(
    orchestrator: RecordingOrchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    def body(ctx: eagerstep.Context) -> Any:
        ctx.step.run("a", lambda: 1)
        ctx.step.wait_for_event("w", event="x", timeout="1m")

    with caplog.at_level("INFO", logger="eagerstep"):
        handler_for(orchestrator.url, body).handle(call_request("shop-f"))
    lines = [r.getMessage() for r in caplog.records if "hands over" in r.getMessage()]
    assert len(lines) == 1 and "WaitForEvent" in lines[0]


def test_failing_checkpoint_api_hands_back_at_the_next_step(
    orchestrator: RecordingOrchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    orchestrator.fail("/v1/checkpoint", status=500)
    ran: list[str] = []

    def gave_up() -> bool:  # the checkpointer logs this once it has given up on the flush
        return any("not checkpointed" in r.getMessage() for r in caplog.records)

    def body(ctx: eagerstep.Context) -> Any:
        ctx.step.run("a", lambda: ran.append("a"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not gave_up():
            time.sleep(0.01)  # user code between steps, long enough for the flush to give up
        ctx.step.run("b", lambda: ran.append("b"))

    with caplog.at_level("WARNING", logger="eagerstep"):
        handler = handler_for(orchestrator.url, body, checkpointing=FAST_FAIL)
        ops = ops_of(handler.handle(call_request("shop-f")))
    assert gave_up()
    # Step "a" goes back in the reply; "b" is left for the orchestrator's next call.
    assert [(op["op"], op["id"]) for op in ops] == [("StepRun", h("a"))]
    assert ran == ["a"]
