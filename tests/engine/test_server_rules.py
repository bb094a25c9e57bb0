"""The engine applies a real Inngest server's rules to replies and checkpoints (protocol.md §3.3b), so
that our own tests see what production would. Each test names the server code it mirrors
(inngest/inngest at 253303cd)."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from eagerstep.core import protocol
from eagerstep.engine import EngineServer
from tests.engine.helpers import EngineClient, wait_for, wsgi_app_server
from tests.engine.test_api import ScriptedApp, api, engine, ok, register

__all__ = ["api", "engine"]  # fixtures shared with test_api

pytestmark = [pytest.mark.engine, pytest.mark.timeout(30)]

H = protocol.hash_step_id


def step_run(name: str, data: Any) -> dict[str, Any]:
    return protocol.step_run_op(H(name), name, data)


def planned(name: str) -> dict[str, Any]:
    return protocol.step_planned_op(H(name), name)


# ------------------------------------------------------------------ POST /v1/checkpoint/{run}/async


def test_async_checkpoint_accepts_only_what_the_server_stores(
    engine: EngineServer, api: EngineClient
) -> None:
    """``pkg/execution/checkpoint/checkpoint.go`` ``checkpointAsyncSteps``: an async op is refused
    ("cannot checkpoint async steps"); of the sync ops only StepRun/Step/StepPlanned/DeferAdd/
    DeferAbort are stored, anything else falls to "cannot checkpoint opcode" — all 400
    (``pkg/api/apiv1/checkpoint.go``), and a refused call stores nothing."""
    answers: dict[str, httpx.Response] = {}
    release = threading.Event()

    def handle(body: dict[str, Any], headers: dict[str, str], query: dict[str, str]) -> Any:
        ctx = body["ctx"]
        url = f"{engine.url}/v1/checkpoint/{ctx['run_id']}/async"
        base = {"run_id": ctx["run_id"], "fn_id": ctx["fn_id"], "qi_id": ctx["qi_id"], "generation_id": 1}
        cases = {
            "RunComplete": [step_run("x", 1), protocol.run_complete_op("done")],
            "StepFailed": [
                protocol.step_error_op(H("f"), "f", {"name": "Error", "message": "m"}, final=True)
            ],
            "StepError": [
                protocol.step_error_op(H("e"), "e", {"name": "Error", "message": "m"}, final=False)
            ],
            "Sleep": [protocol.sleep_op(H("z"), "z", "1s")],
            "SyncRunComplete": [{"op": "SyncRunComplete", "id": H("c"), "data": None}],
            "accepted": [step_run("a", 1), planned("b"), {"op": "DeferAdd", "id": H("d"), "data": None}],
        }
        for name, steps in cases.items():
            answers[name] = httpx.post(url, json={**base, "steps": steps})
        release.wait(10)
        return ok([protocol.run_complete_op("done")])

    app = ScriptedApp(handle)
    with wsgi_app_server(app) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "r/run"}]})
        event_id = api.send("r/run")
        wait_for(lambda: "accepted" in answers)
        release.set()
        run = api.wait_run(event_id)
    assert answers["accepted"].status_code == 200 and answers["accepted"].content == b""
    for name in ("RunComplete", "StepFailed", "SyncRunComplete"):
        assert answers[name].status_code == 400, name
        assert answers[name].json()["error"].startswith(f"cannot checkpoint opcode: {name}")
    for name in ("StepError", "Sleep"):
        assert answers[name].status_code == 400, name
        assert answers[name].json()["error"] == f"cannot checkpoint async steps (got op {name})"
    # only the accepted call stored anything: "x" rode with a refused RunComplete and is not there
    assert run["status"] == "Completed" and [s["name"] for s in run["steps"]] == ["a"]


# ------------------------------------------------------------------ a reply with several ops


def test_several_ops_in_a_reply_are_a_parallel_group(engine: EngineServer, api: EngineClient) -> None:
    """``pkg/execution/executor/executor.go`` ``HandleGeneratorResponse``: more than one non-lazy op
    sets ForceStepPlan and handles each op on its own: each StepRun schedules its own discovery
    (``handleGeneratorStep`` → ``maybeEnqueueDiscoveryStep``), and those discoveries carry
    ``disable_immediate_execution: true``, so the SDK plans its next step instead of running it.
    ForceStepPlan ends when a later reply schedules discovery (``maybeResetForceStepPlan``)."""
    a, b, c = H("a"), H("b"), H("c")
    seen: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def handle(body: dict[str, Any], headers: dict[str, str], query: dict[str, str]) -> Any:
        steps, step_id = body["steps"], query["stepId"]
        planning = body["ctx"]["disable_immediate_execution"]
        with lock:
            seen.append((step_id, planning))
        if step_id == c:
            return ok([step_run("c", 3)])
        if a not in steps:  # the old final reply: two results in one 206
            return ok([step_run("a", 1), step_run("b", 2)])
        if c not in steps:
            return ok([planned("c")] if planning else [step_run("c", 3)])
        return ok({"total": 6}, status=200)

    app = ScriptedApp(handle)
    with wsgi_app_server(app) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "p/run"}]})
        event_id = api.send("p/run")
        run = api.wait_run(event_id)
    assert run["status"] == "Completed" and run["output"] == {"total": 6}
    assert sorted(s["name"] for s in run["steps"]) == ["a", "b", "c"]
    assert seen[0] == ("step", False)
    # each of the two StepRuns scheduled a discovery, and both plan instead of running
    assert seen[1:3] == [("step", True), ("step", True)]
    assert [call for call in seen if call[0] == c] == [(c, True)]  # planned once (same job id)
    assert seen[-1] == ("step", False)  # the group drained: immediate execution again
    assert engine.engine.stats["parallel_replies"] == 1
    assert b in api.http.get(f"/v0/runs/{run['run_id']}/actions").json()


def test_one_op_per_reply_keeps_immediate_execution(engine: EngineServer, api: EngineClient) -> None:
    """A reply of one op (lazy ops aside) is not a group: the next discovery runs immediately, and
    a repeated StepPlanned for a step already scheduled is not scheduled again."""
    a = H("a")
    seen: list[tuple[str, bool]] = []

    def handle(body: dict[str, Any], headers: dict[str, str], query: dict[str, str]) -> Any:
        seen.append((query["stepId"], body["ctx"]["disable_immediate_execution"]))
        if a not in body["steps"]:
            return ok([step_run("a", 1), {"op": "DeferAdd", "id": H("d"), "data": None}])
        return ok("done", status=200)

    app = ScriptedApp(handle)
    with wsgi_app_server(app) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "o/run"}]})
        run = api.wait_run(api.send("o/run"))
    assert run["status"] == "Completed"
    assert seen == [("step", False), ("step", False)]
    assert engine.engine.stats["parallel_replies"] == 0


def test_a_parallel_plan_is_not_counted_as_an_accident(engine: EngineServer, api: EngineClient) -> None:
    """Several StepPlanned ops are what a parallel group should look like: planned, run one request
    each, then one discovery once all are done (``shouldEnqueueDiscovery``, wait mode)."""
    p1, p2 = H("p1"), H("p2")
    seen: list[tuple[str, bool]] = []

    def handle(body: dict[str, Any], headers: dict[str, str], query: dict[str, str]) -> Any:
        step_id, steps = query["stepId"], body["steps"]
        seen.append((step_id, body["ctx"]["disable_immediate_execution"]))
        if step_id in (p1, p2):
            return ok([step_run("p1" if step_id == p1 else "p2", step_id[:4])])
        if p1 not in steps or p2 not in steps:
            return ok([planned(n) for n in ("p1", "p2") if H(n) not in steps])
        return ok("joined", status=200)

    app = ScriptedApp(handle)
    with wsgi_app_server(app) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "g/run"}]})
        run = api.wait_run(api.send("g/run"))
    assert run["status"] == "Completed" and run["output"] == "joined"
    assert sorted(seen[1:3]) == sorted([(p1, True), (p2, True)])
    assert seen[3:] == [("step", False)]
    assert engine.engine.stats["parallel_replies"] == 0
