"""Signatures in cloud mode and malformed requests: every framework answers exactly as the core does."""

from __future__ import annotations

import json

import pytest

from eagerstep.core.comm import CommHandler, Request, Response
from tests.http import functions
from tests.http.clients.base import HttpClient
from tests.http.conftest import SIGNING_KEY, MakeClient, cloud_settings
from tests.support.orchestrator import RecordingOrchestrator
from tests.support.requests import call_request

LIMIT = 4 * 1024 * 1024 + 64 * 1024


def core_answer(request: Request) -> Response:
    """What the core itself answers, with the client configured as the framework configured it."""
    return CommHandler(functions.client, functions.FUNCTIONS, framework="core").handle(request)


def assert_same_as_core(response: Response, request: Request) -> None:
    expected = core_answer(request)
    assert response.status == expected.status
    assert json.loads(response.body) == json.loads(expected.body)


def test_signed_call_is_accepted_and_reply_signed(
    make_http_client: MakeClient, orchestrator: RecordingOrchestrator
) -> None:
    client = make_http_client(cloud_settings(orchestrator))
    response = client.handle(call_request("conformance-steps", signing_key=SIGNING_KEY, internal_fn_id=None))
    assert response.status in (200, 206), response.body
    assert response.header("x-inngest-signature", "").startswith("t=")


@pytest.mark.parametrize("key", [None, "signkey-test-" + "00" * 32], ids=["unsigned", "wrong-key"])
def test_bad_signature_is_401(
    make_http_client: MakeClient, orchestrator: RecordingOrchestrator, key: str | None
) -> None:
    client = make_http_client(cloud_settings(orchestrator))
    request = call_request("conformance-steps", signing_key=key)
    response = client.handle(request)
    assert response.status == 401
    assert_same_as_core(response, request)


def test_malformed_json_is_400(http_client: HttpClient) -> None:
    request = Request(
        "POST",
        "http://x/api/inngest?fnId=conformance-steps&stepId=step",
        {"content-type": "application/json"},
        {"fnId": "conformance-steps", "stepId": "step"},
        b"{not json",
    )
    response = http_client.handle(request)
    assert response.status == 400
    assert_same_as_core(response, request)


def test_unknown_function_is_500(http_client: HttpClient) -> None:
    request = call_request("conformance-nope")
    response = http_client.handle(request)
    assert response.status == 500
    assert_same_as_core(response, request)


def test_wrong_method_is_405(http_client: HttpClient) -> None:
    request = Request("DELETE", "http://x/api/inngest", {}, {}, b"")
    response = http_client.handle(request)
    assert response.status == 405
    assert "GET" in (response.header("allow") or "")
    assert_same_as_core(response, request)


def test_oversized_body_is_413(http_client: HttpClient) -> None:
    body = b'{"pad": "' + b"x" * LIMIT + b'"}'
    request = Request(
        "POST",
        "http://x/api/inngest?fnId=conformance-steps&stepId=step",
        {"content-type": "application/json"},
        {"fnId": "conformance-steps", "stepId": "step"},
        body,
    )
    response = http_client.handle(request)
    assert response.status == 413
    assert_same_as_core(response, request)


def test_body_over_djangos_upload_limit_but_under_ours_is_accepted(
    http_client: HttpClient, orchestrator: RecordingOrchestrator
) -> None:
    # Django refuses request.body over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB); call requests go to ~4 MB.
    request = call_request(
        "conformance-steps", event={"name": "test/steps", "data": {"start": 1, "pad": "x" * 1_500_000}}
    )
    assert 2_621_440 < len(request.body) < LIMIT  # event and events each carry the padding
    response = http_client.handle(request)
    assert response.status in (200, 206), response.body[:300]


def signed_headers(body: bytes, **extra: str) -> dict[str, str]:
    from eagerstep.core.signing import sign

    return {"X-Inngest-Signature": sign(body, SIGNING_KEY), "content-type": "application/json", **extra}


def test_signed_introspection_is_authenticated(
    make_http_client: MakeClient, orchestrator: RecordingOrchestrator
) -> None:
    client = make_http_client(cloud_settings(orchestrator))
    response = client.request("GET", headers=signed_headers(b""))
    body = json.loads(response.body)
    assert response.status == 200 and body["authentication_succeeded"] is True
    assert body["app_id"] == "conformance" and body["mode"] == "cloud"
    assert body["signing_key_hash"] and response.header("x-inngest-signature", "").startswith("t=")
    unsigned = json.loads(client.request("GET").body)
    assert unsigned["authentication_succeeded"] is None and "app_id" not in unsigned


def test_trust_probe(make_http_client: MakeClient, orchestrator: RecordingOrchestrator) -> None:
    client = make_http_client(cloud_settings(orchestrator))
    response = client.request("POST", query="probe=trust", body=b"", headers=signed_headers(b""))
    assert response.status == 200
    assert response.header("x-inngest-signature", "").startswith("t=")
    assert client.request("POST", query="probe=trust").status == 401


def test_in_band_sync(make_http_client: MakeClient, orchestrator: RecordingOrchestrator) -> None:
    client = make_http_client(cloud_settings(orchestrator))
    body = json.dumps({"url": "https://shop.example.com/api/inngest"}).encode()
    response = client.request(
        "PUT", body=body, headers=signed_headers(body, **{"X-Inngest-Sync-Kind": "in_band"})
    )
    assert response.status == 200, response.body
    assert response.header("x-inngest-sync-kind") == "in_band"
    payload = json.loads(response.body)
    assert payload["url"] == "https://shop.example.com/api/inngest"
    assert {fn["id"] for fn in payload["functions"]} >= {"conformance-steps"}
    assert orchestrator.calls_to("/fn/register") == []
