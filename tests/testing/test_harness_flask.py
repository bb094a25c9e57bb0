"""eagerstep.testing against a Flask app: run to completion, sleeps, waits, injected failures."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

pytest.importorskip("flask")

from flask import Flask

import eagerstep
from eagerstep.integrations.flask import blueprint
from eagerstep.testing import Harness, HarnessError, wsgi

pytestmark = [pytest.mark.flask, pytest.mark.timeout(60)]

client = eagerstep.Client(app_id="harness-flask")
charged: list[int] = []


def charge(order_id: int) -> str:
    charged.append(order_id)
    return f"charged {order_id}"


@client.function(id="order", trigger=eagerstep.Event("shop/order"), retries=3)
def order(ctx: eagerstep.Context) -> dict[str, Any]:
    order_id = int(ctx.event.data["id"])
    loaded = ctx.step.run("load", lambda: {"id": order_id})
    receipt = ctx.step.run("charge", charge, loaded["id"])
    ctx.step.sleep("cool-off", "1h")
    approval = ctx.step.wait_for_event(
        "approval", event="shop/approved", timeout="1d", if_="async.data.id == event.data.id"
    )
    return {"receipt": receipt, "approved": approval is not None}


app = Flask(__name__)
app.register_blueprint(blueprint(client, [order]))


@pytest.fixture
def h() -> Any:
    charged.clear()
    with Harness(wsgi(app), client) as harness:
        yield harness


def test_run_through_sleep_and_delivered_event(h: Harness) -> None:
    event_id = h.send("shop/order", {"id": 7})
    parked = h.wait(event_id, until="idle")
    assert parked.status == "Running"
    assert parked.waiting_for == ["shop/approved"]
    assert parked.step("load").output == {"id": 7}
    assert parked.step("cool-off").op == "Sleep" and parked.step("cool-off").via == "orchestrator"
    h.deliver("shop/approved", {"id": 7})
    done = h.wait(event_id)
    assert done.completed
    assert done.output == {"receipt": "charged 7", "approved": True}
    assert done.step_names == ["load", "charge", "cool-off", "approval"]
    assert done.step("charge").checkpointed and done.step("charge").attempts == 1
    assert charged == [7]


def test_wait_times_out_only_when_asked(h: Harness) -> None:
    event_id = h.send("shop/order", {"id": 8})
    with pytest.raises(HarnessError, match="shop/approved"):
        h.wait(event_id)
    done = h.wait(event_id, timeouts=True)
    assert done.output == {"receipt": "charged 8", "approved": False}


def test_a_step_failing_twice_is_retried(h: Harness) -> None:
    h.fail_step("charge", times=2)
    done = h.run("shop/order", {"id": 9}, timeouts=True)
    assert done.completed
    step = done.step("charge")
    assert step.attempts == 3
    assert [f["error"]["message"] for f in step.failures] == [
        "eagerstep.testing: failure 1 of 2 injected into step 'charge'",
        "eagerstep.testing: failure 2 of 2 injected into step 'charge'",
    ]
    assert charged == [9]


def test_a_step_failing_for_good_fails_the_run(h: Harness) -> None:
    h.fail_step("charge", times=10, error=ValueError("card declined"))
    done = h.run("shop/order", {"id": 10})
    assert done.failed
    assert "card declined" in str(done.error)
    assert done.step("charge").attempts == 4


standard_client = eagerstep.Client(app_id="harness-standard", checkpointing=False)


@standard_client.function(id="two-steps", trigger=eagerstep.Event("std/go"))
def two_steps(ctx: eagerstep.Context) -> int:
    a = ctx.step.run("a", lambda: 1)
    return int(ctx.step.run("b", lambda: a + 1))


def test_standard_mode_steps_are_orchestrated() -> None:
    standard_app = Flask("standard")
    standard_app.register_blueprint(blueprint(standard_client, [two_steps]))
    with Harness(wsgi(standard_app), standard_client) as h:
        assert h.functions == ["harness-standard-two-steps"]
        done = h.run("std/go")
    assert done.output == 2
    assert [(s.name, s.orchestrated, s.output) for s in done.steps] == [("a", True, 1), ("b", True, 2)]


def test_an_event_nothing_listens_to_fails_the_wait_with_a_reason(h: Harness) -> None:
    with pytest.raises(HarnessError, match=r"matched no function's trigger.*harness-flask-order"):
        h.run("shop/ordered")  # a typo of shop/order


def test_advance_moves_the_clock_by_hand(h: Harness) -> None:
    event_id = h.send("shop/order", {"id": 11})
    assert h.wait(event_id, until="idle").waiting_for == ["shop/approved"]
    h.advance(timedelta(hours=23))
    assert h.result(h.runs(event_id)[0].run_id).status == "Running"  # the wait has an hour left
    h.advance(timedelta(hours=1, seconds=1))
    done = h.result(h.runs(event_id)[0].run_id)
    assert done.completed and done.output == {"receipt": "charged 11", "approved": False}
