"""The engine's HTTP API against scripted apps: real HTTP servers on loopback that answer call
requests the way an SDK would (including checkpointing), or badly, as a test needs."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from eagerstep.core import protocol, signing
from eagerstep.engine import EngineServer
from tests.engine.helpers import EngineClient, wait_for, wsgi_app_server

pytestmark = [pytest.mark.engine, pytest.mark.timeout(30)]

SDK_HEADERS = {
    "X-Inngest-SDK": "scripted:v1",
    "X-Inngest-Req-Version": "2",
    "Content-Type": "application/json",
}
Handler = Callable[[dict[str, Any], dict[str, str], dict[str, str]], tuple[int, dict[str, str], bytes]]


class ScriptedApp:
    """A WSGI app that records call requests and answers them with ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls: list[tuple[dict[str, Any], dict[str, str], dict[str, str]]] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length)
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        query = dict(x.split("=", 1) for x in environ.get("QUERY_STRING", "").split("&") if "=" in x)
        body = json.loads(raw) if raw else {}
        headers["raw-body"] = raw.decode()
        with self.lock:
            self.calls.append((body, headers, query))
        status, reply_headers, content = self.handler(body, headers, query)
        start_response(f"{status} X", list(reply_headers.items()))
        return [content]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineServer]:
    server = EngineServer(tmp_path / "engine.db", retry_interval=0.01)
    server.start()
    yield server
    server.stop()


def register(api: EngineClient, app_url: str, fn: dict[str, Any], app: str = "scripted") -> dict[str, Any]:
    config = {
        "id": f"{app}-{fn.pop('slug')}",
        "name": "fn",
        "steps": {
            "step": {
                "id": "step",
                "name": "step",
                "runtime": {"type": "http", "url": f"{app_url}?fnId={app}-fn&stepId=step"},
                "retries": {"attempts": fn.pop("retries", 2)},
            }
        },
        **fn,
    }
    body = {"url": app_url, "appName": app, "sdk": "scripted:v1", "functions": [config]}
    response = api.http.post("/fn/register", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.fixture
def api(engine: EngineServer) -> Iterator[EngineClient]:
    client = EngineClient(engine.url)
    yield client
    client.close()


def ok(ops: list[dict[str, Any]] | Any, status: int = 206) -> tuple[int, dict[str, str], bytes]:
    return status, SDK_HEADERS, json.dumps(ops).encode()


# ------------------------------------------------------------------------------------------ sync


def test_register_validation_and_idempotent_resync(api: EngineClient) -> None:
    response = api.http.post("/fn/register", json={"url": "http://127.0.0.1:1/api", "functions": []})
    assert response.status_code == 400
    assert "appName" in response.json()["error"]
    assert response.headers["x-inngest-server-kind"] == "dev"
    response = api.http.post(
        "/fn/register",
        json={"url": "http://127.0.0.1:1/api", "appname": "lower", "functions": []},
        headers={"X-Inngest-Expected-Server-Kind": "cloud"},
    )
    assert response.status_code == 400 and "dev server" in response.json()["error"]
    response = api.http.post("/fn/register", content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    first = register(api, "http://127.0.0.1:1/api", {"slug": "a", "triggers": [{"event": "x/a"}]})
    second = register(api, "http://127.0.0.1:1/api", {"slug": "a", "triggers": [{"event": "x/a"}]})
    assert first["ok"] and first["modified"] is True and second["modified"] is False
    lower = api.http.post(
        "/fn/register", json={"URL": "http://127.0.0.1:2/api", "APPNAME": "caps", "Functions": []}
    )
    assert lower.status_code == 200, lower.text
    apps = {a["name"] for a in api.http.get("/v1/dev/apps").json()["data"]}
    assert {"scripted", "caps"} <= apps


def test_unknown_route_and_method(api: EngineClient) -> None:
    assert api.http.get("/nope").status_code == 404
    response = api.http.get("/fn/register")
    assert response.status_code == 405 and "POST" in response.json()["error"]


# ------------------------------------------------------------------------------------------ events


def test_events_ids_dedupe_and_errors(api: EngineClient) -> None:
    app = ScriptedApp(lambda body, headers, query: ok({"done": True}, 200))
    with wsgi_app_server(app) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "shop/*"}]})
        response = api.http.post("/e/key", json=[{"name": "shop/a", "id": "same"}, {"name": "shop/b"}])
        body = response.json()
        assert response.status_code == 200 and body["status"] == 200 and body["ids"][0] == "same"
        api.http.post("/e/key", json={"name": "shop/a", "id": "same"})
        wait_for(lambda: len(app.calls) == 2)
        time.sleep(0.1)
        assert len(app.calls) == 2  # the duplicate id did not start a third run
        event = app.calls[0][0]["event"]
        assert event["user"] == {} and isinstance(event["ts"], int)
        assert api.wait_run("same")["output"] == {"done": True}
    for bad, message in [({"data": {}}, "name"), ({"name": "x", "data": [1]}, "data"), ([], "no events")]:
        response = api.http.post("/e/key", json=bad)
        assert response.status_code == 400 and message in response.json()["error"]


