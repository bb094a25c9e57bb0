"""The FastAPI example end to end: `eagerstep dev` and `uvicorn main:app` as processes, real HTTP."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

HERE = Path(__file__).resolve().parent

pytestmark = [pytest.mark.fastapi, pytest.mark.engine, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def app(engine: Any, serve: Any) -> Any:
    server = serve(
        "fastapi-app",
        lambda port: [
            sys.executable,
            "-m",
            "uvicorn",
            "main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=HERE,
        env={"INNGEST_DEV": engine.url, "PIPELINE_MODEL_LATENCY": "0.001"},
        health_path="/api/inngest",
    )
    functions = engine.sync(server.url + "/api/inngest")
    assert set(functions) == {
        "ai-pipeline-answer-ticket",
        "ai-pipeline-check-policy",
        "ai-pipeline-enrich-standard",
        "ai-pipeline-enrich-checkpointing",
    }
    return server


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = httpx.post(url, json=body, timeout=10)
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def test_ticket_waits_for_approval_then_sends(engine: Any, app: Any) -> None:
    (event_id,) = post(app.url + "/tickets", {"ticket_id": "T-1", "text": "Where is my invoice?"})[
        "event_ids"
    ]
    run = engine.run_of(event_id)
    # The run parks on wait_for_event once the sub-function's result is back.
    engine.wait_run(
        run["run_id"], lambda r: any(t["kind"] == "wait_timeout" for t in engine.timers(r["run_id"]))
    )
    post(app.url + "/tickets/T-1/review", {"approved": True})
    done = engine.wait_run(run["run_id"])

    assert done["status"] == "Completed", done
    assert done["output"]["status"] == "sent"
    assert done["output"]["sent_to"] == "customer-of-T-1"
    assert engine.step_names(done) == [
        "classify",
        "retrieve-context",
        "draft-reply",
        "check-policy",
        "wait-for-approval",
        "send-reply",
    ]
    # The invoked policy check ran as its own run and completed.
    policy_runs = [
        r
        for r in engine.http.get("/v1/runs", params={"limit": 1000}).json()["data"]
        if r["function_id"].endswith("check-policy")
    ]
    assert any(r["status"] == "Completed" and r["output"] == {"ok": True, "flags": []} for r in policy_runs)

    # Per-step latency, as the app shows it.
    (view,) = httpx.get(f"{app.url}/events/{event_id}/runs", timeout=10).json()
    assert view["status"] == "Completed"
    assert [s["step"] for s in view["steps"]] == engine.step_names(done)
    assert all(isinstance(s["ms"], float) for s in view["steps"])


def test_durable_endpoint_answers_through_the_redirect_after_a_failing_step(engine: Any, app: Any) -> None:
    ticket = {"ticket_id": "T-9", "text": "My invoice is wrong"}
    first = httpx.post(f"{app.url}/tickets/T-9/suggest", json=ticket, timeout=30)
    assert first.status_code == 302, first.text  # the lookup failed once: handed to the engine
    final = httpx.get(first.headers["location"], timeout=30)
    assert final.status_code == 201, final.text
    assert final.json() == {
        "ticket_id": "T-9",
        "category": "billing",
        "suggestion": "[gold/billing] Thanks, we are on it.",
    }
    assert httpx.get(f"{app.url}/suggestions/stats").json() == {"model": 1, "lookup": 2, "write": 1}
    again = httpx.post(f"{app.url}/tickets/T-10/suggest", json={**ticket, "ticket_id": "T-10"}, timeout=30)
    assert again.status_code == 201  # the lookup works now: answered in the same request
