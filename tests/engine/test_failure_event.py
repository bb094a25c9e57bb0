"""The ``inngest/function.failed`` event carries ``data.error`` in the server's shape (the transport
error in ``error``, the SDK's name/message/stack), while the run's output keeps the SDK's body."""

from __future__ import annotations

import json
from typing import Any

import pytest

from eagerstep.engine.failures import standard_error
from tests.engine.helpers import EngineClient, wait_for, wsgi_app_server
from tests.engine.test_api import SDK_HEADERS, ScriptedApp, api, engine, ok, register

__all__ = ["api", "engine"]  # fixtures

pytestmark = [pytest.mark.engine, pytest.mark.timeout(30)]


def test_failed_event_error_has_the_servers_shape(api: EngineClient) -> None:
    failed_events: list[dict[str, Any]] = []

    def handle(
        body: dict[str, Any], headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if body["event"]["name"] == "inngest/function.failed":
            failed_events.append(body["event"])
            return ok(None, 200)
        error = {"code": "unknown", "message": "intentional failure", "name": "MyError", "stack": "Traceback"}
        return 500, SDK_HEADERS, json.dumps(error).encode()

    with wsgi_app_server(ScriptedApp(handle)) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "f/run"}], "retries": 0})
        register(
            api,
            origin + "/handler",
            {"slug": "on-failure", "triggers": [{"event": "inngest/function.failed"}]},
            app="handler",
        )
        event_id = api.send("f/run", {"foo": 1})
        run = api.wait_run(event_id)
        wait_for(lambda: failed_events)
    # The run's error is the SDK's error body, as it sent it (plus the engine's count of attempts).
    assert run["status"] == "Failed"
    assert run["error"].pop("attempts") == 1
    assert run["error"] == {
        "code": "unknown",
        "message": "intentional failure",
        "name": "MyError",
        "stack": "Traceback",
    }
    data = failed_events[0]["data"]
    assert data["error"] == {
        "error": "invalid status code: 500",
        "message": "intentional failure",
        "name": "MyError",
        "stack": "Traceback",
    }
    assert data["run_id"] == run["run_id"] and data["event"]["data"] == {"foo": 1}


def test_standard_error_cases() -> None:
    assert standard_error(None, None) == {
        "error": "Function execution error",
        "name": "Error",
        "message": "Function execution error",
    }
    # An engine-side failure (no reply): its message fills error and message.
    assert standard_error({"name": "AppUnreachable", "message": "down"}, "down") == {
        "error": "down",
        "name": "AppUnreachable",
        "message": "down",
    }
    # An error object inside "error" (as a JSON string) replaces the outer one.
    inner = json.dumps({"name": "Inner", "message": "m", "cause": {"x": 1}})
    assert standard_error({"error": inner}, "invalid status code: 400") == {
        "error": "invalid status code: 400",
        "name": "Inner",
        "message": "m",
        "cause": {"x": 1},
    }