def test_trigger_expression(api: EngineClient) -> None:
    app = ScriptedApp(lambda body, headers, query: ok(body["event"]["data"], 200))
    with wsgi_app_server(app) as origin:
        register(
            api,
            origin + "/api",
            {"slug": "fn", "triggers": [{"event": "t/e", "expression": "event.data.n > 2"}]},
        )
        low = api.send("t/e", {"n": 1})
        high = api.send("t/e", {"n": 3})
        assert api.wait_run(high)["output"] == {"n": 3}
        assert api.runs_of(low) == []
        response = api.http.post(
            "/fn/register",
            json={
                "url": origin + "/x",
                "appName": "bad",
                "functions": [
                    {
                        "id": "bad-fn",
                        "name": "bad",
                        "triggers": [{"event": "t/e", "expression": "event.data.n >"}],
                        "steps": {"step": {"runtime": {"url": origin + "/x?fnId=bad-fn&stepId=step"}}},
                    }
                ],
            },
        )
        assert response.status_code == 400 and "invalid expression" in response.json()["error"]


# ------------------------------------------------------------------------------------------ call loop


def checkpointing_handler(engine_url: str, steps: int, results: list[int]) -> Handler:
    """Behave like the TS SDK in checkpointing mode: checkpoint each step, then 206 [RunComplete]."""

    def handle(
        body: dict[str, Any], headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        ctx = body["ctx"]
        for i in range(steps):
            hashed = protocol.hash_step_id(f"s{i}")
            if hashed in body["steps"]:
                continue
            payload = {
                "run_id": ctx["run_id"],
                "fn_id": ctx["fn_id"],
                "qi_id": ctx["qi_id"],
                "request_id": headers["x-request-id"],
                "generation_id": int(headers["x-inngest-generation-id"]),
                "request_started_at": int(time.time() * 1000),
                "steps": [
                    protocol.step_run_op(hashed, f"s{i}", {"i": i}, start_ns=time.time_ns(), duration_ns=5)
                ],
            }
            response = httpx.post(f"{engine_url}/v1/checkpoint/{ctx['run_id']}/async", json=payload)
            results.append(response.status_code)
        return ok([{"op": "RunComplete", "id": protocol.RUN_COMPLETE_ID, "data": {"total": steps}}])

    return handle


def test_checkpointed_run_and_call_request_shape(engine: EngineServer, api: EngineClient) -> None:
    statuses: list[int] = []
    app = ScriptedApp(checkpointing_handler(engine.url, 3, statuses))
    with wsgi_app_server(app) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "c/run"}]})
        event_id = api.send("c/run", {"k": 1})
        run = api.wait_run(event_id)
    assert run["status"] == "Completed" and run["output"] == {"total": 3}
    assert [s["name"] for s in run["steps"]] == ["s0", "s1", "s2"]
    assert statuses == [200, 200, 200]
    assert len(app.calls) == 1  # one call request for the whole run
    body, headers, query = app.calls[0]
    ctx = body["ctx"]
    uuid.UUID(ctx["fn_id"])
    job_id, shard = base64.b64decode(ctx["qi_id"]).decode().split("::")
    assert job_id == ctx["job_id"] == headers["x-inngest-job-id"] and shard
    assert ctx["attempt"] == 0 and ctx["max_attempts"] == 3 and ctx["stack"] == {"stack": [], "current": 0}
    assert ctx["disable_immediate_execution"] is False and ctx["run_id"] == headers["x-run-id"]
    assert ctx["request_id"] == headers["x-request-id"] and ctx["generation_id"] == 1
    assert headers["x-inngest-step-id"] == "step" and query["stepId"] == "step"
    assert headers["x-inngest-req-version"] == str(body["version"]) == "-1"
    assert body["events"] == [body["event"]] and body["use_api"] is False
    actions = api.http.get(f"/v0/runs/{run['run_id']}/actions").json()
    assert actions[protocol.hash_step_id("s1")] == {"data": {"i": 1}}
    assert api.http.get(f"/v0/runs/{run['run_id']}/batch").json()[0]["data"] == {"k": 1}


