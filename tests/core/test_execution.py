"""Execution in standard mode, request by request: replay, op shapes, errors."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel

import eagerstep
from eagerstep.core import protocol
from eagerstep.core.comm import CommHandler, Response
from tests.support.orchestrator import RecordingOrchestrator
from tests.support.requests import call_request, wire_event

h = protocol.hash_step_id


class Order(BaseModel):
    id: int
    total: float


def make(checkpointing: bool = False, **client_kwargs: Any) -> eagerstep.Client:
    return eagerstep.Client(app_id="shop", dev=True, checkpointing=checkpointing, **client_kwargs)


def call(handler: CommHandler, fn_id: str, **kwargs: Any) -> tuple[Response, Any]:
    response = handler.handle(call_request(fn_id, **kwargs))
    return response, (json.loads(response.body) if response.body else None)


async def call_async(handler: CommHandler, fn_id: str, **kwargs: Any) -> tuple[Response, Any]:
    response = await handler.handle_async(call_request(fn_id, **kwargs))
    return response, (json.loads(response.body) if response.body else None)


# ---------------------------------------------------------------------------------------------
# step.run


def test_first_new_step_runs_in_place_and_returns_206_steprun() -> None:
    client = make()

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        return ctx.step.run("load", lambda n: {"n": n}, 7)

    response, ops = call(CommHandler(client, [f], framework="test"), "shop-f")
    assert response.status == 206
    assert response.header("X-Inngest-SDK") == f"eagerstep-py:v{eagerstep.__version__}"
    assert response.header("X-Inngest-Req-Version") == "2"
    assert response.header("X-Inngest-Framework") == "test"
    assert response.header("x-inngest-sdk-handled") == "true"
    [op] = ops
    assert op["op"] == "StepRun"
    assert op["id"] == h("load")
    assert op["name"] == op["displayName"] == "load"
    assert op["data"] == {"n": 7}
    assert op["userland"] == {"id": "load"}
    assert op["timing"]["a"] > 0 and op["timing"]["b"] >= 0


def test_memos_replay_and_function_returns_200() -> None:
    client = make()
    ran: list[str] = []

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        a = ctx.step.run("a", lambda: ran.append("a") or 1)
        b = ctx.step.run("b", lambda: ran.append("b") or 2)
        return {"sum": a + b, "event": ctx.event.data["x"]}

    handler = CommHandler(client, [f], framework="test")
    response, body = call(
        handler, "shop-f", event=wire_event("e", {"x": 5}), steps={h("a"): {"data": 1}, h("b"): {"data": 2}}
    )
    assert response.status == 200
    assert body == {"sum": 3, "event": 5}
    assert ran == []


def test_repeated_ids_hash_with_occurrence_suffix() -> None:
    client = make()

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        return [ctx.step.run("item", lambda i=i: i) for i in range(3)]

    handler = CommHandler(client, [f], framework="test")
    _, ops = call(handler, "shop-f", steps={h("item"): {"data": 0}})
    assert ops[0]["id"] == h("item:1") == protocol.step_id_for_occurrence("item", 1)
    assert ops[0]["userland"] == {"id": "item", "index": 1}
    _response, body = call(
        handler, "shop-f", steps={h("item"): {"data": 0}, h("item:1"): {"data": 1}, h("item:2"): {"data": 2}}
    )
    assert body == [0, 1, 2]


def test_pydantic_outputs_restored_by_annotation_and_output_type() -> None:
    client = make()
    seen: dict[str, Any] = {}

    def load() -> Order:
        return Order(id=1, total=9.5)

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        seen["annotated"] = ctx.step.run("load", load)
        seen["typed"] = ctx.step.run("typed", lambda: None, output_type=Order)
        seen["list"] = ctx.step.run("many", lambda: None, output_type=list[Order])
        return seen["annotated"].total

    handler = CommHandler(client, [f], framework="test")
    _, ops = call(handler, "shop-f")
    assert ops[0]["data"] == {"id": 1, "total": 9.5}
    response, body = call(
        handler,
        "shop-f",
        steps={
            h("load"): {"data": {"id": 1, "total": 9.5}},
            h("typed"): {"data": {"id": 2, "total": 1.0}},
            h("many"): {"data": [{"id": 3, "total": 0}]},
        },
    )
    assert response.status == 200 and body == 9.5
    assert seen["annotated"] == Order(id=1, total=9.5)
    assert seen["typed"] == Order(id=2, total=1.0)
    assert seen["list"] == [Order(id=3, total=0)]


def test_failed_step_memo_raises_step_error_the_code_can_catch() -> None:
    client = make()

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        try:
            ctx.step.run("charge", lambda: 1)
        except eagerstep.StepError as exc:
            return {"name": exc.name, "message": exc.message, "step": exc.step_id}
        return "no error"

    _, body = call(
        CommHandler(client, [f], framework="test"),
        "shop-f",
        steps={h("charge"): {"error": {"name": "CardDeclined", "message": "no funds"}}},
    )
    assert body == {"name": "CardDeclined", "message": "no funds", "step": "charge"}


def test_uncaught_step_error_fails_the_run_without_retry() -> None:
    client = make()

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        return ctx.step.run("charge", lambda: 1)

    response, body = call(
        CommHandler(client, [f], framework="test"),
        "shop-f",
        steps={h("charge"): {"error": {"name": "CardDeclined", "message": "no funds"}}},
    )
    assert response.status == 400
    assert response.header("X-Inngest-No-Retry") == "true"
    assert body["name"] == "CardDeclined" and body["message"] == "no funds"


def test_memo_of_the_wrong_form_is_a_clear_step_error() -> None:
    client = make()

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        return ctx.step.run("a", lambda: 1)

    response, body = call(CommHandler(client, [f], framework="test"), "shop-f", steps={h("a"): 42})
    assert response.status == 400
    assert response.header("X-Inngest-No-Retry") == "true"
    assert body["name"] == "StepStateError"
    assert "wrong form" in body["message"]


def test_input_memo_means_not_run_yet() -> None:
    client = make()

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        return ctx.step.run("a", lambda: "ran")

    _, ops = call(CommHandler(client, [f], framework="test"), "shop-f", steps={h("a"): {"input": []}})
    assert ops[0]["op"] == "StepRun" and ops[0]["data"] == "ran"


def test_one_id_for_two_kinds_of_step_is_an_error() -> None:
    client = make()

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        ctx.step.run("x", lambda: 1)
        ctx.step.sleep("x", "1s")

    response, body = call(CommHandler(client, [f], framework="test"), "shop-f", steps={h("x"): {"data": 1}})
    assert response.status == 400
    assert response.header("X-Inngest-No-Retry") == "true"
    assert body["name"] == "StepUsageError"
    assert "step id 'x' is used for a run step and a sleep step" in body["message"]


# ---------------------------------------------------------------------------------------------
# Errors: StepError vs StepFailed, function-level errors (§3.5)


def _failing(client: eagerstep.Client, exc: Exception) -> eagerstep.Function[Any]:
    def boom() -> None:
        raise exc

    @client.function(id="f", trigger=eagerstep.Event("e"), retries=2)
    def f(ctx: eagerstep.Context) -> Any:
        return ctx.step.run("boom", boom)

    return f


@pytest.mark.parametrize(
    ("exc", "attempt", "op", "no_retry"),
    [
        (ValueError("bad"), 0, "StepError", "false"),
        (ValueError("bad"), 2, "StepFailed", "true"),
        (eagerstep.NonRetriableError("never"), 0, "StepFailed", "true"),
    ],
)
def test_step_error_or_failed_by_attempt(exc: Exception, attempt: int, op: str, no_retry: str) -> None:
    client = make()
    f = _failing(client, exc)
    response, ops = call(
        CommHandler(client, [f], framework="test"), "shop-f", attempt=attempt, max_attempts=3
    )
    assert response.status == 206
    assert response.header("X-Inngest-No-Retry") == no_retry
    [error_op] = ops
    assert error_op["op"] == op
    assert error_op["id"] == h("boom")
    assert error_op["error"]["name"] == type(exc).__name__
    assert error_op["error"]["message"] == str(exc)
    assert error_op["error"]["noRetry"] is (no_retry == "true")


def test_retry_after_sets_header() -> None:
    client = make()
    f = _failing(client, eagerstep.RetryAfterError("later", timedelta(seconds=30)))
    response, _ = call(CommHandler(client, [f], framework="test"), "shop-f")
    assert response.header("Retry-After") == "30"
    assert response.header("X-Inngest-No-Retry") == "false"


def test_retry_after_with_a_date() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert eagerstep.RetryAfterError("x", when).header_value() == "Wed, 02 Jan 2030 03:04:05 GMT"


@pytest.mark.parametrize(
    ("exc", "attempt", "status", "no_retry"),
    [
        (RuntimeError("oops"), 0, 500, "false"),
        (RuntimeError("oops"), 4, 400, "true"),
        (eagerstep.NonRetriableError("stop"), 0, 400, "true"),
    ],
)
def test_function_errors(exc: Exception, attempt: int, status: int, no_retry: str) -> None:
    client = make()

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        raise exc

    response, body = call(CommHandler(client, [f], framework="test"), "shop-f", attempt=attempt)
    assert response.status == status
    assert response.header("X-Inngest-No-Retry") == no_retry
    assert body["name"] == type(exc).__name__
    assert body["message"] == str(exc)


def test_function_retry_after() -> None:
    client = make()

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        raise eagerstep.RetryAfterError("busy", 12)

    response, _ = call(CommHandler(client, [f], framework="test"), "shop-f")
    assert response.status == 500
    assert response.header("Retry-After") == "12"


def test_non_serialisable_outputs() -> None:
    client = make()

    @client.function(id="step", trigger=eagerstep.Event("e"))
    def bad_step(ctx: eagerstep.Context) -> Any:
        return ctx.step.run("obj", object)

    @client.function(id="result", trigger=eagerstep.Event("e"))
    def bad_result(ctx: eagerstep.Context) -> Any:
        return object()

    handler = CommHandler(client, [bad_step, bad_result], framework="test")
    response, ops = call(handler, "shop-step")
    assert ops[0]["op"] == "StepFailed"
    assert ops[0]["error"]["name"] == "OutputSerializationError"
    response, body = call(handler, "shop-result")
    assert response.status == 400
    assert body["name"] == "OutputSerializationError"


# ---------------------------------------------------------------------------------------------
# Sleep, wait_for_event, invoke, send_event (§3.3a)


def test_sleep_op_shapes_and_replay() -> None:
    client = make()
    when = datetime(2030, 1, 1, tzinfo=timezone.utc)

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        ctx.step.sleep("nap", timedelta(minutes=90))
        ctx.step.sleep("short", "2s")
        ctx.step.sleep_until("until", when)
        return "awake"

    handler = CommHandler(client, [f], framework="test")
    _, ops = call(handler, "shop-f")
    assert ops == [
        {
            "op": "Sleep",
            "id": h("nap"),
            "name": "nap",
            "displayName": "nap",
            "opts": {"duration": "1h30m"},
            "data": None,
            "userland": {"id": "nap"},
        }
    ]
    _, ops = call(handler, "shop-f", steps={h("nap"): None})
    assert ops[0]["opts"] == {"duration": "2s"}
    _, ops = call(handler, "shop-f", steps={h("nap"): None, h("short"): None})
    assert ops[0]["opts"] == {"duration": "2030-01-01T00:00:00.000Z"}
    response, body = call(handler, "shop-f", steps={h("nap"): None, h("short"): None, h("until"): None})
    assert response.status == 200 and body == "awake"


def test_wait_for_event_op_and_memos() -> None:
    client = make()
    got: list[Any] = []

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        got.append(
            ctx.step.wait_for_event(
                "paid", event="shop/paid", timeout="1h", if_="async.data.id == event.data.id"
            )
        )
        got.append(ctx.step.wait_for_event("shipped", event="shop/shipped", timeout=timedelta(days=2)))
        return None

    handler = CommHandler(client, [f], framework="test")
    _, ops = call(handler, "shop-f")
    assert ops == [
        {
            "op": "WaitForEvent",
            "id": h("paid"),
            "name": "paid",
            "displayName": "paid",
            "opts": {"event": "shop/paid", "timeout": "1h", "if": "async.data.id == event.data.id"},
            "data": None,
            "userland": {"id": "paid"},
        }
    ]
    paid = wire_event("shop/paid", {"id": 1})
    _, ops = call(handler, "shop-f", steps={h("paid"): paid})
    assert ops[0]["opts"] == {"event": "shop/shipped", "timeout": "48h"}
    got.clear()
    response, _ = call(handler, "shop-f", steps={h("paid"): paid, h("shipped"): None})
    assert response.status == 200
    assert isinstance(got[0], protocol.WireEvent) and got[0].data == {"id": 1}
    assert got[1] is None


def test_invoke_op_and_memos() -> None:
    client = make()

    @client.function(id="child", trigger=eagerstep.Event("child"))
    def child(ctx: eagerstep.Context) -> Any:
        return 1

    @client.function(id="parent", trigger=eagerstep.Event("e"))
    def parent(ctx: eagerstep.Context) -> Any:
        a = ctx.step.invoke("call-child", function=child, data={"x": 1}, timeout="10m")
        try:
            ctx.step.invoke("call-other", function="other-app-fn")
        except eagerstep.StepError as exc:
            return {"a": a, "error": exc.name}
        return None

    handler = CommHandler(client, [child, parent], framework="test")
    _, ops = call(handler, "shop-parent")
    assert ops[0]["op"] == "InvokeFunction"
    assert ops[0]["opts"] == {"function_id": "shop-child", "payload": {"data": {"x": 1}}, "timeout": "10m"}
    _, ops = call(handler, "shop-parent", steps={h("call-child"): {"data": 5}})
    assert ops[0]["opts"] == {"function_id": "other-app-fn", "payload": {"data": {}}}
    timeout_error = {"name": "InngestInvokeTimeoutError", "message": "Timed out"}
    _, body = call(
        handler,
        "shop-parent",
        steps={h("call-child"): {"data": 5}, h("call-other"): {"error": timeout_error}},
    )
    assert body == {"a": 5, "error": "InngestInvokeTimeoutError"}


def test_send_event_step(orchestrator: RecordingOrchestrator) -> None:
    client = make(event_api_base_url=orchestrator.url)

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        return ctx.step.send_event("notify", [{"name": "shop/notified", "data": {"n": 1}}])

    handler = CommHandler(client, [f], framework="test")
    _, ops = call(handler, "shop-f")
    assert ops[0]["op"] == "StepRun" and ops[0]["id"] == h("notify")
    ids = ops[0]["data"]["ids"]
    assert len(ids) == 1 and orchestrator.events[0]["name"] == "shop/notified"
    _, body = call(handler, "shop-f", steps={h("notify"): {"data": {"ids": ids}}})
    assert body == ids
    assert len(orchestrator.events) == 1


# ---------------------------------------------------------------------------------------------
# Planning: parallel groups, targeted steps, disable_immediate_execution (§3.4)


def _parallel_fn(client: eagerstep.Client, ran: list[str]) -> eagerstep.Function[Any]:
    @client.function(id="p", trigger=eagerstep.Event("e"))
    def p(ctx: eagerstep.Context) -> Any:
        a, b, c = ctx.step.parallel(
            [
                lambda: ctx.step.run("a", lambda: ran.append("a") or "A"),
                lambda: ctx.step.run("b", lambda: ran.append("b") or "B"),
                lambda: ctx.step.sleep("c", "1s"),
            ]
        )
        return [a, b, c]

    return p


def test_parallel_group_plans_every_new_step() -> None:
    client = make()
    ran: list[str] = []
    handler = CommHandler(client, [_parallel_fn(client, ran)], framework="test")
    _, ops = call(handler, "shop-p")
    assert [(o["op"], o["id"]) for o in ops] == [
        ("StepPlanned", h("a")),
        ("StepPlanned", h("b")),
        ("Sleep", h("c")),
    ]
    assert ops[0]["opts"] == {"type": "step.run"}
    assert ran == []


def test_targeted_step_runs_only_that_step() -> None:
    client = make()
    ran: list[str] = []
    handler = CommHandler(client, [_parallel_fn(client, ran)], framework="test")
    _, ops = call(handler, "shop-p", step_id=h("b"), disable_immediate_execution=True)
    assert ran == ["b"]
    assert ops == [
        {
            "op": "StepRun",
            "id": h("b"),
            "name": "b",
            "displayName": "b",
            "data": "B",
            "userland": {"id": "b"},
            "timing": ops[0]["timing"],
        }
    ]
    _response, body = call(
        handler, "shop-p", steps={h("a"): {"data": "A"}, h("b"): {"data": "B"}, h("c"): None}
    )
    assert body == ["A", "B", None]


def test_targeted_step_not_found_is_500() -> None:
    client = make()

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        return ctx.step.run("a", lambda: 1)

    response, body = call(CommHandler(client, [f], framework="test"), "shop-f", step_id=h("zzz"))
    assert response.status == 500
    assert body["code"] == "step_not_found"


def test_disable_immediate_execution_plans_instead_of_running() -> None:
    client = make()

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        return ctx.step.run("a", lambda: 1)

    _, ops = call(CommHandler(client, [f], framework="test"), "shop-f", disable_immediate_execution=True)
    assert ops == [
        {
            "op": "StepPlanned",
            "id": h("a"),
            "name": "a",
            "displayName": "a",
            "opts": {"type": "step.run"},
            "data": None,
            "userland": {"id": "a"},
        }
    ]


def test_nested_parallel_is_an_error() -> None:
    client = make()

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        return ctx.step.parallel([lambda: ctx.step.parallel([])])

    response, body = call(CommHandler(client, [f], framework="test"), "shop-f")
    assert response.status == 400 and "nested" in body["message"]


# ---------------------------------------------------------------------------------------------
# Logger, use_api, thread pool


def test_logger_is_quiet_while_replaying(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.user")
    client = make(logger=log)

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        ctx.logger.info("before a")
        ctx.step.run("a", lambda: 1)
        ctx.logger.info("before b")
        ctx.step.run("b", lambda: 2)
        ctx.logger.info("end")
        return None

    handler = CommHandler(client, [f], framework="test")
    with caplog.at_level(logging.INFO, logger="test.user"):
        call(handler, "shop-f")
        call(handler, "shop-f", steps={h("a"): {"data": 1}})
        call(handler, "shop-f", steps={h("a"): {"data": 1}, h("b"): {"data": 2}})
    lines = [r.getMessage() for r in caplog.records if r.name == "test.user"]
    assert lines == ["before a", "before b", "end"]


def test_use_api_loads_state_before_replay(orchestrator: RecordingOrchestrator) -> None:
    client = make(api_base_url=orchestrator.url)
    seen: dict[str, Any] = {}

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        seen["events"] = [e.name for e in ctx.events]
        return ctx.step.run("a", lambda: "must not run")

    request = call_request("shop-f", use_api=True, run_id="01RUNUSEAPI0000000000000000")
    orchestrator.seed_run(
        "01RUNUSEAPI0000000000000000",
        events=[wire_event("e1"), wire_event("e2")],
        steps={h("a"): {"data": "stored"}},
    )
    response = CommHandler(client, [f], framework="test").handle(request)
    assert response.status == 200 and json.loads(response.body) == "stored"
    assert seen["events"] == ["e1", "e2"]
    paths = [c.path for c in orchestrator.calls_to("/v0/runs")]
    assert sorted(paths) == [
        "/v0/runs/01RUNUSEAPI0000000000000000/actions",
        "/v0/runs/01RUNUSEAPI0000000000000000/batch",
    ]


def test_use_api_failure_is_500(orchestrator: RecordingOrchestrator) -> None:
    client = make(api_base_url=orchestrator.url)

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        return ctx.step.run("a", lambda: "ran")

    response = CommHandler(client, [f], framework="test").handle(call_request("shop-f", use_api=True))
    assert response.status == 500
    assert json.loads(response.body)["code"] == "use_api_failed"


async def test_use_api_async(orchestrator: RecordingOrchestrator) -> None:
    client = make(api_base_url=orchestrator.url)

    @client.function(id="f", trigger=eagerstep.Event("e"))
    async def f(ctx: eagerstep.AsyncContext) -> Any:
        return await ctx.step.run("a", lambda: "must not run")

    orchestrator.seed_run(
        "01RUNUSEAPIASYNC00000000000", events=[wire_event("e1")], steps={h("a"): {"data": "kept"}}
    )
    response = await CommHandler(client, [f], framework="test").handle_async(
        call_request("shop-f", use_api=True, run_id="01RUNUSEAPIASYNC00000000000")
    )
    assert json.loads(response.body) == "kept"


async def test_def_function_runs_in_the_pool_under_handle_async() -> None:
    client = make()
    where: list[str] = []

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        where.append(threading.current_thread().name)
        return 1

    @client.function(id="g", trigger=eagerstep.Event("e"))
    async def g(ctx: eagerstep.AsyncContext) -> Any:
        where.append(threading.current_thread().name)
        return 2

    handler = CommHandler(client, [f, g], framework="test", max_threads=2)
    response, body = await call_async(handler, "shop-f")
    assert response.status == 200 and body == 1
    response, body = await call_async(handler, "shop-g")
    assert body == 2
    assert where[0].startswith("eagerstep-fn")
    assert where[1] == threading.current_thread().name
    handler.close()


def test_async_function_under_sync_handle() -> None:
    client = make()

    @client.function(id="g", trigger=eagerstep.Event("e"))
    async def g(ctx: eagerstep.AsyncContext) -> Any:
        return await ctx.step.run("a", lambda: 3)

    handler = CommHandler(client, [g], framework="test")
    _, ops = call(handler, "shop-g")
    assert ops[0]["data"] == 3
    _, body = call(handler, "shop-g", steps={h("a"): {"data": 3}})
    assert body == 3


async def test_async_flavour_op_shapes(orchestrator: RecordingOrchestrator) -> None:
    client = make(event_api_base_url=orchestrator.url)

    @client.function(id="g", trigger=eagerstep.Event("e"))
    async def g(ctx: eagerstep.AsyncContext) -> Any:
        ids = await ctx.step.send_event("notify", {"name": "n"})
        await ctx.step.sleep_until("until", "2030-01-01T00:00:00Z")
        pair = await ctx.step.parallel([lambda: ctx.step.run("a", lambda: 1), lambda: "plain"])
        got = await ctx.step.wait_for_event("w", event="x", timeout=timedelta(seconds=5))
        res = await ctx.step.invoke("i", function="shop-g", data={"n": 1})
        return {"ids": ids, "pair": list(pair), "got": got, "res": res}

    handler = CommHandler(client, [g], framework="test")
    _, ops = await call_async(handler, "shop-g")
    assert ops[0]["op"] == "StepRun" and len(ops[0]["data"]["ids"]) == 1
    memos: dict[str, Any] = {h("notify"): {"data": ops[0]["data"]}}
    _, ops = await call_async(handler, "shop-g", steps=memos)
    assert ops[0]["opts"] == {"duration": "2030-01-01T00:00:00.000Z"}
    memos[h("until")] = None
    _, ops = await call_async(handler, "shop-g", steps=memos)
    assert [o["op"] for o in ops] == ["StepPlanned"]
    memos[h("a")] = {"data": 1}
    _, ops = await call_async(handler, "shop-g", steps=memos)
    assert ops[0]["op"] == "WaitForEvent" and ops[0]["opts"] == {"event": "x", "timeout": "5s"}
    memos[h("w")] = None
    _, ops = await call_async(handler, "shop-g", steps=memos)
    assert ops[0]["opts"] == {"function_id": "shop-g", "payload": {"data": {"n": 1}}}
    memos[h("i")] = {"data": "child result"}
    response, body = await call_async(handler, "shop-g", steps=memos)
    assert response.status == 200
    assert body == {
        "ids": memos[h("notify")]["data"]["ids"],
        "pair": [1, "plain"],
        "got": None,
        "res": "child result",
    }


def test_invalid_step_arguments_are_usage_errors() -> None:
    client = make()

    @client.function(id="f", trigger=eagerstep.Event("e"))
    def f(ctx: eagerstep.Context) -> Any:
        which = ctx.event.data["which"]
        if which == "id":
            ctx.step.run("", lambda: 1)
        if which == "duration":
            ctx.step.sleep("s", "soon")
        if which == "date":
            ctx.step.sleep_until("s", "tomorrow")
        return None

    handler = CommHandler(client, [f], framework="test")
    for which in ("id", "duration", "date"):
        response, body = call(handler, "shop-f", event=wire_event("e", {"which": which}))
        assert response.status == 400, which
        assert body["name"] == "StepUsageError"


def test_annotation_cache_is_bounded_by_code_objects() -> None:
    from eagerstep.core import execution

    before = len(execution._return_types)
    for i in range(50):
        execution._return_model(lambda i=i: i)
    assert len(execution._return_types) <= before + 1


RUN = "01RUNLOGS000000000000000000"


def test_errors_are_logged_on_the_apps_side_once_per_attempt(caplog: pytest.LogCaptureFixture) -> None:
    """A step or function that raises is logged through the ``eagerstep`` logger, as Django and
    Flask log a view's error: one line per failed attempt, the traceback with the first one only."""
    client = make()

    def explode() -> None:
        raise ValueError("card declined")

    @client.function(id="f", trigger=eagerstep.Event("e"), retries=1)
    def f(ctx: eagerstep.Context) -> Any:
        ctx.step.run("charge", explode)

    @client.function(id="g", trigger=eagerstep.Event("e"), retries=1)
    def g(ctx: eagerstep.Context) -> Any:
        raise KeyError("order")

    handler = CommHandler(client, [f, g], framework="test")
    with caplog.at_level("WARNING", logger="eagerstep"):
        for fn_id in ("shop-f", "shop-g"):
            for attempt in (0, 1):
                call(handler, fn_id, attempt=attempt, max_attempts=2, run_id=RUN)
    records = [r for r in caplog.records if "raised" in r.getMessage()]
    lines = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in records]
    assert lines == [
        (
            "WARNING",
            f"step 'charge' of shop-f (run {RUN}) raised ValueError: card declined (attempt 1 of 2:"
            " the orchestrator retries)",
            True,
        ),
        (
            "ERROR",
            f"step 'charge' of shop-f (run {RUN}) raised ValueError: card declined (attempt 2 of 2,"
            " the last: the run fails)",
            False,
        ),
        (
            "WARNING",
            f"the function of shop-g (run {RUN}) raised KeyError: 'order' (attempt 1 of 2: the"
            " orchestrator retries)",
            True,
        ),
        (
            "ERROR",
            f"the function of shop-g (run {RUN}) raised KeyError: 'order' (attempt 2 of 2, the last:"
            " the run fails)",
            False,
        ),
    ]
    traceback_text = logging.Formatter().formatException(records[0].exc_info)  # type: ignore[arg-type]
    assert "explode" in traceback_text and "card declined" in traceback_text
