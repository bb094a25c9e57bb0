"""GET introspection and PUT sync, the same through every framework."""

from __future__ import annotations

import json

from tests.http import functions
from tests.http.clients.base import HttpClient
from tests.http.conftest import FRAMEWORK_HEADER, MakeClient, dev_settings
from tests.support.orchestrator import RecordingOrchestrator

FUNCTION_COUNT = sum(1 for fn in functions.FUNCTIONS for _ in fn.all_functions())


def test_introspection(http_client: HttpClient) -> None:
    response = http_client.request("GET")
    assert response.status == 200
    body = json.loads(response.body)
    assert body["schema_version"] == "2024-05-24"
    assert body["function_count"] == FUNCTION_COUNT
    assert body["mode"] == "dev"
    assert body["authentication_succeeded"] is None
    assert response.header("content-type", "").startswith("application/json")
    assert response.header("x-inngest-sdk", "").startswith("eagerstep-py:v")
    assert response.header("x-inngest-req-version") == "2"
    assert response.header("x-inngest-framework") == FRAMEWORK_HEADER[http_client.framework]
    assert response.header("x-inngest-sdk-handled") == "true"


def test_sync_registers_functions_at_the_request_url(
    http_client: HttpClient, orchestrator: RecordingOrchestrator
) -> None:
    response = http_client.request("PUT", body=b"")
    assert response.status == 200, response.body
    (call,) = orchestrator.calls_to("/fn/register")
    payload = call.json
    url = payload["url"]
    assert url.endswith(http_client.path) and url.startswith("http://")
    ids = {fn["id"] for fn in payload["functions"]}
    assert {"conformance-steps", "conformance-every-kind", "conformance-async-steps"} <= ids
    runtime = payload["functions"][0]["steps"]["step"]["runtime"]["url"]
    assert runtime.startswith(url + "?fnId=conformance-")
    assert call.header("x-inngest-framework") == FRAMEWORK_HEADER[http_client.framework]


def test_sync_honours_serve_origin_and_path(
    make_http_client: MakeClient, orchestrator: RecordingOrchestrator
) -> None:
    settings = {
        **dev_settings(orchestrator),
        "SERVE_ORIGIN": "https://shop.example.com",
        "SERVE_PATH": "/hooks/inngest",
    }
    client = make_http_client(settings)
    assert client.request("PUT").status == 200
    (call,) = orchestrator.calls_to("/fn/register")
    assert call.json["url"] == "https://shop.example.com/hooks/inngest"


def test_sync_passes_deploy_id_on(http_client: HttpClient, orchestrator: RecordingOrchestrator) -> None:
    assert http_client.request("PUT", query="deployId=d-123").status == 200
    (call,) = orchestrator.calls_to("/fn/register")
    assert call.query.get("deployId") == "d-123"
    assert "deployId" not in call.json["url"]
