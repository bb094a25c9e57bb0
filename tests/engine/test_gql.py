"""``POST /v0/gql``: the queries the official SDKs' test harnesses send to a dev server, answered
from the engine's state (scripted apps on loopback, as in test_api)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from eagerstep.core import protocol
from tests.engine.helpers import EngineClient, wait_for, wsgi_app_server
from tests.engine.test_api import SDK_HEADERS, ScriptedApp, api, engine, ok, register

__all__ = ["api", "engine"]  # fixtures

pytestmark = [pytest.mark.engine, pytest.mark.timeout(30)]

RUN_QUERY = """
query GetRun($run_id: String!) {
    run(runID: $run_id) { output status }
    runTrigger(runID: $run_id) { payloads }
}
"""
TRACE_QUERY = """
query GetHistory($run_id: String!) {
    run(runID: $run_id) { trace { childrenSpans { name outputID } } }
}
"""
OUTPUT_QUERY = """
query GetOutput($output_id: String!) {
    runTraceSpanOutputByID(outputID: $output_id) { data error { message name stack } }
}
"""
EVENT_QUERY = """
query GetRunFromEventID($event_id: ID!) {
    event(query: {eventId: $event_id}) { functionRuns { id } }
}
"""


def gql(api: EngineClient, query: str, **variables: Any) -> dict[str, Any]:
    response = api.http.post("/v0/gql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def test_run_status_output_trigger_and_step_outputs(api: EngineClient) -> None:
    a, b = protocol.hash_step_id("a"), protocol.hash_step_id("b")

    def handle(
        body: dict[str, Any], headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        steps = body["steps"]
        if a not in steps:
            return ok([protocol.step_run_op(a, "a", {"n": 1})])
        if b not in steps:
            error = {"name": "ValueError", "message": "bad b", "stack": "trace"}
            return ok([{"op": "StepFailed", "id": b, "name": "b", "error": error}])
        return ok({"done": True}, 200)

    with wsgi_app_server(ScriptedApp(handle)) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "g/run"}]})
        event_id = api.send("g/run", {"x": 1})
        runs = wait_for(lambda: gql(api, EVENT_QUERY, event_id=event_id)["event"]["functionRuns"])
        run_id = runs[0]["id"]
        wait_for(lambda: gql(api, RUN_QUERY, run_id=run_id)["run"]["status"] == "COMPLETED")

    data = gql(api, RUN_QUERY, run_id=run_id)
    assert json.loads(data["run"]["output"]) == {"done": True}
    event = json.loads(data["runTrigger"]["payloads"][0])
    assert event["id"] == event_id and event["data"] == {"x": 1}

    spans = gql(api, TRACE_QUERY, run_id=run_id)["run"]["trace"]["childrenSpans"]
    assert [s["name"] for s in spans] == ["a", "b"]
    out_a = gql(api, OUTPUT_QUERY, output_id=spans[0]["outputID"])["runTraceSpanOutputByID"]
    assert out_a == {"data": json.dumps({"n": 1}, separators=(",", ":")), "error": None}
    out_b = gql(api, OUTPUT_QUERY, output_id=spans[1]["outputID"])["runTraceSpanOutputByID"]
    assert out_b == {"data": None, "error": {"message": "bad b", "name": "ValueError", "stack": "trace"}}


def test_failed_run_output_is_its_error(api: EngineClient) -> None:
    def handle(
        body: dict[str, Any], headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        error = {"name": "NonRetriableError", "message": "nope", "stack": "s"}
        return 400, {**SDK_HEADERS, "X-Inngest-No-Retry": "true"}, json.dumps(error).encode()

    with wsgi_app_server(ScriptedApp(handle)) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "g/fail"}]})
        event_id = api.send("g/fail")
        run_id = wait_for(lambda: api.runs_of(event_id))[0]["run_id"]
        wait_for(lambda: gql(api, RUN_QUERY, run_id=run_id)["run"]["status"] == "FAILED")
    output = json.loads(gql(api, RUN_QUERY, run_id=run_id)["run"]["output"])
    assert output["name"] == "NonRetriableError" and output["message"] == "nope"


def test_unknown_ids_and_bad_queries(api: EngineClient) -> None:
    assert gql(api, RUN_QUERY.replace("runTrigger(runID: $run_id) { payloads }", ""), run_id="nope") == {
        "run": None
    }
    assert gql(api, EVENT_QUERY, event_id="nope") == {"event": None}
    response = api.http.post("/v0/gql", json={"query": OUTPUT_QUERY, "variables": {"output_id": "x"}})
    assert response.status_code == 200 and "not found" in response.json()["errors"][0]["message"]
    response = api.http.post("/v0/gql", json={"query": "{ run(runID: 1) { nosuchfield } }"})
    assert response.status_code == 422 and response.json()["errors"]
    response = api.http.post("/v0/gql", json={"variables": {}})
    assert response.status_code == 400 and "query" in response.json()["errors"][0]["message"]
    response = api.http.post("/v0/gql", content=b"{not json")
    assert response.status_code == 400


def test_the_fields_docs_engine_md_lists(api: EngineClient) -> None:
    def handle(
        body: dict[str, Any], headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        a = protocol.hash_step_id("a")
        if a not in body["steps"]:
            return ok([protocol.step_run_op(a, "a", 1)])
        return ok(2, 200)

    with wsgi_app_server(ScriptedApp(handle)) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "g/docs"}]})
        event_id = api.send("g/docs")
        run_id = api.wait_run(event_id)["run_id"]
    query = """
    query($id: String!, $run: ID!, $event: ID!) {
      run(runID: $id) {
        id status output queuedAt startedAt endedAt eventName triggerIDs functionID
        trace { name status childrenSpans { name status stepOp outputID startedAt endedAt duration } }
      }
      runTrigger(runID: $id) { eventName IDs payloads timestamp isBatch }
      event(query: {eventId: $event}) { id name createdAt raw functionRuns { id status output } }
      functionRun(query: {functionRunId: $run}) { id status output eventID }
      runTrace(runID: $id) { isRoot }
      functions { slug name }
    }
    """
    data = gql(api, query, id=run_id, run=run_id, event=event_id)
    run = data["run"]
    assert run["status"] == "COMPLETED" and run["output"] == "2" and run["triggerIDs"] == [event_id]
    assert run["trace"]["status"] == "COMPLETED"
    [span] = run["trace"]["childrenSpans"]
    assert span["name"] == "a" and span["status"] == "COMPLETED" and span["stepOp"] == "RUN"
    assert data["runTrigger"]["IDs"] == [event_id] and data["runTrigger"]["isBatch"] is False
    assert data["event"]["functionRuns"] == [{"id": run_id, "status": "COMPLETED", "output": "2"}]
    assert data["functionRun"]["eventID"] == event_id and data["runTrace"]["isRoot"] is True
    assert {"slug": "scripted-fn", "name": "fn"} in data["functions"]
