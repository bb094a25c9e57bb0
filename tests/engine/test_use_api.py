"""Large run state, end to end: past ``max_inline_state`` the engine sends ``use_api: true`` with no
steps or events, as an Inngest server does past 4 MB (``pkg/execution/driver/driver.go``
``MarshalV1``), and the SDK loads them from ``/v0/runs/{id}/actions`` and ``/batch``. Real apps on
loopback, both entry points (WSGI and ASGI), checkpointing on and off."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import eagerstep
from eagerstep.engine import EngineServer
from tests.engine.helpers import EngineClient, asgi_app_server, wsgi_app_server

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]

LIMIT = 6000  # bytes: a few 2 kB steps take the run past it


class BodyRecorder:
    """WSGI middleware that keeps the JSON body of every call request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] == "POST":
            raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            self.bodies.append(json.loads(raw))
            environ["wsgi.input"] = io.BytesIO(raw)
        return self.app(environ, start_response)


class AsgiBodyRecorder:
    """ASGI middleware that keeps the JSON body of every call request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        self.bodies.append(json.loads(raw))
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        await self.app(scope, replay, send)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineServer]:
    with EngineServer(tmp_path / "engine.db", retry_interval=0.01, max_inline_state=LIMIT) as server:
        yield server


def big_function(client: eagerstep.Client, ran: dict[str, int], lock: threading.Lock) -> Any:
    @client.function(id="big", trigger=eagerstep.Event("big/run"))
    def big(ctx: eagerstep.Context) -> Any:
        sizes = []
        for i in range(5):

            def body(i: int = i) -> str:
                with lock:
                    ran[f"s{i}"] = ran.get(f"s{i}", 0) + 1
                return str(i) * 2000

            sizes.append(len(ctx.step.run(f"s{i}", body)))
        ctx.step.sleep("pause", "1ms")  # a hand-over: the next request replays everything
        return {"sizes": sizes, "events": len(ctx.events), "first": ctx.event.data["n"]}

    return big


@pytest.mark.parametrize("framework", ["flask", "fastapi"])
@pytest.mark.parametrize("checkpointing", [True, False], ids=["checkpointing", "standard"])
def test_large_state_goes_through_the_state_api(
    engine: EngineServer, framework: str, checkpointing: bool
) -> None:
    ran: dict[str, int] = {}
    client = eagerstep.Client(app_id=f"big-{framework}", dev=engine.url, checkpointing=checkpointing)
    fn = big_function(client, ran, threading.Lock())
    recorder: BodyRecorder | AsgiBodyRecorder
    if framework == "flask":
        flask = pytest.importorskip("flask")
        from eagerstep.integrations.flask import blueprint

        app = flask.Flask(__name__)
        app.register_blueprint(blueprint(client, [fn]))
        recorder = BodyRecorder(app)
        server = wsgi_app_server(recorder)
    else:
        fastapi = pytest.importorskip("fastapi")
        from eagerstep.integrations.fastapi import router

        asgi = fastapi.FastAPI()
        asgi.include_router(router(client, [fn]), prefix="/api/inngest")
        recorder = AsgiBodyRecorder(asgi)
        server = asgi_app_server(recorder)
    api = EngineClient(engine.url)
    try:
        with server as origin:
            assert api.sync(origin + "/api/inngest")["app_status"] == 200
            run = api.wait_run(api.send("big/run", {"n": 7}))
    finally:
        api.close()
    assert run["status"] == "Completed", run
    assert run["output"] == {"sizes": [2000] * 5, "events": 1, "first": 7}
    assert ran == {f"s{i}": 1 for i in range(5)}  # never re-run because the memo map came empty
    offloaded = [b for b in recorder.bodies if b["ctx"]["use_api"]]
    assert offloaded, "no call request went over the limit"
    for body in offloaded:
        assert body["use_api"] is True and body["steps"] == {} and body["events"] == []
        assert body["event"]["data"] == {"n": 7}  # the first event always stays
    assert all(len(json.dumps(b)) < LIMIT for b in offloaded)
