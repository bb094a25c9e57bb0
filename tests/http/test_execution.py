"""Call requests in checkpointing and standard modes, every step kind, sync and async functions."""

from __future__ import annotations

from tests.http.clients.base import HttpClient
from tests.support.driver import drive
from tests.support.orchestrator import RecordingOrchestrator
from tests.support.requests import wire_event


def test_checkpointed_run_completes_in_one_request(
    http_client: HttpClient, orchestrator: RecordingOrchestrator
) -> None:
    result = drive(
        http_client.handle,
        "conformance-steps",
        wire_event("test/steps", {"start": 1}),
        orchestrator=orchestrator,
    )
    assert result.completed, result.error
    assert result.output == {"first": 2, "second": 12}
    assert result.invocations == 1
    stored = orchestrator.stored_steps(result.run_id)
    assert (
        sorted(stored.values()) == [2, 12] or len(stored) <= 2
    )  # steps arrive by checkpoint or in the reply


def test_async_function_runs_checkpointed(
    http_client: HttpClient, orchestrator: RecordingOrchestrator
) -> None:
    result = drive(http_client.handle, "conformance-async-steps", orchestrator=orchestrator)
    assert result.completed, result.error
    assert result.output == {"first": 2, "second": 12}
    assert result.invocations == 1


def test_standard_mode_is_one_request_per_step(
    http_client: HttpClient, orchestrator: RecordingOrchestrator
) -> None:
    result = drive(http_client.handle, "conformance-standard", orchestrator=orchestrator)
    assert result.completed, result.error
    assert result.output == {"first": 2, "second": 12}
    assert result.invocations == 3
    assert orchestrator.checkpoint_calls(result.run_id) == []


def test_every_step_kind(http_client: HttpClient, orchestrator: RecordingOrchestrator) -> None:
    reply = wire_event("test/reply", {"ok": True})
    result = drive(
        http_client.handle,
        "conformance-every-kind",
        orchestrator=orchestrator,
        wait_for_event={"reply": reply},
        invoke={"call": {"data": {"first": 6, "second": 16}}},
    )
    assert result.completed, result.error
    assert result.output == {
        "ran": 5,
        "reply": {"ok": True},
        "invoked": {"first": 6, "second": 16},
        "parallel": [1, 2],
    }
    kinds = {op["op"] for op in result.ops}
    assert {"Sleep", "WaitForEvent", "InvokeFunction", "StepPlanned"} <= kinds
    emitted = [call.json for call in orchestrator.calls_to("/e/")]
    assert any((item if isinstance(item, dict) else item[0])["name"] == "test/emitted" for item in emitted)
