"""Parallel groups that run in the worker (checkpointing mode), through every framework: the group's
steps run concurrently in one request, each checkpointed as its own StepRun with the ids a
standard-mode plan gives them; a failing branch is retried alone; a run can move between eager and
standard mode at any request and no step runs twice."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from eagerstep.core.comm import Request, Response
from eagerstep.core.protocol import hash_step_id as h
from tests.http import functions
from tests.http.clients.base import HttpClient
from tests.support.driver import RunDriver, RunResult, drive
from tests.support.orchestrator import RecordingOrchestrator
from tests.support.requests import wire_event

GROUP = ["p1", "p2a", "p2b", "p3"]
EXPECTED = {"before": "BEFORE", "group": ["P1", "P2AP2B", "P3"], "after": "AFTER"}


def executed(run_id: str) -> dict[str, int]:
    return {name: count for (run, name), count in functions.EXECUTED.items() if run == run_id}


@pytest.mark.parametrize("fn_id", ["conformance-eager-parallel", "conformance-eager-parallel-async"])
def test_a_group_runs_in_the_request(
    http_client: HttpClient, orchestrator: RecordingOrchestrator, fn_id: str
) -> None:
    # {"meet": true}: the group's first three step bodies wait for one another, so this run
    # completes only if they run at the same time
    result = drive(
        http_client.handle, fn_id, wire_event("test/eager", {"meet": True}), orchestrator=orchestrator
    )
    assert result.completed, result.error
    assert result.output == EXPECTED
    # one request up to the sleep (the group's two rounds included), one after it
    assert result.invocations == 2
    assert not any(op["op"] == "StepPlanned" for op in result.ops)
    assert executed(result.run_id) == dict.fromkeys(["before", *GROUP, "after"], 1)
    # every step of the group reached the orchestrator by checkpoint, as its own StepRun
    stored = orchestrator.stored_steps(result.run_id)
    assert {h(n) for n in ["before", *GROUP]} <= set(stored) and not stored.duplicates
    assert all(json.loads(r.body)["ctx"]["disable_immediate_execution"] is False for r in result.requests)


@pytest.mark.parametrize("fn_id", ["conformance-eager-flaky", "conformance-eager-flaky-async"])
def test_a_failing_branch_is_retried_alone(
    http_client: HttpClient, orchestrator: RecordingOrchestrator, fn_id: str
) -> None:
    result = drive(http_client.handle, fn_id, orchestrator=orchestrator)
    assert result.completed, result.error
    assert result.output == ["f1", "f2", "f3"]
    assert executed(result.run_id) == {"f1": 1, "f2": 2, "f3": 1}
    first, second = result.op_batches[0], result.op_batches[1]
    # the others were checkpointed; the reply reports the failed step alone, as standard mode does
    assert [(op["op"], op["id"]) for op in first] == [("StepError", h("f2"))]
    assert set(orchestrator.stored_steps(result.run_id)) >= {h("f1"), h("f3")}
    assert json.loads(result.requests[1].body)["ctx"]["attempt"] == 1
    assert second == [] or all(op["op"] in ("StepRun", "RunComplete") for op in second)


def _drive_switching(
    handle: Callable[[Request], Response],
    fn_id: str,
    orchestrator: RecordingOrchestrator,
    eager: Callable[[int], bool],
) -> RunResult:
    """Drive a run, checkpointing (eager) on the requests ``eager(n)`` picks and standard mode on
    the others (no ``ctx.fn_id``: what a server that does not checkpoint sends)."""
    driver = RunDriver(fn_id, orchestrator=orchestrator)
    while not driver.done:
        n = len(driver.result.requests)
        driver.request_options = {} if eager(n) else {"internal_fn_id": None}
        driver.accept(handle(driver.next_request()))
    driver.merge_checkpoints()
    return driver.result


@pytest.mark.parametrize("fn_id", ["conformance-eager-parallel", "conformance-eager-parallel-async"])
def test_eager_then_standard_replays_without_running_again(
    http_client: HttpClient, orchestrator: RecordingOrchestrator, fn_id: str
) -> None:
    result = _drive_switching(http_client.handle, fn_id, orchestrator, eager=lambda n: n == 0)
    assert result.completed and result.output == EXPECTED
    assert executed(result.run_id) == dict.fromkeys(["before", *GROUP, "after"], 1)
    assert len(result.requests) == 3  # eager up to the sleep; standard: "after", then the result


@pytest.mark.parametrize("fn_id", ["conformance-eager-parallel", "conformance-eager-parallel-async"])
def test_standard_then_eager_finishes_the_group_in_the_worker(
    http_client: HttpClient, orchestrator: RecordingOrchestrator, fn_id: str
) -> None:
    # standard for "before", the group's plan and its first planned step; eager from then on
    result = _drive_switching(http_client.handle, fn_id, orchestrator, eager=lambda n: n >= 3)
    assert result.completed and result.output == EXPECTED
    assert executed(result.run_id) == dict.fromkeys(["before", *GROUP, "after"], 1)
    plan = result.op_batches[1]
    assert [op["id"] for op in plan] == [h("p1"), h("p2a"), h("p3")]  # the ids eager mode used too


def test_orchestrated_switch_keeps_the_plan(
    http_client: HttpClient, orchestrator: RecordingOrchestrator
) -> None:
    """``parallel="orchestrated"``: the group is planned for the orchestrator even when checkpointing."""
    result = drive(
        http_client.handle,
        "conformance-every-kind",
        orchestrator=orchestrator,
        invoke={"call": {"data": {"first": 6, "second": 16}}},
    )
    assert result.completed, result.error
    planned = [op for op in result.ops if op["op"] == "StepPlanned"]
    assert [op["name"] for op in planned] == ["left", "right"]
