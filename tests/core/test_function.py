"""Function definitions and their sync payload."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import eagerstep
from eagerstep.core import protocol

SERVE = "http://127.0.0.1:8000/api/inngest"


@pytest.fixture
def client() -> eagerstep.Client:
    return eagerstep.Client(app_id="shop", dev=True)


def test_minimal_config(client: eagerstep.Client) -> None:
    @client.function(id="process-order", trigger=eagerstep.Event("shop/order.created"))
    def process(ctx: eagerstep.Context) -> None:
        return None

    wire = process.to_config(SERVE).to_wire()
    assert wire == {
        "id": "shop-process-order",
        "name": "process-order",
        "triggers": [{"event": "shop/order.created"}],
        "steps": {
            "step": {
                "id": "step",
                "name": "step",
                "runtime": {
                    "type": "http",
                    "url": f"{SERVE}?fnId=shop-process-order&stepId=step",
                },
            }
        },
    }
    assert process.fully_qualified_id == "shop-process-order"
    assert not process.is_async
    assert process.max_attempts() == protocol.DEFAULT_RETRIES + 1


def test_async_handler_detected(client: eagerstep.Client) -> None:
    @client.function(id="a", trigger=eagerstep.Event("e"))
    async def handler(ctx: eagerstep.AsyncContext) -> int:
        return 1

    assert handler.is_async


def test_every_option_in_protocol_shape(client: eagerstep.Client) -> None:
    def failed(ctx: eagerstep.Context) -> None:
        return None

    @client.function(
        id="all",
        name="All options",
        trigger=[
            eagerstep.Event("a/b", if_="event.data.x > 1"),
            eagerstep.Cron("TZ=UTC */5 * * * *", jitter="30s"),
        ],
        retries=3,
        concurrency=[{"limit": 2, "key": "event.data.user", "scope": "fn"}, {"limit": 10, "scope": "env"}],
        cancel_on=[
            eagerstep.Event("a/cancel", if_="event.data.id == async.data.id", timeout=timedelta(hours=1))
        ],
        on_failure=failed,
        rate_limit={"limit": 5, "period": timedelta(minutes=1), "key": "event.data.user"},
        throttle={"limit": 1, "period": "10s", "burst": 2},
        debounce={"period": timedelta(seconds=5), "timeout": "1m"},
        batch_events={"max_size": 10, "timeout": "5s", "key": "event.data.k", "if_": "true"},
        priority="event.data.priority",
        timeouts={"start": timedelta(seconds=30), "finish": "1h"},
        singleton={"key": "event.data.user", "mode": "cancel"},
        idempotency="event.data.order_id",
    )
    def everything(ctx: eagerstep.Context) -> None:
        return None

    wire = everything.to_config(SERVE).to_wire()
    assert wire["name"] == "All options"
    assert wire["triggers"] == [
        {"event": "a/b", "expression": "event.data.x > 1"},
        {"cron": "TZ=UTC */5 * * * *", "jitter": "30s"},
    ]
    assert wire["steps"]["step"]["retries"] == {"attempts": 3}
    assert wire["concurrency"] == [
        {"limit": 2, "key": "event.data.user", "scope": "fn"},
        {"limit": 10, "scope": "env"},
    ]
    assert wire["cancel"] == [{"event": "a/cancel", "if": "event.data.id == async.data.id", "timeout": "1h"}]
    assert wire["rateLimit"] == {"limit": 5, "period": "1m", "key": "event.data.user"}
    assert wire["throttle"] == {"limit": 1, "period": "10s", "burst": 2}
    assert wire["debounce"] == {"period": "5s", "timeout": "1m"}
    assert wire["batchEvents"] == {"maxSize": 10, "timeout": "5s", "key": "event.data.k", "if": "true"}
    assert wire["priority"] == {"run": "event.data.priority"}
    assert wire["timeouts"] == {"start": "30s", "finish": "1h"}
    assert wire["singleton"] == {"key": "event.data.user", "mode": "cancel"}
    assert wire["idempotency"] == "event.data.order_id"
    # The wire shape round-trips through the shared model.
    assert protocol.FunctionConfig.model_validate(wire).retry_count() == 3
    assert everything.max_attempts() == 4


def test_on_failure_is_a_separate_function(client: eagerstep.Client) -> None:
    def failed(ctx: eagerstep.Context) -> None:
        return None

    @client.function(id="pay", trigger=eagerstep.Event("a/b"), on_failure=failed)
    def pay(ctx: eagerstep.Context) -> None:
        return None

    functions = list(pay.all_functions())
    assert [f.fully_qualified_id for f in functions] == ["shop-pay", "shop-pay-failure"]
    failure = functions[1].to_config(SERVE).to_wire()
    assert failure["triggers"] == [
        {"event": "inngest/function.failed", "expression": "event.data.function_id == 'shop-pay'"}
    ]
    assert failure["steps"]["step"]["retries"] == {"attempts": 1}
    assert failure["steps"]["step"]["runtime"]["url"].endswith("fnId=shop-pay-failure&stepId=step")


def test_concurrency_int(client: eagerstep.Client) -> None:
    @client.function(id="c", trigger=eagerstep.Event("e"), concurrency=3)
    def fn(ctx: eagerstep.Context) -> None:
        return None

    assert fn.to_config(SERVE).to_wire()["concurrency"] == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retries": 21}, "retries=21"),
        ({"trigger": None}, "no trigger"),
        ({"trigger": "a/b"}, "trigger="),
        ({"concurrency": [{"limit": 1}] * 3}, "at most 2"),
        ({"throttle": {"period": "1s"}}, "invalid throttle"),
        ({"debounce": {"period": "soon"}}, "invalid duration"),
        ({"id": ""}, "non-empty"),
    ],
)
def test_invalid_options_are_clear(client: eagerstep.Client, kwargs: dict[str, Any], message: str) -> None:
    options: dict[str, Any] = {"id": "x", "trigger": eagerstep.Event("e"), **kwargs}
    with pytest.raises(eagerstep.ConfigurationError, match=message):
        client.function(**options)(lambda ctx: None)


def test_function_checkpointing_overrides_client() -> None:
    client = eagerstep.Client(app_id="a", dev=True, checkpointing=False)

    @client.function(
        id="on", trigger=eagerstep.Event("e"), checkpointing=eagerstep.Checkpointing(buffered_steps=2)
    )
    def on(ctx: eagerstep.Context) -> None:
        return None

    @client.function(id="inherit", trigger=eagerstep.Event("e"))
    def inherit(ctx: eagerstep.Context) -> None:
        return None

    assert on.checkpointing == eagerstep.Checkpointing(buffered_steps=2)
    assert inherit.checkpointing is None
    client_on = eagerstep.Client(app_id="b", dev=True)

    @client_on.function(id="off", trigger=eagerstep.Event("e"), checkpointing=False)
    def off(ctx: eagerstep.Context) -> None:
        return None

    assert off.checkpointing is None


def test_runtime_url_keeps_existing_query(client: eagerstep.Client) -> None:
    @client.function(id="q", trigger=eagerstep.Event("e"))
    def fn(ctx: eagerstep.Context) -> None:
        return None

    url = fn.to_config(SERVE + "?x=1").runtime_url()
    assert url == SERVE + "?x=1&fnId=shop-q&stepId=step"
