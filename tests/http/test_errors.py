"""Function and step errors: status codes and the retry headers the orchestrator acts on."""

from __future__ import annotations

from tests.http.clients.base import HttpClient
from tests.support.driver import drive
from tests.support.orchestrator import RecordingOrchestrator
from tests.support.requests import call_request


def test_function_error_is_retriable_500(
    http_client: HttpClient, orchestrator: RecordingOrchestrator
) -> None:
    response = http_client.handle(call_request("conformance-fails"))
    assert response.status == 500
    assert (response.header("x-inngest-no-retry") or "false") == "false"
    result = drive(http_client.handle, "conformance-fails", orchestrator=orchestrator, max_attempts=2)
    assert result.status == "failed"
    assert result.invocations == 2
    assert "boom" in str(result.error)


def test_non_retriable_error_is_400_with_no_retry(http_client: HttpClient) -> None:
    response = http_client.handle(call_request("conformance-non-retriable"))
    assert response.status == 400
    assert response.header("x-inngest-no-retry") == "true"
    assert b"stop here" in response.body


def test_retry_after_sets_the_header(http_client: HttpClient) -> None:
    response = http_client.handle(call_request("conformance-retry-after"))
    assert response.status >= 400
    assert response.header("retry-after") == "30"
    assert response.header("x-inngest-no-retry") == "false"


def test_step_error_is_retried_then_raised_in_the_function(
    http_client: HttpClient, orchestrator: RecordingOrchestrator
) -> None:
    result = drive(http_client.handle, "conformance-step-fails", orchestrator=orchestrator, max_attempts=2)
    assert result.completed, result.error
    assert result.output == "caught ValueError"
    assert "StepError" in {op["op"] for op in result.ops} or "StepFailed" in {op["op"] for op in result.ops}
