"""A small shop served by FastAPI with eagerstep, against a real engine: the functions whose runs
the dashboard tests look at (checkpointed and orchestrated steps, a retried step, a sleep, a wait,
a failure in the user's code, a parallel group run in the worker)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import eagerstep
from eagerstep.engine import EngineServer
from tests.engine.helpers import EngineClient, asgi_app_server


class Counter:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()

    def bump(self, key: str) -> int:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            return self.counts[key]


def parse_rows(text: str) -> list[int]:
    """User code that raises (the failed run's stack shows this frame first)."""
    return [int(cell) for cell in text.split(",")]


def build(client: eagerstep.Client, counter: Counter) -> list[eagerstep.Function[Any]]:
    def work(ms: float, value: Any) -> Any:
        time.sleep(ms / 1000)  # a visible bar on the waterfall
        return value

    def order_steps(ctx: eagerstep.Context) -> dict[str, Any]:
        order = ctx.step.run("load-order", lambda: work(4, {"id": ctx.event.data.get("id"), "total": 30}))
        ctx.step.run("reserve-stock", lambda: work(2, True))
        charge = ctx.step.run("charge-card", lambda: work(6, f"charged {order['total']}"))
        ctx.step.run("send-receipt", lambda: work(1, "sent"))
        return {"order": order, "charge": charge}

    @client.function(id="checkout", trigger=eagerstep.Event("shop/order.created"), retries=2)
    def checkout(ctx: eagerstep.Context) -> dict[str, Any]:
        return order_steps(ctx)

    @client.function(
        id="checkout-standard",
        trigger=eagerstep.Event("shop/order.standard"),
        retries=2,
        checkpointing=False,
    )
    def checkout_standard(ctx: eagerstep.Context) -> dict[str, Any]:
        return order_steps(ctx)

    @client.function(id="flaky-payment", trigger=eagerstep.Event("shop/payment.flaky"), retries=3)
    def flaky_payment(ctx: eagerstep.Context) -> str:
        ctx.step.run("load-invoice", lambda: work(2, {"invoice": 7}))

        def charge() -> str:
            if counter.bump("flaky-charge") < 3:
                raise ConnectionError("the payment gateway timed out")
            return "paid"

        return str(ctx.step.run("charge-card", charge))

    @client.function(id="reminder", trigger=eagerstep.Event("shop/cart.abandoned"))
    def reminder(ctx: eagerstep.Context) -> str:
        ctx.step.run("remember-cart", lambda: work(2, ctx.event.data))
        ctx.step.sleep("wait-a-day", "1d")
        ctx.step.run("send-reminder", lambda: "sent")
        return "reminded"

    @client.function(id="approval", trigger=eagerstep.Event("shop/refund.requested"))
    def approval(ctx: eagerstep.Context) -> str:
        ctx.step.run("open-ticket", lambda: work(1, "ticket-1"))
        granted = ctx.step.wait_for_event(
            "wait-for-approval",
            event="shop/refund.approved",
            timeout="2h",
            if_="async.data.id == event.data.id",
        )
        return "refunded" if granted else "expired"

    @client.function(id="import-report", trigger=eagerstep.Event("shop/report.uploaded"), retries=1)
    def import_report(ctx: eagerstep.Context) -> int:
        rows = ctx.step.run("parse-rows", lambda: parse_rows(ctx.event.data["csv"]))
        return sum(rows)

    @client.function(id="apply-coupon", trigger=eagerstep.Event("shop/coupon.applied"), retries=1)
    def apply_coupon(ctx: eagerstep.Context) -> int:
        code = ctx.event.data["code"]
        if not code.isalnum():
            raise ValueError(f"invalid coupon code {code!r}")  # outside any step
        return int(ctx.step.run("discount", lambda: 10))

    @client.function(id="quote-shipping", trigger=eagerstep.Event("shop/shipping.quote"))
    def quote_shipping(ctx: eagerstep.Context) -> dict[str, Any]:
        # A parallel group that runs in the worker: three carriers asked at once.
        carriers = {"post": (30, 7.5), "courier": (45, 12.0), "freight": (20, 9.0)}
        quotes = ctx.step.parallel(
            [
                lambda name=name, ms=ms, price=price: ctx.step.run(f"quote-{name}", lambda: work(ms, price))
                for name, (ms, price) in carriers.items()
            ]
        )
        best = ctx.step.run("pick-cheapest", lambda: min(zip(quotes, carriers, strict=True))[1])
        return {"carrier": best, "price": min(quotes)}

    return [
        checkout,
        checkout_standard,
        flaky_payment,
        reminder,
        approval,
        import_report,
        apply_coupon,
        quote_shipping,
    ]


@dataclass
class Shop:
    engine: EngineServer
    api: EngineClient
    app_url: str
    counter: Counter


@contextmanager
def running_shop(db: Path) -> Iterator[Shop]:
    """The engine (real clock) and the shop app on loopback, synced."""
    from fastapi import FastAPI

    from eagerstep.integrations.fastapi import router

    with EngineServer(db, retry_interval=0.05) as engine:
        client = eagerstep.Client(app_id="shop", dev=engine.url)
        counter = Counter()
        app = FastAPI()
        app.include_router(router(client, build(client, counter)), prefix="/api/inngest")
        with asgi_app_server(app) as origin:
            api = EngineClient(engine.url)
            reply = api.sync(origin + "/api/inngest")
            assert reply["app_status"] == 200, reply
            try:
                yield Shop(engine, api, origin + "/api/inngest", counter)
            finally:
                api.close()
