"""``ctx.step.ai`` served by eagerstep (Flask: ``def``; FastAPI: ``async def``) against the engine and a
fake OpenAI-compatible model on loopback: ``infer`` (the engine calls the model) and ``wrap`` (the
worker calls it, as a checkpointed step)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import eagerstep
from eagerstep.engine import EngineServer
from tests.engine.fake_model import FakeModel, fake_model_server
from tests.engine.helpers import EngineClient, asgi_app_server, wsgi_app_server

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]


class Setup:
    def __init__(self, api: EngineClient, model: FakeModel, prefix: str, calls: dict[str, int]) -> None:
        self.api, self.model, self.prefix, self.calls = api, model, prefix, calls


def build(client: eagerstep.Client, model_url: str, prefix: str, calls: dict[str, int]) -> list[Any]:
    model = eagerstep.ai.openai(model="fake-1", api_key="sk-test", base_url=f"{model_url}/v1")
    lock = threading.Lock()

    def count(key: str) -> None:
        with lock:
            calls[key] = calls.get(key, 0) + 1

    def ask_model(question: str) -> Any:
        count("wrap")
        body = {"model": "fake-1", "messages": [{"role": "user", "content": question}]}
        return httpx.post(f"{model_url}/v1/chat/completions", json=body, timeout=10).json()

    async def ask_model_async(question: str) -> Any:
        count("wrap")
        body = {"model": "fake-1", "messages": [{"role": "user", "content": question}]}
        async with httpx.AsyncClient(timeout=10) as http:
            return (await http.post(f"{model_url}/v1/chat/completions", json=body)).json()

    body = {"messages": [{"role": "user", "content": "hello"}]}

    @client.function(id="infer", trigger=eagerstep.Event(f"{prefix}/infer"))
    def infer(ctx: eagerstep.Context) -> Any:
        count("infer-fn")
        reply = ctx.step.ai.infer("ask", model=model, body=body)
        after = ctx.step.run("after", lambda: reply["choices"][0]["message"]["content"].upper())
        return {"answer": after}

    @client.function(id="infer-async", trigger=eagerstep.Event(f"{prefix}/infer-async"))
    async def infer_async(ctx: eagerstep.AsyncContext) -> Any:
        reply = await ctx.step.ai.infer("ask", model=model, body=body)
        return {"answer": reply["choices"][0]["message"]["content"]}

    @client.function(id="wrap", trigger=eagerstep.Event(f"{prefix}/wrap"))
    def wrap(ctx: eagerstep.Context) -> Any:
        reply = ctx.step.ai.wrap("ask", ask_model, "wrapped")
        ctx.step.run("after", lambda: None)
        return {"answer": reply["choices"][0]["message"]["content"]}

    @client.function(id="wrap-async", trigger=eagerstep.Event(f"{prefix}/wrap-async"))
    async def wrap_async(ctx: eagerstep.AsyncContext) -> Any:
        reply = await ctx.step.ai.wrap("ask", ask_model_async, question="wrapped async")
        return {"answer": reply["choices"][0]["message"]["content"]}

    @client.function(id="infer-fails", trigger=eagerstep.Event(f"{prefix}/infer-fails"), retries=0)
    def infer_fails(ctx: eagerstep.Context) -> Any:
        try:
            ctx.step.ai.infer("ask", model=model, body=body)
        except eagerstep.StepError as exc:
            return {"caught": exc.name, "message": str(exc)}
        return {"caught": None}

    return [infer, infer_async, wrap, wrap_async, infer_fails]


@pytest.fixture(scope="module")
def model() -> Iterator[FakeModel]:
    with fake_model_server() as server:
        yield server


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineServer]:
    db = Path(tmp_path_factory.mktemp("engine")) / "engine.db"
    with EngineServer(db, retry_interval=0.0) as server:
        yield server


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("flask", marks=pytest.mark.flask),
        pytest.param("fastapi", marks=pytest.mark.fastapi),
    ],
)
def setup(request: pytest.FixtureRequest, engine: EngineServer, model: FakeModel) -> Iterator[Setup]:
    prefix = f"ai-{request.param}"
    client = eagerstep.Client(app_id=prefix, dev=engine.url)
    calls: dict[str, int] = {}
    functions = build(client, model.url, prefix, calls)
    if request.param == "flask":
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
        assert api.sync(origin + "/api/inngest")["app_status"] == 200
        yield Setup(api, model, prefix, calls)
        api.close()


def test_infer_is_made_by_the_engine_and_recorded(setup: Setup) -> None:
    before = len(setup.model.requests)
    run = setup.api.wait_run(setup.api.send(f"{setup.prefix}/infer"))
    assert run["status"] == "Completed", run
    assert run["output"] == {"answer": "ECHO: HELLO"}
    request = setup.model.requests[before]
    assert request.path == "/v1/chat/completions" and request.headers["authorization"] == "Bearer sk-test"
    assert request.body == {"messages": [{"role": "user", "content": "hello"}], "model": "fake-1"}
    assert len(setup.model.requests) == before + 1
    assert [(s["name"], s["op"]) for s in run["steps"]] == [("ask", "AIGateway"), ("after", "StepRun")]


def test_infer_async(setup: Setup) -> None:
    run = setup.api.wait_run(setup.api.send(f"{setup.prefix}/infer-async"))
    assert run["status"] == "Completed" and run["output"] == {"answer": "echo: hello"}, run


def test_wrap_runs_in_the_worker_once(setup: Setup) -> None:
    before = dict(setup.calls)
    run = setup.api.wait_run(setup.api.send(f"{setup.prefix}/wrap"))
    assert run["status"] == "Completed" and run["output"] == {"answer": "echo: wrapped"}, run
    assert setup.calls["wrap"] - before.get("wrap", 0) == 1  # recorded once, replayed after
    assert [(s["name"], s["op"]) for s in run["steps"]] == [("ask", "StepRun"), ("after", "StepRun")]
    run = setup.api.wait_run(setup.api.send(f"{setup.prefix}/wrap-async"))
    assert run["status"] == "Completed" and run["output"] == {"answer": "echo: wrapped async"}, run


def test_infer_failure_raises_step_error(setup: Setup) -> None:
    setup.model.failures.append(500)
    run = setup.api.wait_run(setup.api.send(f"{setup.prefix}/infer-fails"))
    assert run["status"] == "Completed", run
    assert run["output"]["caught"] == "AIGatewayError"
    assert "unsuccessful status code: 500" in run["output"]["message"]
