"""The engine's sync-run API (durable endpoints) spoken to directly, as any SDK would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ulid import ULID

from eagerstep.core import protocol
from eagerstep.engine import EngineServer
from tests.engine.helpers import wait_for, wsgi_app_server

pytestmark = [pytest.mark.engine, pytest.mark.timeout(30)]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineServer]:
    server = EngineServer(tmp_path / "engine.db", retry_interval=0.01)
    server.start()
    yield server
    server.stop()


def _event(domain: str = "http://127.0.0.1:9", **data: Any) -> dict[str, Any]:
    return {
        "name": "inngest/http.request",
        "data": {"domain": domain, "method": "POST", "path": "/pay", "fn": "", "body": "{}", **data},
    }


def _step(name: str, data: Any) -> dict[str, Any]:
    return {"op": "StepRun", "id": protocol.hash_step_id(name), "name": name, "data": data}


def _complete(status: int, body: str = "ok") -> dict[str, Any]:
    return {
        "op": "RunComplete",
        "id": protocol.RUN_COMPLETE_ID,
        "data": {"status": status, "headers": {}, "body": body},
    }


def _create(engine: EngineServer, steps: list[dict[str, Any]], **event: Any) -> httpx.Response:
    body = {"run_id": str(ULID()), "event": _event(**event), "steps": steps}
    return httpx.post(f"{engine.url}/v1/checkpoint", json=body)


def test_ids_are_deterministic_and_the_token_comes_with_steps(engine: EngineServer) -> None:
    first = _create(engine, [])
    second = _create(engine, [_step("a", 1)])
    assert first.status_code == second.status_code == 200
    one, two = first.json()["data"], second.json()["data"]
    assert (one["app_id"], one["fn_id"]) == (two["app_id"], two["fn_id"])
    assert "token" not in one and two["token"] and two["realtime_token"]
    other = _create(engine, [], fn="checkout")
    assert other.json()["data"]["fn_id"] != one["fn_id"]
    assert other.json()["data"]["app_id"] == one["app_id"]
    assert set(second.json()["metadata"]) == {"fetched_at"}


@pytest.mark.parametrize(
    "body",
    [
        {"run_id": "not-a-ulid", "event": _event(), "steps": []},
        {"run_id": str(ULID()), "event": {"name": "x", "data": {"domain": "nope", "method": "GET"}}},
        {"run_id": str(ULID()), "event": _event(), "steps": {"op": "StepRun"}},
        {"run_id": str(ULID()), "event": _event(), "steps": [{"op": 3}]},
    ],
    ids=["run-id", "domain", "steps-shape", "op-shape"],
)
def test_bad_create_bodies_get_400(engine: EngineServer, body: dict[str, Any]) -> None:
    response = httpx.post(f"{engine.url}/v1/checkpoint", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]


def test_an_existing_run_gets_409_and_an_unknown_one_404(engine: EngineServer) -> None:
    run_id = str(ULID())
    body = {"run_id": run_id, "event": _event(), "steps": [_step("a", 1)]}
    assert httpx.post(f"{engine.url}/v1/checkpoint", json=body).status_code == 200
    assert httpx.post(f"{engine.url}/v1/checkpoint", json=body).status_code == 409
    missing = httpx.post(f"{engine.url}/v1/checkpoint/{ULID()}/steps", json={"steps": [_step("b", 2)]})
    assert missing.status_code == 404


def test_a_failing_status_fails_the_run_and_the_output_serves_it(engine: EngineServer) -> None:
    created = _create(engine, [_step("a", 1)]).json()["data"]
    run_id, token = created["run_id"], created["token"]
    steps = httpx.post(f"{engine.url}/v1/http/runs/{run_id}/steps", json={"steps": [_complete(503, "down")]})
    assert steps.status_code == 200
    run = httpx.get(f"{engine.url}/v1/runs/{run_id}").json()["data"]
    assert run["status"] == "Failed"
    output = httpx.get(f"{engine.url}/v1/checkpoint/{run_id}/output", params={"token": token})
    assert (output.status_code, output.text) == (503, "down")
    page = httpx.get(f"{engine.url}/runs/{run_id}")  # the dashboard shows it like any run
    assert page.status_code == 200 and run_id in page.text


def test_output_tokens_are_checked(engine: EngineServer) -> None:
    one = _create(engine, [_step("a", 1)]).json()["data"]
    two = _create(engine, [_step("a", 1)]).json()["data"]
    url = f"{engine.url}/v1/checkpoint/{one['run_id']}/output"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, params={"token": two["token"]}).status_code == 401
    assert httpx.get(url, params={"token": one["realtime_token"]}).status_code == 401
    engine.engine.endpoints.output_wait = 0.05
    running = httpx.get(url, params={"token": one["token"]})
    assert running.status_code == 200 and running.json()["status"] == "running"


def test_reentry_calls_the_endpoint_with_the_original_request(engine: EngineServer) -> None:
    seen: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        seen.append(
            {
                "method": environ["REQUEST_METHOD"],
                "path": environ["PATH_INFO"],
                "query": environ["QUERY_STRING"],
                "type": environ.get("CONTENT_TYPE"),
                "body": raw,
                "run": environ.get("HTTP_X_RUN_ID"),
            }
        )
        start_response("200 OK", [("Content-Type", "application/json"), ("X-Inngest-SDK", "scripted:v1")])
        if len(seen) == 1:
            return [b'"not ops"']  # a 2xx answer that is not an op array: a final failure
        return [b""]

    with wsgi_app_server(app) as origin:
        error = {"name": "Error", "message": "boom"}
        step_error = {"op": "StepError", "id": protocol.hash_step_id("a"), "name": "a", "error": error}
        created = _create(
            engine,
            [step_error],
            domain=origin,
            method="PUT",
            query_params="a=1",
            content_type="text/csv",
            body="x,y",
        ).json()["data"]
        run_id = created["run_id"]
        wait_for(lambda: httpx.get(f"{engine.url}/v1/runs/{run_id}").json()["data"]["status"] != "Running")
    assert seen == [
        {"method": "PUT", "path": "/pay", "query": "a=1", "type": "text/csv", "body": b"x,y", "run": run_id}
    ]
    run = httpx.get(f"{engine.url}/v1/runs/{run_id}").json()["data"]
    assert run["status"] == "Failed"
    assert "without ops" in run["error"]["message"]


def test_a_sync_run_that_never_reports_its_response_fails(engine: EngineServer) -> None:
    engine.engine.endpoints.sync_timeout = 0.1
    run_id = _create(engine, [_step("a", 1)]).json()["data"]["run_id"]
    wait_for(lambda: httpx.get(f"{engine.url}/v1/runs/{run_id}").json()["data"]["status"] == "Failed")
    error = httpx.get(f"{engine.url}/v1/runs/{run_id}").json()["data"]["error"]
    assert error["name"] == "SyncRunTimeout"


def test_a_run_gone_async_loses_the_sync_timeout(engine: EngineServer) -> None:
    engine.engine.endpoints.sync_timeout = 0.5
    sleep = {"op": "Sleep", "id": protocol.hash_step_id("nap"), "name": "nap", "opts": {"duration": "1h"}}
    run_id = _create(engine, [_step("a", 1), sleep]).json()["data"]["run_id"]
    kinds = [
        t["kind"] for t in httpx.get(f"{engine.url}/v1/dev/timers").json()["data"] if t["run_id"] == run_id
    ]
    assert kinds == ["sleep"]


@pytest.mark.parametrize("coalesced", [True, False], ids=["two-steps-in-one-call", "one-step-per-call"])
def test_several_steps_in_one_sync_checkpoint_make_reentries_plan(
    engine: EngineServer, coalesced: bool
) -> None:
    # The server's CheckpointSyncSteps: more than one non-lazy op in a checkpoint is parallel mode,
    # StepRuns included, so the run's next call carries X-Inngest-Force-Step-Plan.
    forced: list[str | None] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        forced.append(environ.get("HTTP_X_INNGEST_FORCE_STEP_PLAN"))
        start_response("200 OK", [("Content-Type", "application/json"), ("X-Inngest-SDK", "scripted:v1")])
        return [protocol.dumps([_complete(200)]).encode()]

    error = {"name": "Error", "message": "boom"}
    step_error = {"op": "StepError", "id": protocol.hash_step_id("c"), "name": "c", "error": error}
    with wsgi_app_server(app) as origin:
        first = [_step("a", 1), _step("b", 2)] if coalesced else [_step("a", 1)]
        created = _create(engine, first, domain=origin).json()["data"]
        run_id = created["run_id"]
        later = [step_error] if coalesced else [_step("b", 2)]
        body = {"run_id": run_id, "fn_id": created["fn_id"], "app_id": created["app_id"], "steps": later}
        assert httpx.post(f"{engine.url}/v1/checkpoint/{run_id}/steps", json=body).status_code == 200
        if not coalesced:
            body["steps"] = [step_error]
            assert httpx.post(f"{engine.url}/v1/checkpoint/{run_id}/steps", json=body).status_code == 200
        wait_for(lambda: httpx.get(f"{engine.url}/v1/runs/{run_id}").json()["data"]["status"] != "Running")
    assert httpx.get(f"{engine.url}/v1/runs/{run_id}").json()["data"]["status"] == "Completed"
    assert forced == (["true"] if coalesced else [None])