def test_checkpoint_api_errors_and_fencing(engine: EngineServer, api: EngineClient) -> None:
    checks: dict[str, int] = {}
    release = threading.Event()

    def handle(
        body: dict[str, Any], headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        ctx = body["ctx"]
        url = f"{engine.url}/v1/checkpoint/{ctx['run_id']}/async"
        base = {"run_id": ctx["run_id"], "fn_id": ctx["fn_id"], "qi_id": ctx["qi_id"]}
        op = protocol.step_run_op(protocol.hash_step_id("a"), "a", 1)
        checks["stale"] = httpx.post(url, json={**base, "generation_id": 7, "steps": [op]}).status_code
        sleep = {"op": "Sleep", "id": "x", "name": "1s"}
        checks["async"] = httpx.post(url, json={**base, "generation_id": 1, "steps": [sleep]}).status_code
        checks["unknown"] = httpx.post(
            f"{engine.url}/v1/checkpoint/nope/async", json={**base, "steps": []}
        ).status_code
        legacy = f"{engine.url}/v1/http/runs/{ctx['run_id']}/async"
        checks["ok"] = httpx.post(legacy, json={**base, "generation_id": 1, "steps": [op]}).status_code
        release.wait(5)
        return ok([op, {"op": "RunComplete", "id": protocol.RUN_COMPLETE_ID, "data": "done"}])

    app = ScriptedApp(handle)
    with wsgi_app_server(app) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "f/run"}]})
        event_id = api.send("f/run")
        wait_for(lambda: "ok" in checks)
        release.set()
        run = api.wait_run(event_id)
    assert checks == {"stale": 409, "async": 400, "unknown": 400, "ok": 200}
    assert run["status"] == "Completed" and [s["name"] for s in run["steps"]] == ["a"]


def test_standard_mode_ops_parallel_and_step_errors(api: EngineClient) -> None:
    """Discovery → two StepPlanned (force plan) → targeted runs (one errors once) → discovery → done."""
    a, b = protocol.hash_step_id("a"), protocol.hash_step_id("b")
    seen: list[tuple[str, bool, int]] = []

    def handle(
        body: dict[str, Any], headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        ctx, steps, step_id = body["ctx"], body["steps"], query["stepId"]
        seen.append((step_id, ctx["disable_immediate_execution"], ctx["attempt"]))
        if step_id == a:
            return ok([protocol.step_run_op(a, "a", "A")])
        if step_id == b:
            if ctx["attempt"] == 0:
                error = {"name": "Error", "message": "flaky"}
                return ok([{"op": "StepError", "id": b, "name": "b", "error": error}])
            return ok([protocol.step_run_op(b, "b", "B")])
        if a in steps and b in steps:
            return ok({"a": steps[a]["data"], "b": steps[b]["data"]}, 200)
        return ok([{"op": "StepPlanned", "id": a, "name": "a"}, {"op": "StepPlanned", "id": b, "name": "b"}])

    app = ScriptedApp(handle)
    with wsgi_app_server(app) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "p/run"}]})
        run = api.wait_run(api.send("p/run"))
    assert run["status"] == "Completed" and run["output"] == {"a": "A", "b": "B"}
    assert seen[0] == ("step", False, 0)
    assert set(seen[1:4]) == {(a, True, 0), (b, True, 0), (b, True, 1)}
    assert seen[-1] == ("step", False, 0)


def test_no_retry_header_fails_at_once(api: EngineClient) -> None:
    def handle(
        body: dict[str, Any], headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        error = {"name": "NonRetriableError", "message": "nope"}
        return 400, {**SDK_HEADERS, "X-Inngest-No-Retry": "true"}, json.dumps(error).encode()

    app = ScriptedApp(handle)
    with wsgi_app_server(app) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "n/run"}], "retries": 5})
        run = api.wait_run(api.send("n/run"))
    assert run["status"] == "Failed" and run["error"]["message"] == "nope"
    assert len(app.calls) == 1


def test_stream_envelope(api: EngineClient) -> None:
    def handle(
        body: dict[str, Any], headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        envelope = {"status": 200, "body": json.dumps({"streamed": True}), "headers": {}}
        return 201, SDK_HEADERS, b"  \n " + json.dumps(envelope).encode()

    app = ScriptedApp(handle)
    with wsgi_app_server(app) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "s/run"}]})
        run = api.wait_run(api.send("s/run"))
    assert run["status"] == "Completed" and run["output"] == {"streamed": True}


