"""Recorded traffic between a real Inngest server and the official TS SDK: every line parses with the
shared wire models, and eagerstep answers the recorded call request as the TS SDK did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import eagerstep
from eagerstep.core import protocol
from eagerstep.core.comm import CommHandler
from tests.support.orchestrator import RecordingOrchestrator
from tests.support.requests import request_from_wire

SAMPLES = sorted(Path("/work/shared/wire-samples").glob("*.jsonl"))


def lines() -> list[tuple[str, int, dict[str, Any]]]:
    out = []
    for path in SAMPLES:
        for number, text in enumerate(path.read_text().splitlines(), 1):
            if text.strip():
                out.append((path.name, number, json.loads(text)))
    return out


pytestmark = pytest.mark.skipif(not SAMPLES, reason="wire samples not available")


@pytest.mark.parametrize(("name", "number", "line"), lines() if SAMPLES else [], ids=lambda v: str(v)[:40])
def test_every_line_parses(name: str, number: int, line: dict[str, Any]) -> None:
    url = str(line.get("url", ""))
    raw = line.get("body_raw")
    body = json.loads(raw) if isinstance(raw, str) else line.get("body")
    if url.endswith("/fn/register"):
        register = protocol.parse_register_request(body)
        for fn in register.functions:
            assert fn.runtime_url() and fn.retry_count() >= 0
        assert json.loads(line["response"])["ok"] is True
    elif "/v1/checkpoint/" in url:
        checkpoint = protocol.CheckpointRequest.model_validate(body)
        assert checkpoint.steps and all(op.op in protocol.SYNC_OPCODES for op in checkpoint.steps)
        for op in checkpoint.steps:
            assert op.has_data and op.id == protocol.hash_step_id(op.name or "")
    elif line["direction"] == "server->sdk":
        assert name and number
        call = protocol.CallRequest.model_validate(body)
        assert call.ctx.run_id and call.ctx.fn_id
    else:  # the SDK's reply to the call request
        ops = json.loads(raw) if isinstance(raw, str) else line["body"]
        for op in ops if isinstance(ops, list) else [ops]:
            assert protocol.GeneratorOp.model_validate(op).op in {o.value for o in protocol.Opcode}


def _bench_handler(api: str) -> CommHandler:
    client = eagerstep.Client(app_id="ts-bench-ckpt-on", dev=True, api_base_url=api)

    @client.function(id="bench-run", trigger=eagerstep.Event("bench/run"), retries=0)
    def bench(ctx: eagerstep.Context) -> Any:
        return {"total": sum(ctx.step.run(f"s{i}", lambda i=i: {"i": i})["i"] for i in range(10))}

    return CommHandler(client, [bench], framework="test")


def test_eagerstep_answers_the_recorded_call_like_the_ts_sdk(orchestrator: RecordingOrchestrator) -> None:
    recorded = [line for _, _, line in lines()]
    handler = _bench_handler(orchestrator.url)
    call = next(line for line in recorded if line["direction"] == "server->sdk")
    response = handler.handle(request_from_wire(call))
    assert response.status == 206
    ops = json.loads(response.body)
    run_id = json.loads(call["body_raw"] if "body_raw" in call else json.dumps(call["body"]))["ctx"]["run_id"]
    stored = orchestrator.stored_steps(run_id)
    replied = {op["id"]: op["data"] for op in ops if op["op"] == "StepRun"}
    # Between the checkpoints and the reply, each step arrives once, with the TS SDK's ids and data.
    ts_steps = {
        op["id"]: op["data"]
        for line in recorded
        if "/v1/checkpoint/" in str(line.get("url", ""))
        for op in json.loads(line["body_raw"])["steps"]
    }
    assert {**stored, **replied} == ts_steps
    assert not set(stored) & set(replied)
    ts_reply = json.loads(recorded[-1]["body_raw"])
    assert (
        ops[-1]
        == ts_reply[-1]
        == {"op": "RunComplete", "id": protocol.RUN_COMPLETE_ID, "data": {"total": 45}}
    )


def test_register_payload_matches_the_ts_shape() -> None:
    recorded = [line for _, _, line in lines()]
    register = next(line for line in recorded if str(line.get("url", "")).endswith("/fn/register"))
    ts_fn = register["body"]["functions"][0]
    handler = _bench_handler("http://127.0.0.1:1")
    ours = handler._register_payload(handler.client.settings, register["body"]["url"])
    assert ours["functions"][0] == ts_fn
    assert set(ours) >= {"url", "deployType", "framework", "appName", "functions", "sdk", "v", "capabilities"}
