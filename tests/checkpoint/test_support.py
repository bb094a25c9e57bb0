"""The test support pieces: recording orchestrator, call-request builder, call-loop driver."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from eagerstep.core.comm import Request, Response
from eagerstep.core.protocol import CallRequest, CheckpointRequest, hash_step_id
from eagerstep.core.signing import hash_signing_key, verify
from tests.support.driver import DriveError, check_reply_rules, drive, drive_async, parse_ops
from tests.support.orchestrator import RecordingOrchestrator, unused_url
from tests.support.requests import call_request, function_uuid, request_from_wire

WIRE = Path("/work/shared/wire-samples/ts-4.24-checkpointing-run.jsonl")
KEY = "signkey-test-12345678"
KEY2 = "signkey-test-abcdef01"


def _wire() -> list[dict[str, Any]]:
    if not WIRE.exists():
        pytest.skip("wire samples not available")
    return [json.loads(line) for line in WIRE.read_text().splitlines() if line.strip()]


def _op(name: str, data: Any, op: str = "StepRun") -> dict[str, Any]:
    return {"op": op, "id": hash_step_id(name), "name": name, "displayName": name, "data": data}


def _checkpoint(client: httpx.Client, url: str, run_id: str, ops: list[dict[str, Any]]) -> httpx.Response:
    body = {"run_id": run_id, "fn_id": "f", "qi_id": "q", "steps": ops, "generation_id": 1}
    return client.post(f"{url}/v1/checkpoint/{run_id}/async", json=body, timeout=2)


def test_checkpoints_store_once_and_count_duplicates(orchestrator: RecordingOrchestrator) -> None:
    with httpx.Client() as client:
        assert (
            _checkpoint(client, orchestrator.url, "r1", [_op("a", 1), _op("b", {"x": 2})]).status_code == 200
        )
        assert _checkpoint(client, orchestrator.url, "r1", [_op("a", 99)]).status_code == 200
        assert _checkpoint(client, orchestrator.url, "r1", [_op("s", None, "Sleep")]).status_code == 400
    stored = orchestrator.stored_steps("r1")
    assert stored == {hash_step_id("a"): 1, hash_step_id("b"): {"x": 2}}
    assert list(stored) == [hash_step_id("a"), hash_step_id("b")]
    assert stored.duplicates == {hash_step_id("a"): 1}
    assert [c.status for c in orchestrator.checkpoint_calls("r1")] == [200, 200, 400]
    assert orchestrator.stored_steps("unknown") == {}


def test_faults_status_times_delay_drop_and_down(orchestrator: RecordingOrchestrator) -> None:
    orchestrator.fail("/v1/checkpoint", status=500, times=1)
    orchestrator.fail("/v1/checkpoint/slow", status=None, delay=1.0)
    orchestrator.fail("/v1/checkpoint/gone", drop=True)
    with httpx.Client() as client:
        assert _checkpoint(client, orchestrator.url, "r", [_op("a", 1)]).status_code == 500
        assert _checkpoint(client, orchestrator.url, "r", [_op("a", 1)]).status_code == 200
        with pytest.raises(httpx.TimeoutException):
            client.post(f"{orchestrator.url}/v1/checkpoint/slow/async", json={}, timeout=0.2)
        with pytest.raises(httpx.TransportError):
            _checkpoint(client, orchestrator.url, "gone", [_op("a", 1)])
        # keep-alive connections do not survive a stop: the orchestrator is really down
        orchestrator.clear_faults()
        assert _checkpoint(client, orchestrator.url, "r", [_op("b", 1)]).status_code == 200
        orchestrator.stop()
        with pytest.raises(httpx.TransportError):
            _checkpoint(client, orchestrator.url, "r", [_op("c", 1)])
        orchestrator.start()
        assert _checkpoint(client, orchestrator.url, "r", [_op("c", 1)]).status_code == 200
    assert list(orchestrator.stored_steps("r")) == [hash_step_id(n) for n in "abc"]
    with httpx.Client() as client, pytest.raises(httpx.ConnectError):
        client.get(unused_url(), timeout=1)


def test_register_events_state_and_auth() -> None:
    with RecordingOrchestrator(signing_keys=[KEY]) as orch, httpx.Client(base_url=orch.url) as client:
        good = {"Authorization": f"Bearer {hash_signing_key(KEY)}"}
        assert client.post("/fn/register", json={"url": "u", "appName": "a"}).status_code == 401
        bad = client.post("/fn/register", json={"url": "u"}, headers=good)
        assert bad.status_code == 400
        ok = client.post("/fn/register", json={"url": "u", "appname": "a", "functions": []}, headers=good)
        assert ok.status_code == 200 and ok.json()["ok"] is True
        raw_key_ok = client.post(
            "/fn/register", json={"url": "u", "appName": "a"}, headers={"Authorization": f"Bearer {KEY}"}
        )
        assert raw_key_ok.status_code == 200 and raw_key_ok.json()["modified"] is True
        assert ok.headers["x-inngest-server-kind"] == "dev"
        sent = client.post("/e/key", json=[{"name": "a/b", "data": {"x": 1}}, {"name": "a/c", "id": "e2"}])
        assert sent.json()["status"] == 200 and sent.json()["ids"][1] == "e2"
        assert [e["name"] for e in orch.events] == ["a/b", "a/c"]
        assert client.get("/v0/runs/r9/actions", headers=good).status_code == 404
        orch.seed_run("r9", events=[{"name": "a/b"}], steps={"h": {"data": 1}})
        assert client.get("/v0/runs/r9/actions", headers=good).json() == {"h": {"data": 1}}
        assert client.get("/v0/runs/r9/batch", headers=good).json() == [{"name": "a/b"}]
        assert [c.path for c in orch.calls_to("/v0/")] == ["/v0/runs/r9/actions"] * 2 + ["/v0/runs/r9/batch"]


def test_call_request_is_built_like_a_server_builds_it() -> None:
    memos = {hash_step_id("a"): {"data": 1}}
    request = call_request("app-fn", steps=memos, attempt=2, signing_key=KEY, run_id="R1", generation_id=3)
    assert request.method == "POST"
    assert request.query == {"fnId": "app-fn", "stepId": "step"}
    assert request.url.startswith("http://127.0.0.1:8000/api/inngest?fnId=app-fn&stepId=step")
    assert request.header("X-Run-ID") == "R1" and request.header("x-inngest-generation-id") == "3"
    assert verify(request.header("x-inngest-signature"), request.body, [KEY]) == KEY
    parsed = CallRequest.model_validate_json(request.body)
    assert parsed.ctx.fn_id == function_uuid("app-fn") and parsed.ctx.qi_id
    assert parsed.ctx.attempt == 2 and parsed.ctx.stack is not None
    assert parsed.ctx.stack.stack == [hash_step_id("a")] and parsed.steps == memos
    assert parsed.event["user"] == {} and parsed.events == [parsed.event]
    plain = CallRequest.model_validate_json(call_request("app-fn", internal_fn_id=None, qi_id=None).body)
    assert plain.ctx.fn_id is None and plain.ctx.qi_id is None


def test_wire_samples_round_trip(orchestrator: RecordingOrchestrator) -> None:
    lines = _wire()
    call = request_from_wire(lines[1])
    recorded = CallRequest.model_validate_json(call.body)
    assert call.query == {"fnId": "ts-bench-ckpt-on-bench-run", "stepId": "step"}
    assert recorded.ctx.fn_id and recorded.ctx.qi_id and recorded.ctx.generation_id == 1
    ours = call_request(
        "ts-bench-ckpt-on-bench-run",
        event=recorded.event,
        run_id=recorded.ctx.run_id,
        internal_fn_id=recorded.ctx.fn_id,
        qi_id=recorded.ctx.qi_id,
        request_id=recorded.ctx.request_id,
        job_id=recorded.ctx.job_id,
        max_attempts=1,
        url="http://127.0.0.1:3002/api/inngest",
    )
    assert json.loads(ours.body) == json.loads(call.body)
    for name in (
        "x-inngest-generation-id",
        "x-inngest-job-id",
        "x-inngest-req-version",
        "x-inngest-step-id",
        "x-request-id",
        "x-run-id",
        "content-type",
    ):
        assert ours.header(name) == call.header(name), name
    # the SDK's ten checkpoints, replayed against the recording orchestrator
    with httpx.Client() as client:
        for line in lines[2:12]:
            body = CheckpointRequest.model_validate_json(line["body_raw"])
            assert body.run_id == recorded.ctx.run_id
            url = line["url"].replace("http://127.0.0.1:8288", orchestrator.url)
            reply = client.post(url, content=line["body_raw"], headers={"content-type": "application/json"})
            assert reply.status_code == 200 and reply.content == b""
    stored = orchestrator.stored_steps(recorded.ctx.run_id)
    assert stored == {hash_step_id(f"s{i}"): {"i": i} for i in range(10)}
    sdk_reply = Response(lines[12]["status"], dict(lines[12]["headers"]), lines[12]["body_raw"].encode())
    assert parse_ops(sdk_reply) == [
        {"op": "RunComplete", "id": hash_step_id("complete"), "data": {"total": 45}}
    ]


class _ToySDK:
    """A tiny standard-mode SDK: steps a, b (fails once), a sleep, then a 2-way parallel group."""

    def __init__(self) -> None:
        self.calls = 0
        self.b_failures = 0

    def handle(self, request: Request) -> Response:
        self.calls += 1
        body = json.loads(request.body)
        memos, target = body["steps"], request.query["stepId"]

        def run(name: str, value: Any) -> Response:
            return Response(206, {}, json.dumps([_op(name, value)]).encode())

        ids = {n: hash_step_id(n) for n in ("a", "b", "nap", "p1", "p2")}
        if target != "step":
            name = next(n for n, h in ids.items() if h == target)
            assert body["ctx"]["disable_immediate_execution"] is True
            return run(name, name.upper())
        if ids["a"] not in memos:
            return run("a", 1)
        if ids["b"] not in memos:
            if body["ctx"]["attempt"] == 0:
                self.b_failures += 1
                err = {
                    "op": "StepError",
                    "id": ids["b"],
                    "error": {"name": "Error", "message": "boom"},
                    "data": None,
                }
                return Response(206, {"X-Inngest-No-Retry": "false"}, json.dumps([err]).encode())
            return run("b", 2)
        if ids["nap"] not in memos:
            return Response(
                206, {}, json.dumps([{"op": "Sleep", "id": ids["nap"], "name": "nap", "data": None}]).encode()
            )
        if ids["p1"] not in memos or ids["p2"] not in memos:
            plan = [
                {"op": "StepPlanned", "id": ids[n], "name": n, "data": None}
                for n in ("p1", "p2")
                if ids[n] not in memos
            ]
            return Response(206, {}, json.dumps(plan).encode())
        total = memos[ids["a"]]["data"] + memos[ids["b"]]["data"]
        return Response(200, {}, json.dumps({"total": total, "p": [memos[ids["p1"]]["data"]]}).encode())


def test_driver_plays_the_call_loop() -> None:
    sdk = _ToySDK()
    result = drive(sdk.handle, "app-toy")
    assert result.completed and result.output == {"total": 3, "p": ["P1"]}
    # a, b (error), b retry, sleep, plan, p1, p2, final discovery
    assert result.invocations == 8 and sdk.b_failures == 1
    attempts = [json.loads(r.body)["ctx"]["attempt"] for r in result.requests]
    assert attempts == [0, 0, 1, 0, 0, 0, 0, 0]
    assert [r.query["stepId"] for r in result.requests][5:7] == [hash_step_id("p1"), hash_step_id("p2")]
    assert json.loads(result.requests[-1].body)["ctx"]["disable_immediate_execution"] is False


async def test_driver_async_and_function_errors() -> None:
    async def failing(request: Request) -> Response:
        return Response(500, {"X-Inngest-No-Retry": "false"}, b'{"name":"Error","message":"x"}')

    result = await drive_async(failing, "app-f", max_attempts=3)
    assert result.status == "failed" and result.error["message"] == "x" and result.invocations == 3

    async def final(request: Request) -> Response:
        return Response(400, {"X-Inngest-No-Retry": "true"}, b'{"name":"Error","message":"no"}')

    result = await drive_async(final, "app-f")
    assert result.status == "failed" and result.invocations == 1


def test_driver_merges_checkpointed_steps(orchestrator: RecordingOrchestrator) -> None:
    seen: list[dict[str, Any]] = []

    def handle(request: Request) -> Response:
        body = json.loads(request.body)
        seen.append(body)
        if not body["steps"]:
            with httpx.Client() as client:
                _checkpoint(client, orchestrator.url, body["ctx"]["run_id"], [_op("a", 1), _op("b", 2)])
            ops = [{"op": "Sleep", "id": hash_step_id("z"), "name": "z", "data": None}]
            return Response(206, {}, json.dumps(ops).encode())
        return Response(206, {}, json.dumps([{"op": "RunComplete", "id": "c", "data": "ok"}]).encode())

    result = drive(handle, "app-m", orchestrator=orchestrator)
    assert result.output == "ok" and result.invocations == 2
    assert seen[1]["ctx"]["stack"]["stack"] == [hash_step_id("a"), hash_step_id("b"), hash_step_id("z")]
    assert seen[1]["steps"][hash_step_id("z")] is None


def test_driver_enforces_the_servers_reply_rules(orchestrator: RecordingOrchestrator) -> None:
    """Every reply the driver receives is held to the real server's rules (protocol.md §3.3a/b)."""
    sleep = {"op": "Sleep", "id": hash_step_id("z"), "name": "z", "data": None}

    def replying(ops: list[dict[str, Any]], *, checkpoint: bool = False) -> Any:
        def handle(request: Request) -> Response:
            if checkpoint:
                run_id = json.loads(request.body)["ctx"]["run_id"]
                with httpx.Client() as client:
                    _checkpoint(client, orchestrator.url, run_id, [_op("a", 1)])
            return Response(206, {}, json.dumps(ops).encode())

        return handle

    # an op without "data"
    with pytest.raises(DriveError, match='no "data" key'):
        drive(replying([{"op": "Sleep", "id": hash_step_id("z"), "name": "z"}]), "app-m")
    # a step already confirmed by checkpoint, sent again ahead of the final op
    with pytest.raises(DriveError, match="already confirmed by checkpoint"):
        drive(replying([_op("a", 1), sleep], checkpoint=True), "app-m", orchestrator=orchestrator)
    # two results in one reply: a parallel group to the server
    with pytest.raises(DriveError, match="not a parallel plan"):
        drive(replying([sleep, {"op": "RunComplete", "id": "c", "data": 1}]), "app-m")
    # allowed: a parallel plan; unconfirmed steps ahead of the final op (checkpoint failed for good)
    plan = [{**sleep, "op": "StepPlanned"}, {**sleep, "id": hash_step_id("y")}]
    check_reply_rules(plan)
    check_reply_rules([_op("b", 2), {"op": "RunComplete", "id": "c", "data": 1}], confirmed={})