def test_unreachable_and_garbage_apps_fail_readably(api: EngineClient) -> None:
    register(api, "http://127.0.0.1:9/api", {"slug": "down", "triggers": [{"event": "d/run"}], "retries": 1})
    run = api.wait_run(api.send("d/run"))
    assert run["status"] == "Failed" and "could not reach the app" in run["error"]["message"]

    garbage = ScriptedApp(
        lambda body, headers, query: (200, {"Content-Type": "text/html"}, b"<html>hi</html>")
    )
    with wsgi_app_server(garbage) as origin:
        register(
            api, origin + "/api", {"slug": "junk", "triggers": [{"event": "g/run"}], "retries": 1}, app="junk"
        )
        run = api.wait_run(api.send("g/run"))
    assert run["status"] == "Failed" and "X-Inngest-SDK" in run["error"]["message"]
    assert len(garbage.calls) == 2


def test_concurrency_limit(api: EngineClient) -> None:
    active = {"now": 0, "max": 0}
    lock = threading.Lock()

    def handle(
        body: dict[str, Any], headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        with lock:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        time.sleep(0.03)
        with lock:
            active["now"] -= 1
        return ok("done", 200)

    app = ScriptedApp(handle)
    with wsgi_app_server(app) as origin:
        register(
            api,
            origin + "/api",
            {"slug": "fn", "triggers": [{"event": "k/run"}], "concurrency": [{"limit": 1}]},
        )
        ids = [api.send("k/run", {"i": i}) for i in range(4)]
        for event_id in ids:
            assert api.wait_run(event_id)["status"] == "Completed"
    assert active["max"] == 1


def test_signing_key(tmp_path: Path) -> None:
    key = "signkey-test-" + "ab" * 32
    with EngineServer(tmp_path / "s.db", signing_key=key) as engine:
        api = EngineClient(engine.url)
        verified: list[str] = []

        def handle(
            body: dict[str, Any], headers: dict[str, str], query: dict[str, str]
        ) -> tuple[int, dict[str, str], bytes]:
            verified.append(
                signing.verify(headers.get("x-inngest-signature"), headers["raw-body"].encode(), [key])
            )
            return ok("signed", 200)

        app = ScriptedApp(handle)
        with wsgi_app_server(app) as origin:
            response = api.http.post("/fn/register", json={"url": origin, "appName": "s", "functions": []})
            assert response.status_code == 401
            api.http.headers["Authorization"] = f"Bearer {signing.hash_signing_key(key)}"
            register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "sig/run"}]})
            run = api.wait_run(api.send("sig/run"))
            assert run["output"] == "signed" and verified == [key]
            raw_auth = {"Authorization": f"Bearer {key}"}
            assert (
                httpx.get(f"{engine.url}/v0/runs/{run['run_id']}/actions", headers=raw_auth).status_code
                == 200
            )
            assert httpx.get(f"{engine.url}/v0/runs/{run['run_id']}/actions").status_code == 401
        api.close()


def test_retry_after_is_clamped_and_timers_fire_on_demand(tmp_path: Path) -> None:
    from eagerstep.engine import ManualClock

    clock = ManualClock()
    calls: list[int] = []

    def handle(
        body: dict[str, Any], headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        calls.append(body["ctx"]["attempt"])
        if body["ctx"]["attempt"] == 0:
            error = json.dumps({"name": "Error", "message": "busy"}).encode()
            return 500, {**SDK_HEADERS, "Retry-After": "0", "X-Inngest-No-Retry": "false"}, error
        return ok("second time lucky", 200)

    with (
        EngineServer(tmp_path / "r.db", clock=clock) as engine,
        wsgi_app_server(ScriptedApp(handle)) as origin,
    ):
        api = EngineClient(engine.url)
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "ra/run"}]})
        event_id = api.send("ra/run")
        wait_for(lambda: api.http.get("/v1/dev/timers").json()["data"])
        timer = api.http.get("/v1/dev/timers").json()["data"][0]
        due = protocol.parse_datetime(timer["due_at"]).timestamp()
        assert timer["kind"] == "call" and due - clock.now() == pytest.approx(1.0, abs=0.01)  # clamped to 1 s
        assert api.runs_of(event_id)[0]["status"] == "Running"
        clock.advance(1.0)
        run = api.wait_run(event_id)
        assert run["output"] == "second time lucky" and calls == [0, 1]
        api.close()


