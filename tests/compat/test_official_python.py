"""The engine runs functions served by the official ``inngest`` PyPI SDK (0.5.19) over Flask.

One engine (manual clock) and one app per module; each test uses its own event names.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("inngest")
flask = pytest.importorskip("flask")
import inngest  # noqa: E402
import inngest.flask  # noqa: E402

from eagerstep.engine import EngineServer, ManualClock  # noqa: E402
from tests.engine.helpers import EngineClient, wait_for, wsgi_app_server  # noqa: E402

pytestmark = [pytest.mark.compat, pytest.mark.engine, pytest.mark.timeout(60)]

COUNTS: dict[str, int] = {}
RECORDED: dict[str, Any] = {}
_lock = threading.Lock()


def bump(key: str) -> int:
    with _lock:
        COUNTS[key] = COUNTS.get(key, 0) + 1
        return COUNTS[key]


def build_functions(client: Any) -> list[Any]:
    @client.create_function(fn_id="multi", trigger=inngest.TriggerEvent(event="py/multi"))
    def multi(ctx: Any) -> dict[str, Any]:
        a = ctx.step.run("a", lambda: bump("multi-a") and 1)
        b = ctx.step.run("b", lambda: a + 1)
        c = ctx.step.run("c", lambda: {"b": b, "n": ctx.event.data["n"]})
        return {"a": a, "c": c}

    @client.create_function(fn_id="retry", trigger=inngest.TriggerEvent(event="py/retry"), retries=3)
    def retry(ctx: Any) -> str:
        def flaky() -> str:
            if bump("retry") < 3:
                raise ValueError("not yet")
            return "ok"

        return str(ctx.step.run("flaky", flaky))

    @client.create_function(fn_id="sleeper", trigger=inngest.TriggerEvent(event="py/sleep"))
    def sleeper(ctx: Any) -> str:
        ctx.step.run("before", lambda: bump("sleep-before"))
        ctx.step.sleep("nap", datetime.timedelta(hours=1))
        ctx.step.run("after", lambda: bump("sleep-after"))
        return "rested"

    @client.create_function(fn_id="waiter", trigger=inngest.TriggerEvent(event="py/wait"))
    def waiter(ctx: Any) -> Any:
        got = ctx.step.wait_for_event(
            "approval",
            event="py/approved",
            if_exp="event.data.id == async.data.id",
            timeout=datetime.timedelta(hours=1),
        )
        return {"approved": None if got is None else got.data}

    @client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="py/child"))
    def child(ctx: Any) -> dict[str, Any]:
        return {"doubled": ctx.step.run("double", lambda: ctx.event.data["x"] * 2)}

    @client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="py/parent"))
    def parent(ctx: Any) -> Any:
        return ctx.step.invoke("call-child", function=child, data={"x": 21})

    @client.create_function(
        fn_id="cancellable",
        trigger=inngest.TriggerEvent(event="py/cancellable"),
        cancel=[inngest.Cancel(event="py/stop", if_exp="event.data.id == async.data.id")],
    )
    def cancellable(ctx: Any) -> str:
        ctx.step.sleep("long", datetime.timedelta(days=1))
        ctx.step.run("never", lambda: bump("cancel-never"))
        return "not cancelled"

    def on_failure(ctx: Any) -> None:
        RECORDED["failure"] = ctx.event.data

    @client.create_function(
        fn_id="doomed", trigger=inngest.TriggerEvent(event="py/doomed"), retries=0, on_failure=on_failure
    )
    def doomed(ctx: Any) -> None:
        raise inngest.NonRetriableError("broken for good")

    @client.create_function(fn_id="ticker", trigger=inngest.TriggerCron(cron="0 * * * *"))
    def ticker(ctx: Any) -> str:
        bump("cron")
        return str(ctx.event.name)

    @client.create_function(fn_id="fanout", trigger=inngest.TriggerEvent(event="py/parallel"))
    def fanout(ctx: Any) -> Any:
        calls = tuple((lambda i=i: ctx.step.run(f"p{i}", lambda: i * 10)) for i in range(3))
        return list(ctx.group.parallel(calls))

    @client.create_function(fn_id="ids", trigger=inngest.TriggerEvent(event="py/ids"))
    def ids(ctx: Any) -> Any:
        return list(ctx.group.parallel(id_branches(ctx.step)))

    return [multi, retry, sleeper, waiter, child, parent, cancellable, doomed, ticker, fanout, ids]


def id_branches(step: Any) -> tuple[Any, ...]:
    """A group whose step ids test the numbering: the same id in two branches, and a branch of two
    steps in a row. Both SDKs' ``step.run(id, fn)`` take the same arguments."""

    def second() -> str:
        first = step.run("b1", lambda: "b1")
        return str(first) + str(step.run("b2", lambda: "b2"))

    return (lambda: step.run("dup", lambda: "x"), second, lambda: step.run("dup", lambda: "y"))


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, clock: ManualClock) -> Iterator[EngineClient]:
    db = Path(tmp_path_factory.mktemp("engine")) / "engine.db"
    server = EngineServer(db, clock=clock, retry_interval=0.0)
    base = server.start()
    client = inngest.Inngest(
        app_id="py-compat",
        is_production=False,
        api_base_url=base,
        event_api_base_url=base,
        logger=logging.getLogger("py-compat"),
    )
    app = flask.Flask("py-compat")
    inngest.flask.serve(app, client, build_functions(client))
    with wsgi_app_server(app) as origin:
        api = EngineClient(base)
        api.sync(origin + "/api/inngest")
        yield api
        api.close()
    server.stop()


