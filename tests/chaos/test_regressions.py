"""Bugs the chaos matrix found, each as a short version of its scenario (in-process engine and app)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

import eagerstep
from eagerstep.engine.server import EngineServer
from eagerstep.integrations.flask import EagerStep
from tests.chaos.faultproxy import Fault, FaultProxy
from tests.engine.helpers import EngineClient, wsgi_app_server

pytestmark = pytest.mark.engine


def _app(engine_url: str, executed: Counter[str]) -> Flask:
    client = eagerstep.Client(app_id="chaos-regressions", dev=True, api_base_url=engine_url)

    @client.function(id="five", trigger=eagerstep.Event("chaos/five"), retries=10)
    def five(ctx: eagerstep.Context) -> int:
        total = 0
        for i in range(5):

            def body(i: int = i) -> int:
                executed[f"{ctx.run_id}/s{i}"] += 1
                time.sleep(0.002)  # a checkpoint call per step, not one coalesced
                return i

            total += ctx.step.run(f"s{i}", body)
        return total

    app = Flask("chaos-regressions")
    EagerStep(app, client=client, functions=[five])
    return app


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineServer]:
    with EngineServer(tmp_path / "engine.db", retry_interval=0.02) as server:
        yield server


def test_a_409_from_a_proxy_does_not_fail_the_run(engine: EngineServer) -> None:
    """Bug: a 409 from something between the app and the engine (a proxy, a load balancer) made the
    SDK stop as a stale dispatch and answer 400 no-retry, and the engine failed the run for good,
    though the call was the run's current dispatch. Now the engine dispatches it again."""
    executed: Counter[str] = Counter()
    api = EngineClient(engine.url)
    with FaultProxy(engine.url, Fault("status", "/v1/checkpoint/", every=2, status=409)) as proxy:
        with wsgi_app_server(_app(proxy.url, executed)) as origin:
            api.sync(origin + "/api/inngest")
            events = [api.send("chaos/five") for _ in range(3)]
            runs: list[dict[str, Any]] = [api.wait_run(event) for event in events]
        assert proxy.counts["status"] >= 1, "the 409 never fired"
    assert [run["status"] for run in runs] == ["Completed"] * 3, runs
    assert [run["output"] for run in runs] == [10] * 3
    for run in runs:
        assert sorted(s["name"] for s in run["steps"]) == [f"s{i}" for i in range(5)]
    api.close()


DEEP = b"[" * 5000 + b"]" * 5000


def test_json_nested_too_deeply_is_a_value_error() -> None:
    from eagerstep.core import safejson

    with pytest.raises(ValueError, match="nested too deeply"):
        safejson.loads(DEEP)
    assert safejson.loads(b"[[1]]") == [[1]]


@pytest.mark.parametrize("signed", ["wrong-key", "dev-mode"])
@pytest.mark.parametrize("framework", ["flask", "fastapi"])
def test_deeply_nested_json_at_the_serve_endpoint_is_a_4xx(framework: str, signed: str) -> None:
    """Bug: a body nested a few thousand levels deep raised RecursionError (not ValueError) in the
    signature check and the body parser: the serve endpoint answered 500."""
    import httpx
    from fastapi import FastAPI

    from eagerstep.core.signing import sign
    from eagerstep.integrations.fastapi import router
    from tests.integrations.servers import serve_asgi

    key = "signkey-test-" + "5e" * 32
    dev = signed == "dev-mode"
    client = eagerstep.Client(
        app_id="deep", dev=dev, signing_key=None if dev else key, api_base_url="http://127.0.0.1:1"
    )

    @client.function(id="fn", trigger=eagerstep.Event("deep/fn"))
    def fn(ctx: eagerstep.Context) -> int:
        return 1

    if framework == "flask":
        app = Flask("deep")
        EagerStep(app, client=client, functions=[fn])
        server = wsgi_app_server(app)
    else:
        asgi = FastAPI()
        asgi.include_router(router(client, [fn]), prefix="/api/inngest")
        server = serve_asgi(asgi)
    headers = {"content-type": "application/json"}
    if not dev:
        headers["x-inngest-signature"] = sign(DEEP, "signkey-test-" + "00" * 32)
    with server as origin:
        reply = httpx.post(
            origin + "/api/inngest", params={"fnId": "deep-fn", "stepId": "step"}, content=DEEP,
            headers=headers, timeout=10,
        )  # fmt: skip
    assert reply.status_code == (400 if dev else 401), reply.text
    assert reply.json()["error"]


def test_deeply_nested_json_at_the_engine_api_is_a_400(engine: EngineServer) -> None:
    """Bug: the same body answered 500 at the engine's API (``/e/{key}``, ``/fn/register``, ...)."""
    import httpx

    with httpx.Client(base_url=engine.url, timeout=10) as http:
        for path in ("/e/key", "/fn/register", "/v1/checkpoint/01RUN/async", "/v1/dev/apps"):
            reply = http.post(path, content=DEEP)
            assert reply.status_code == 400, (path, reply.status_code, reply.text)
            assert "nested too deeply" in reply.json()["error"]


NAN_EVENT = b'{"name":"fuzz/nan","data":{"a":NaN,"b":Infinity}}'


def test_nan_and_infinity_are_not_json() -> None:
    from eagerstep.core import safejson

    for text in (b"NaN", b'{"a":Infinity}', b"[-Infinity]"):
        with pytest.raises(ValueError, match="is not JSON"):
            safejson.loads(text)
    assert safejson.loads('\ufeff{"a":1.5}'.encode()) == {"a": 1.5}  # a BOM, as json.loads allows


def test_the_engine_refuses_nan_instead_of_storing_it(engine: EngineServer) -> None:
    """Bug: the engine accepted an event with NaN/Infinity in it (Python's json does), stored it and
    served it back as invalid JSON, and would have sent it on to apps in call requests."""
    import httpx

    with httpx.Client(base_url=engine.url, timeout=10) as http:
        reply = http.post("/e/key", content=NAN_EVENT)
        assert reply.status_code == 400, reply.text
        assert "NaN is not JSON" in reply.json()["error"]
        assert http.get("/v1/runs").json()["data"] == []
    count = engine.run_sync(lambda: engine.engine.db.one("SELECT COUNT(*) FROM events")[0])
    assert count == 0