def test_invoke_timeout(api: EngineClient) -> None:
    parent_calls: list[dict[str, Any]] = []
    invoke_id = protocol.hash_step_id("call-child")

    def handle(
        body: dict[str, Any], headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if query["fnId"] == "scripted-fn" and body["event"]["name"] == protocol.EVENT_FUNCTION_INVOKED:
            return ok(
                [{"op": "Sleep", "id": protocol.hash_step_id("zz"), "name": "zz", "opts": {"duration": "1d"}}]
            )
        parent_calls.append(body)
        if invoke_id in body["steps"]:
            return ok(body["steps"][invoke_id], 200)
        opts = {"function_id": "scripted-child", "payload": {"data": {"x": 1}}, "timeout": "1h"}
        return ok([{"op": "InvokeFunction", "id": invoke_id, "name": "call-child", "opts": opts}])

    app = ScriptedApp(handle)
    with wsgi_app_server(app) as origin:
        register(api, origin + "/api", {"slug": "parent", "triggers": [{"event": "iv/run"}]})
        child = {
            "url": origin + "/api",
            "appName": "scripted",
            "functions": [
                {
                    "id": "scripted-parent",
                    "name": "parent",
                    "triggers": [{"event": "iv/run"}],
                    "steps": {"step": {"runtime": {"url": f"{origin}/api?fnId=scripted-parent&stepId=step"}}},
                },
                {
                    "id": "scripted-child",
                    "name": "child",
                    "triggers": [{"event": "iv/never"}],
                    "steps": {"step": {"runtime": {"url": f"{origin}/api?fnId=scripted-fn&stepId=step"}}},
                },
            ],
        }
        assert api.http.post("/fn/register", json=child).status_code == 200
        event_id = api.send("iv/run")
        wait_for(
            lambda: any(t["kind"] == "invoke_timeout" for t in api.http.get("/v1/dev/timers").json()["data"])
        )

        def invoked_calls() -> list[Any]:
            return [c for c in app.calls if c[0]["event"]["name"] == protocol.EVENT_FUNCTION_INVOKED]

        wait_for(lambda: bool(invoked_calls()))  # the child's call may still be in flight
        invoked = invoked_calls()
        meta = invoked[0][0]["event"]["data"]["_inngest"]
        assert meta["fn_id"] == "scripted-child" and meta["correlation_id"].endswith("." + invoke_id)
        assert invoked[0][0]["event"]["data"]["x"] == 1
        assert api.fire_timers(kinds=["invoke_timeout"]) == 1
        run = api.wait_run(event_id)
    assert run["output"]["error"]["name"] == "InngestInvokeTimeoutError"


def test_dashboard_and_cli(
    engine: EngineServer, api: EngineClient, capsys: pytest.CaptureFixture[str]
) -> None:
    from eagerstep.cli import main

    app = ScriptedApp(lambda body, headers, query: ok({"seen": body["event"]["data"]}, 200))
    with wsgi_app_server(app) as origin:
        assert main(["sync", origin + "/api", "--url", engine.url]) == 1  # not an SDK: the PUT fails
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "cli/run"}]})
        capsys.readouterr()
        assert main(["send", "cli/run", "--data", '{"a": 1}', "--url", engine.url]) == 0
        event_id = json.loads(capsys.readouterr().out)["ids"][0]
        run = api.wait_run(event_id)
        assert run["output"] == {"seen": {"a": 1}}
    assert main(["send", "cli/run", "--data", "[1]", "--url", engine.url]) == 2
    assert main(["timers", "fire", "--url", engine.url]) == 0
    page = api.http.get("/")
    assert (
        page.status_code == 200 and "text/html" in page.headers["content-type"] and run["run_id"] in page.text
    )
    detail = api.http.get(f"/runs/{run['run_id']}")
    assert detail.status_code == 200 and "Completed" in detail.text


