"""Each framework over a real socket: sync, then a checkpointed run driven by the recording orchestrator."""

from __future__ import annotations

import httpx
import pytest

from tests.http.conftest import dev_settings
from tests.integrations.servers import FRAMEWORKS, http_handle, serve_framework
from tests.support.driver import drive
from tests.support.orchestrator import RecordingOrchestrator
from tests.support.requests import wire_event


def check_run_over_socket(base_url: str, path: str, orchestrator: RecordingOrchestrator) -> None:
    sync = httpx.put(base_url + path, timeout=30)
    assert sync.status_code == 200, sync.text
    (register,) = orchestrator.calls_to("/fn/register")
    assert register.json["url"] == base_url + path

    handle = http_handle(base_url, path)
    result = drive(
        handle,
        "conformance-steps",
        wire_event("test/steps", {"start": 1}),
        orchestrator=orchestrator,
        url=base_url + path,
    )
    assert result.completed, result.error
    assert result.output == {"first": 2, "second": 12}
    assert result.invocations == 1
    async_result = drive(handle, "conformance-async-steps", orchestrator=orchestrator, url=base_url + path)
    assert async_result.completed and async_result.output == {"first": 2, "second": 12}
    standard = drive(handle, "conformance-standard", orchestrator=orchestrator, url=base_url + path)
    assert standard.completed and standard.invocations == 3


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_each_adapter_over_a_socket(framework: str, orchestrator: RecordingOrchestrator) -> None:
    with serve_framework(framework, dev_settings(orchestrator)) as url:
        base_url, _, path = url.partition("/api/")
        check_run_over_socket(base_url, "/api/" + path, orchestrator)
