"""The same durable-endpoint views written for each framework, over one shared piece of work."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

from eagerstep.core.client import Client
from eagerstep.core.errors import NonRetriableError

SIGNING_KEY = "signkey-test-" + "5e" * 32


class Work:
    """What the steps do: counts every real run of a step, and fails the steps it is told to, once."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.fail_once: set[str] = set()
        self.fail_always: set[str] = set()
        self.lock = threading.Lock()

    def step(self, name: str, value: Any) -> Any:
        with self.lock:
            self.calls[name] += 1
            if name in self.fail_once:
                self.fail_once.discard(name)
                raise RuntimeError(f"{name} failed (once)")
            if name in self.fail_always:
                raise RuntimeError(f"{name} failed (always)")
        return value

    def fatal(self) -> Any:
        with self.lock:
            self.calls["fatal"] += 1
        raise NonRetriableError("the card was declined")

    def order(self, n: int, query: str, body: bytes, total: int) -> dict[str, Any]:
        payload = json.loads(body or b"{}")
        return {"order": n, "total": total, "q": query, "note": payload.get("note")}


def make_client(api_base_url: str) -> Client:
    return Client(app_id="shop", dev=True, signing_key=SIGNING_KEY, api_base_url=api_base_url)


def flask_app(client: Client, work: Work) -> Any:
    from flask import Blueprint, Flask, jsonify, request

    from eagerstep.integrations.flask.endpoints import durable_endpoint

    app = Flask(__name__)
    shop = Blueprint("shop", __name__, url_prefix="/shop")

    @shop.route("/orders/<int:n>", methods=["POST"])
    @durable_endpoint(client, id="order", retries=2)
    def order(n: int, ctx: Any) -> Any:
        price = ctx.step.run("price", work.step, "price", n * 10)
        charged = ctx.step.run("charge", work.step, "charge", price + 1)
        ctx.step.run("mail", work.step, "mail", True)
        body = work.order(n, request.args.get("q", ""), request.get_data(), charged)
        return jsonify(body), 201, {"X-Order": str(n)}

    @shop.route("/fatal", methods=["POST"])
    @durable_endpoint(client, id="fatal")
    def fatal(ctx: Any) -> Any:
        ctx.step.run("price", work.step, "price", 1)
        ctx.step.run("fatal", work.fatal)
        return jsonify({}), 200

    app.register_blueprint(shop)
    return app


def fastapi_app(client: Client, work: Work) -> Any:
    from tests.endpoints.fastapi_views import build

    return build(client, work)


def flask_modes_app(client: Client, work: Work) -> Any:
    """Endpoints that hand over to the orchestrator on purpose: a sleep, and the answer modes."""
    from datetime import timedelta

    from flask import Flask, jsonify

    from eagerstep.core.checkpoint import Checkpointing
    from eagerstep.integrations.flask.endpoints import durable_endpoint

    app = Flask(__name__)

    def nap(ctx: Any) -> Any:
        first = ctx.step.run("before", work.step, "before", 1)
        ctx.step.sleep("nap", timedelta(hours=1))
        second = ctx.step.run("after", work.step, "after", 2)
        return jsonify({"sum": first + second})

    app.add_url_rule("/nap", "nap", durable_endpoint(client, id="nap")(nap), methods=["GET"])
    app.add_url_rule(
        "/nap-token",
        "nap_token",
        durable_endpoint(client, id="nap-token", async_response="token")(nap),
        methods=["GET"],
    )

    def broken(ctx: Any) -> Any:
        ctx.step.run("ok", work.step, "ok", 1)
        ctx.step.run("broken", work.step, "broken", 2)
        return jsonify({})

    work.fail_always.add("broken")
    app.add_url_rule("/broken", "broken", durable_endpoint(client, id="broken", retries=1)(broken))

    def fan_out(ctx: Any) -> Any:
        first = ctx.step.run("first", work.step, "first", 1)
        pair = ctx.step.parallel(
            [
                lambda: ctx.step.run("left", work.step, "left", 2),
                lambda: ctx.step.run("right", work.step, "right", 3),
            ]
        )
        last = ctx.step.run("last", work.step, "last", 4)
        return jsonify({"total": first + sum(pair) + last})

    app.add_url_rule("/fan-out", "fan_out", durable_endpoint(client, id="fan-out")(fan_out))

    def long(ctx: Any) -> Any:
        first = ctx.step.run("first", work.step, "first", 1)
        second = ctx.step.run("second", work.step, "second", 2)
        return jsonify({"total": first + second})

    tiny = Checkpointing(max_runtime=timedelta(microseconds=1))
    app.add_url_rule("/long", "long", durable_endpoint(client, id="long", checkpointing=tiny)(long))
    batched = Checkpointing(buffered_steps=10)
    app.add_url_rule(
        "/batched", "batched", durable_endpoint(client, id="batched", checkpointing=batched)(long)
    )
    return app