def test_multi_step(engine: EngineClient) -> None:
    run = engine.wait_run(engine.send("py/multi", {"n": 7}))
    assert run["status"] == "Completed", run
    assert run["output"] == {"a": 1, "c": {"b": 2, "n": 7}}
    assert [s["name"] for s in run["steps"]] == ["a", "b", "c"]
    assert COUNTS["multi-a"] == 1


def test_step_retry(engine: EngineClient) -> None:
    run = engine.wait_run(engine.send("py/retry"))
    assert run["status"] == "Completed", run
    assert run["output"] == "ok"
    assert COUNTS["retry"] == 3


def test_sleep_on_manual_clock(engine: EngineClient, clock: ManualClock) -> None:
    event_id = engine.send("py/sleep")
    engine.wait_step(event_id, lambda s: s["status"] == "Running")
    assert engine.runs_of(event_id)[0]["status"] == "Running"
    # This SDK sends the wake-up time as a wall-clock date; catch the manual clock up first.
    clock.advance(max(0.0, time.time() - clock.now()) + 3601)
    run = engine.wait_run(event_id)
    assert run["status"] == "Completed", run
    assert [s["op"] for s in run["steps"]] == ["StepRun", "Sleep", "StepRun"]
    assert COUNTS["sleep-before"] == 1 and COUNTS["sleep-after"] == 1


def test_wait_for_event_match(engine: EngineClient) -> None:
    event_id = engine.send("py/wait", {"id": "order-1"})
    engine.wait_step(event_id, lambda s: s["status"] == "Running")
    engine.send("py/approved", {"id": "order-2"})  # does not match the expression
    engine.send("py/approved", {"id": "order-1", "by": "ana"})
    run = engine.wait_run(event_id)
    assert run["status"] == "Completed", run
    assert run["output"] == {"approved": {"id": "order-1", "by": "ana"}}


def test_wait_for_event_timeout(engine: EngineClient) -> None:
    event_id = engine.send("py/wait", {"id": "order-3"})
    engine.wait_step(event_id, lambda s: s["status"] == "Running")
    run_id = engine.runs_of(event_id)[0]["run_id"]
    assert engine.fire_timers(run_id=run_id) == 1
    run = engine.wait_run(event_id)
    assert run["status"] == "Completed", run
    assert run["output"] == {"approved": None}


def test_invoke(engine: EngineClient) -> None:
    run = engine.wait_run(engine.send("py/parent"))
    assert run["status"] == "Completed", run
    assert run["output"] == {"doubled": 42}