def test_idempotency_rate_limit_and_singleton(api: EngineClient) -> None:
    release = threading.Event()

    def handle(
        body: dict[str, Any], headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if body["event"]["name"] == "adm/single":
            release.wait(5)
        return ok(body["event"]["data"], 200)

    app = ScriptedApp(handle)
    with wsgi_app_server(app) as origin:
        register(
            api,
            origin + "/a",
            {"slug": "idem", "triggers": [{"event": "adm/idem"}], "idempotency": "event.data.k"},
        )
        register(
            api,
            origin + "/b",
            {"slug": "rate", "triggers": [{"event": "adm/rate"}], "rateLimit": {"limit": 2, "period": "1h"}},
            app="rate",
        )
        register(
            api,
            origin + "/c",
            {"slug": "single", "triggers": [{"event": "adm/single"}], "singleton": {"mode": "skip"}},
            app="single",
        )
        first, again, other = (api.send("adm/idem", {"k": k}) for k in ("x", "x", "y"))
        assert api.wait_run(first)["status"] == api.wait_run(other)["status"] == "Completed"
        assert api.runs_of(again) == []
        rated = [api.send("adm/rate", {"i": i}) for i in range(3)]
        assert [len(api.runs_of(e)) for e in rated] == [1, 1, 0]
        running = api.send("adm/single", {"i": 1})
        skipped = api.send("adm/single", {"i": 2})
        assert api.runs_of(skipped) == []
        release.set()
        assert api.wait_run(running)["status"] == "Completed"


def test_empty_reply_without_pending_work_fails_readably(api: EngineClient) -> None:
    app = ScriptedApp(lambda body, headers, query: ok([]))
    with wsgi_app_server(app) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "empty/run"}], "retries": 1})
        run = api.wait_run(api.send("empty/run"))
    assert run["status"] == "Failed" and "without any op" in run["error"]["message"]
    assert len(app.calls) == 2


def test_sleep_on_the_real_clock(api: EngineClient) -> None:
    nap = protocol.hash_step_id("nap")

    def handle(
        body: dict[str, Any], headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if nap in body["steps"]:
            return ok({"slept": body["steps"][nap]}, 200)
        return ok([{"op": "Sleep", "id": nap, "name": "nap", "opts": {"duration": "300ms"}}])

    app = ScriptedApp(handle)
    with wsgi_app_server(app) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "real/sleep"}]})
        started = time.monotonic()
        run = api.wait_run(api.send("real/sleep"))
        assert time.monotonic() - started >= 0.3
    assert run["output"] == {"slept": None} and run["steps"][0]["op"] == "Sleep"
    assert run["steps"][0]["duration_ms"] >= 300


def test_debounce_and_batch_events(tmp_path: Path) -> None:
    from eagerstep.engine import ManualClock

    clock = ManualClock()
    app = ScriptedApp(lambda body, headers, query: ok([e["data"]["i"] for e in body["events"]], 200))
    with EngineServer(tmp_path / "d.db", clock=clock) as engine, wsgi_app_server(app) as origin:
        api = EngineClient(engine.url)
        register(
            api,
            origin + "/a",
            {"slug": "deb", "triggers": [{"event": "db/e"}], "debounce": {"period": "10s"}},
        )
        batch = {
            "slug": "bat",
            "triggers": [{"event": "bt/e"}],
            "batchEvents": {"maxSize": 3, "timeout": "1m"},
        }
        register(api, origin + "/b", batch, app="batch")
        ids = [api.send("db/e", {"i": i}) for i in range(3)]
        clock.advance(5)
        assert app.calls == [] and all(api.runs_of(e) == [] for e in ids)
        clock.advance(10)
        wait_for(lambda: api.runs_of(ids[-1]))
        assert api.wait_run(ids[-1])["output"] == [2]  # one run, with the last event
        batched = [api.send("bt/e", {"i": i}) for i in range(4)]
        assert api.wait_run(batched[0])["output"] == [0, 1, 2]
        assert api.runs_of(batched[3]) == []
        assert api.fire_timers(kinds=["batch"]) == 1
        assert api.wait_run(batched[3])["output"] == [3]
        api.close()


def test_throttle_delays_starts(tmp_path: Path) -> None:
    from eagerstep.engine import ManualClock

    clock = ManualClock()
    app = ScriptedApp(lambda body, headers, query: ok(body["event"]["data"]["i"], 200))
    with EngineServer(tmp_path / "t.db", clock=clock) as engine, wsgi_app_server(app) as origin:
        api = EngineClient(engine.url)
        throttle = {"limit": 2, "period": "1m"}
        register(api, origin + "/a", {"slug": "thr", "triggers": [{"event": "th/e"}], "throttle": throttle})
        ids = [api.send("th/e", {"i": i}) for i in range(3)]
        assert api.wait_run(ids[0])["output"] == 0 and api.wait_run(ids[1])["output"] == 1
        assert api.runs_of(ids[2])[0]["status"] == "Running" and len(app.calls) == 2
        clock.advance(61)
        assert api.wait_run(ids[2])["output"] == 2
        api.close()
