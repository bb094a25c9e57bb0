"""The engine runs functions served by eagerstep itself: Flask (sync handler) and FastAPI (async
handler) adapters, each in checkpointing and standard mode. The same scenarios as the official SDK."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import eagerstep
from eagerstep.engine import EngineServer, ManualClock
from tests.engine.helpers import EngineClient, asgi_app_server, wait_for, wsgi_app_server

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]

VARIANTS = [
    pytest.param(("flask", True), id="flask-checkpointing", marks=pytest.mark.flask),
    pytest.param(("flask", False), id="flask-standard", marks=pytest.mark.flask),
    pytest.param(("fastapi", True), id="fastapi-checkpointing", marks=pytest.mark.fastapi),
    pytest.param(("fastapi", False), id="fastapi-standard", marks=pytest.mark.fastapi),
]


class Recorder:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.values: dict[str, Any] = {}
        self.lock = threading.Lock()

    def bump(self, key: str) -> int:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            return self.counts[key]


class Scenario:
    def __init__(
        self, api: EngineClient, clock: ManualClock, rec: Recorder, prefix: str, checkpointing: bool
    ) -> None:
        self.api, self.clock, self.rec, self.prefix = api, clock, rec, prefix
        self.checkpointing = checkpointing

    def stats(self) -> dict[str, int]:
        data: dict[str, int] = self.api.http.get("/v1/dev/stats").json()["data"]
        return data

    def send(self, name: str, data: dict[str, Any] | None = None) -> str:
        return self.api.send(f"{self.prefix}/{name}", data)


def build(client: eagerstep.Client, rec: Recorder, prefix: str) -> list[eagerstep.Function[Any]]:
    app = client.app_id

    @client.function(id="multi", trigger=eagerstep.Event(f"{prefix}/multi"))
    def multi(ctx: eagerstep.Context) -> dict[str, Any]:
        a = ctx.step.run("a", lambda: rec.bump("multi-a"))
        b = ctx.step.run("b", lambda: a + 1)
        c = ctx.step.run("c", lambda: {"b": b, "n": ctx.event.data["n"]})
        return {"a": a, "c": c}

    @client.function(id="retry", trigger=eagerstep.Event(f"{prefix}/retry"), retries=3)
    def retry(ctx: eagerstep.Context) -> str:
        ctx.step.run("first", lambda: rec.bump("retry-first"))

        def flaky() -> str:
            if rec.bump("retry") < 3:
                raise ValueError("not yet")
            return "ok"

        return str(ctx.step.run("flaky", flaky))

    @client.function(id="sleeper", trigger=eagerstep.Event(f"{prefix}/sleep"))
    async def sleeper(ctx: eagerstep.AsyncContext) -> str:
        await ctx.step.run("before", lambda: rec.bump("sleep-before"))
        await ctx.step.sleep("nap", datetime.timedelta(hours=1))
        await ctx.step.run("after", lambda: rec.bump("sleep-after"))
        return "rested"

    @client.function(id="waiter", trigger=eagerstep.Event(f"{prefix}/wait"))
    def waiter(ctx: eagerstep.Context) -> Any:
        got = ctx.step.wait_for_event(
            "approval",
            event=f"{prefix}/approved",
            if_="event.data.id == async.data.id",
            timeout=datetime.timedelta(hours=1),
        )
        return {"approved": None if got is None else got.data}

    @client.function(id="child", trigger=eagerstep.Event(f"{prefix}/child"))
    def child(ctx: eagerstep.Context) -> dict[str, Any]:
        return {"doubled": ctx.step.run("double", lambda: ctx.event.data["x"] * 2)}

    @client.function(id="parent", trigger=eagerstep.Event(f"{prefix}/parent"))
    def parent(ctx: eagerstep.Context) -> Any:
        return ctx.step.invoke("call-child", function=child, data={"x": 21})

    @client.function(
        id="cancellable",
        trigger=eagerstep.Event(f"{prefix}/cancellable"),
        cancel_on=[eagerstep.Event(f"{prefix}/stop", if_="event.data.id == async.data.id")],
    )
    def cancellable(ctx: eagerstep.Context) -> str:
        ctx.step.sleep("long", datetime.timedelta(days=1))
        ctx.step.run("never", lambda: rec.bump("cancel-never"))
        return "not cancelled"

    def on_failure(ctx: eagerstep.Context) -> None:
        rec.values["failure"] = ctx.event.data

    @client.function(
        id="doomed", trigger=eagerstep.Event(f"{prefix}/doomed"), retries=0, on_failure=on_failure
    )
    def doomed(ctx: eagerstep.Context) -> None:
        raise eagerstep.NonRetriableError("broken for good")

    @client.function(id="ticker", trigger=eagerstep.Cron("30 * * * *"))
    def ticker(ctx: eagerstep.Context) -> str:
        rec.bump("cron")
        return str(ctx.event.name)

    @client.function(id="fanout", trigger=eagerstep.Event(f"{prefix}/parallel"))
    def fanout(ctx: eagerstep.Context) -> Any:
        first = ctx.step.run("first", lambda: 1)
        group = ctx.step.parallel([(lambda i=i: ctx.step.run(f"p{i}", lambda: i * 10)) for i in range(3)])
        last = ctx.step.run("last", lambda: rec.bump("fanout-last"))
        return [first, *group, last]

    assert app
    return [multi, retry, sleeper, waiter, child, parent, cancellable, doomed, ticker, fanout]


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, clock: ManualClock) -> Iterator[EngineServer]:
    db = Path(tmp_path_factory.mktemp("engine")) / "engine.db"
    with EngineServer(db, clock=clock, retry_interval=0.0) as server:
        yield server
        # As a real Inngest server would see them: no reply was a parallel group by accident.
        assert server.engine.stats["parallel_replies"] == 0, server.engine.stats


@pytest.fixture(scope="module", params=VARIANTS)
def scenario(request: pytest.FixtureRequest, engine: EngineServer, clock: ManualClock) -> Iterator[Scenario]:
    framework, checkpointing = request.param
    prefix = f"{framework}-{'ckpt' if checkpointing else 'std'}"
    client = eagerstep.Client(app_id=prefix, dev=engine.url, checkpointing=checkpointing)
    rec = Recorder()
    functions = build(client, rec, prefix)
    if framework == "flask":
        flask = pytest.importorskip("flask")
        from eagerstep.integrations.flask import blueprint

        app = flask.Flask(prefix)
        app.register_blueprint(blueprint(client, functions))
        server = wsgi_app_server(app)
    else:
        fastapi = pytest.importorskip("fastapi")
        from eagerstep.integrations.fastapi import router

        asgi = fastapi.FastAPI()
        asgi.include_router(router(client, functions), prefix="/api/inngest")
        server = asgi_app_server(asgi)
    with server as origin:
        api = EngineClient(engine.url)
        reply = api.sync(origin + "/api/inngest")
        assert reply["app_status"] == 200, reply
        yield Scenario(api, clock, rec, prefix, checkpointing)
        api.close()


def test_multi_step(scenario: Scenario) -> None:
    before = scenario.stats()
    run = scenario.api.wait_run(scenario.send("multi", {"n": 7}))
    after = scenario.stats()
    if scenario.checkpointing:  # one call request; steps travel as checkpoints or in the final 206
        assert after["calls"] - before["calls"] == 1
        assert after["checkpoints"] - before["checkpoints"] <= 3  # fast steps may ride in the reply
    else:  # one call per step, plus the final one
        assert after["calls"] - before["calls"] == 4
        assert after["checkpoints"] == before["checkpoints"]
    assert run["status"] == "Completed", run
    assert run["output"] == {"a": 1, "c": {"b": 2, "n": 7}}
    assert [s["name"] for s in run["steps"]] == ["a", "b", "c"]
    assert scenario.rec.counts["multi-a"] == 1


def test_step_retry(scenario: Scenario) -> None:
    run = scenario.api.wait_run(scenario.send("retry"))
    assert run["status"] == "Completed", run
    assert run["output"] == "ok"
    assert scenario.rec.counts["retry"] == 3
    assert scenario.rec.counts["retry-first"] == 1


def test_sleep_on_manual_clock(scenario: Scenario) -> None:
    api = scenario.api
    event_id = scenario.send("sleep")
    api.wait_step(event_id, lambda s: s["status"] == "Running")
    scenario.clock.advance(3601)
    run = api.wait_run(event_id)
    assert run["status"] == "Completed", run
    assert [s["op"] for s in run["steps"]] == ["StepRun", "Sleep", "StepRun"]
    assert scenario.rec.counts["sleep-before"] == 1 and scenario.rec.counts["sleep-after"] == 1


def test_wait_for_event_match_and_timeout(scenario: Scenario) -> None:
    api = scenario.api
    matched = scenario.send("wait", {"id": "o-1"})
    timed_out = scenario.send("wait", {"id": "o-2"})
    api.wait_step(matched, lambda s: s["status"] == "Running")
    api.wait_step(timed_out, lambda s: s["status"] == "Running")
    scenario.send("approved", {"id": "o-9"})
    scenario.send("approved", {"id": "o-1", "by": "ana"})
    assert api.wait_run(matched)["output"] == {"approved": {"id": "o-1", "by": "ana"}}
    assert api.fire_timers(run_id=api.runs_of(timed_out)[0]["run_id"]) == 1
    assert api.wait_run(timed_out)["output"] == {"approved": None}


def test_invoke(scenario: Scenario) -> None:
    run = scenario.api.wait_run(scenario.send("parent"))
    assert run["status"] == "Completed", run
    assert run["output"] == {"doubled": 42}


def test_cancel_on_event(scenario: Scenario) -> None:
    api = scenario.api
    event_id = scenario.send("cancellable", {"id": 5})
    api.wait_step(event_id, lambda s: s["status"] == "Running")
    scenario.send("stop", {"id": 6})
    scenario.send("stop", {"id": 5})
    assert api.wait_run(event_id)["status"] == "Cancelled"
    assert "cancel-never" not in scenario.rec.counts


def test_on_failure(scenario: Scenario) -> None:
    run = scenario.api.wait_run(scenario.send("doomed", {"k": 1}))
    assert run["status"] == "Failed"
    assert "broken for good" in run["error"]["message"]
    failure = wait_for(lambda: scenario.rec.values.get("failure"))
    assert failure["function_id"] == f"{scenario.prefix}-doomed"
    assert failure["event"]["data"] == {"k": 1}


def test_cron(scenario: Scenario) -> None:
    api = scenario.api
    before = scenario.rec.counts.get("cron", 0)
    assert api.fire_timers(kinds=["cron"]) >= 1
    wait_for(lambda: scenario.rec.counts.get("cron", 0) > before)
    fid = f"{scenario.prefix}-ticker"

    def done() -> dict[str, Any] | None:
        runs = [r for r in api.http.get("/v1/runs").json()["data"] if r["function_id"] == fid]
        return runs[0] if runs and runs[0]["status"] == "Completed" else None

    assert wait_for(done)["output"] == "inngest/scheduled.timer"


def test_parallel_steps(scenario: Scenario) -> None:
    run = scenario.api.wait_run(scenario.send("parallel"))
    assert run["status"] == "Completed", run
    assert run["output"] == [1, 0, 10, 20, 1]
    assert sorted(s["name"] for s in run["steps"]) == ["first", "last", "p0", "p1", "p2"]