def test_cancel_on_event(engine: EngineClient) -> None:
    event_id = engine.send("py/cancellable", {"id": 5})
    engine.wait_step(event_id, lambda s: s["status"] == "Running")
    engine.send("py/stop", {"id": 6})
    engine.send("py/stop", {"id": 5})
    run = engine.wait_run(event_id)
    assert run["status"] == "Cancelled", run
    assert "cancel-never" not in COUNTS


def test_cancel_via_api(engine: EngineClient) -> None:
    event_id = engine.send("py/cancellable", {"id": 8})
    engine.wait_step(event_id, lambda s: s["status"] == "Running")
    run_id = engine.runs_of(event_id)[0]["run_id"]
    response = engine.http.post(f"/v1/runs/{run_id}/cancel")
    assert response.json()["data"]["status"] == "Cancelled"
    assert engine.wait_run(event_id)["status"] == "Cancelled"


def test_on_failure(engine: EngineClient) -> None:
    run = engine.wait_run(engine.send("py/doomed", {"k": 1}))
    assert run["status"] == "Failed"
    assert run["error"]["message"] == "broken for good"
    failure = wait_for(lambda: RECORDED.get("failure"))
    assert failure["function_id"] == "py-compat-doomed"
    assert failure["error"]["message"] == "broken for good"
    assert failure["event"]["data"] == {"k": 1}


def test_cron(engine: EngineClient, clock: ManualClock) -> None:
    before = COUNTS.get("cron", 0)
    clock.advance(3600)
    wait_for(lambda: COUNTS.get("cron", 0) > before)
    runs = engine.http.get("/v1/runs").json()["data"]
    cron_runs = [r for r in runs if r["function_id"] == "py-compat-ticker"]
    wait_for(lambda: engine.run(cron_runs[0]["run_id"])["status"] == "Completed")
    assert engine.run(cron_runs[0]["run_id"])["output"] == "inngest/scheduled.timer"


def test_parallel_steps(engine: EngineClient) -> None:
    run = engine.wait_run(engine.send("py/parallel"))
    assert run["status"] == "Completed", run
    assert run["output"] == [0, 10, 20]


@pytest.mark.parametrize("mode", ["eager", "orchestrated", "standard"])
def test_parallel_step_ids_match_the_official_sdk(engine: EngineClient, mode: str) -> None:
    """The same group served by the official SDK and by eagerstep (eager in the worker, planned with
    checkpointing, and in standard mode) records the same step ids (and the same outputs)."""
    import eagerstep
    from eagerstep.integrations.flask import blueprint

    official = engine.wait_run(engine.send("py/ids"))
    assert official["status"] == "Completed" and official["output"] == ["x", "b1b2", "y"]

    client = eagerstep.Client(app_id=f"es-ids-{mode}", dev=engine.base_url, checkpointing=mode != "standard")

    @client.function(
        id="ids", trigger=eagerstep.Event(f"es/ids-{mode}"), parallel=mode if mode != "standard" else "eager"
    )
    def ids(ctx: eagerstep.Context) -> Any:
        return list(ctx.step.parallel(id_branches(ctx.step)))

    app = flask.Flask(f"es-ids-{mode}")
    app.register_blueprint(blueprint(client, [ids]))
    with wsgi_app_server(app) as origin:
        engine.sync(origin + "/api/inngest")
        ours = engine.wait_run(engine.send(f"es/ids-{mode}"))
    assert ours["status"] == "Completed" and ours["output"] == official["output"]

    def recorded(run: dict[str, Any]) -> dict[str, Any]:
        actions = engine.http.get(f"/v0/runs/{run['run_id']}/actions").json()
        return {step_id: memo for step_id, memo in actions.items()}

    official_steps, our_steps = recorded(official), recorded(ours)
    assert our_steps == official_steps
    assert set(official_steps) == {
        inngest_hash("dup"),
        inngest_hash("dup:1"),
        inngest_hash("b1"),
        inngest_hash("b2"),
    }


def inngest_hash(key: str) -> str:
    import hashlib

    return hashlib.sha1(key.encode()).hexdigest()
