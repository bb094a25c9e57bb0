"""CommHandler: introspection, sync, signatures, trust probe and uniform errors."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import eagerstep
from eagerstep.core import protocol, signing
from eagerstep.core.comm import CommHandler, Request, Response
from tests.core.conftest import FALLBACK_KEY, SIGNING_KEY
from tests.support.orchestrator import RecordingOrchestrator, unused_url
from tests.support.requests import call_request

URL = "http://127.0.0.1:8000/api/inngest"


def _functions(client: eagerstep.Client) -> list[eagerstep.Function[Any]]:
    @client.function(id="hello", trigger=eagerstep.Event("demo/hello"), on_failure=lambda ctx: None)
    def hello(ctx: eagerstep.Context) -> str:
        return "hi"

    return [hello]


def cloud(**kwargs: Any) -> tuple[eagerstep.Client, CommHandler]:
    client = eagerstep.Client(app_id="app", signing_key=SIGNING_KEY, event_key="evt", **kwargs)
    return client, CommHandler(client, _functions(client), framework="flask")


def dev(**kwargs: Any) -> tuple[eagerstep.Client, CommHandler]:
    client = eagerstep.Client(app_id="app", dev=True, **kwargs)
    return client, CommHandler(client, _functions(client), framework="fastapi")


def body(response: Response) -> Any:
    return json.loads(response.body)


def signed_get(key: str = SIGNING_KEY, path: str = URL) -> Request:
    return Request("GET", path, {"X-Inngest-Signature": signing.sign(b"", key)})


def _common_headers(response: Response, framework: str) -> None:
    assert response.header("X-Inngest-SDK") == f"eagerstep-py:v{eagerstep.__version__}"
    assert response.header("X-Inngest-Req-Version") == "2"
    assert response.header("X-Inngest-Framework") == framework
    assert response.header("x-inngest-sdk-handled") == "true"
    assert response.header("content-type") == "application/json"


# --------------------------------------------------------------------------------------------- GET


def test_unauthenticated_introspection() -> None:
    _, handler = cloud()
    response = handler.handle(Request("GET", URL))
    assert response.status == 200
    _common_headers(response, "flask")
    assert body(response) == {
        "schema_version": "2024-05-24",
        "authentication_succeeded": None,
        "function_count": 2,
        "has_event_key": True,
        "has_signing_key": True,
        "has_signing_key_fallback": False,
        "mode": "cloud",
    }
    assert response.header("X-Inngest-Signature") is None


def test_bad_signature_introspection_says_false() -> None:
    _, handler = cloud()
    response = handler.handle(signed_get("signkey-test-00000000"))
    assert body(response)["authentication_succeeded"] is False


def test_authenticated_introspection_is_signed() -> None:
    _, handler = cloud(signing_key_fallback=FALLBACK_KEY, env="prod")
    response = handler.handle(signed_get(path=URL + "?x=1"))
    data = body(response)
    assert data["authentication_succeeded"] is True
    assert data["app_id"] == "app"
    assert data["framework"] == "flask"
    assert data["sdk_language"] == "py"
    assert data["sdk_version"] == eagerstep.__version__
    assert data["env"] == "prod"
    assert data["serve_origin"] == "http://127.0.0.1:8000"
    assert data["serve_path"] == "/api/inngest"
    assert data["api_origin"] == protocol.CLOUD_API_ORIGIN
    assert data["event_api_origin"] == protocol.CLOUD_EVENT_API_ORIGIN
    assert data["event_key_hash"] == signing.hash_event_key("evt")
    assert data["signing_key_hash"] == signing.hash_signing_key(SIGNING_KEY)
    assert data["signing_key_fallback_hash"] == signing.hash_signing_key(FALLBACK_KEY)
    assert data["capabilities"] == {"trust_probe": "v1", "in_band_sync": "v1"}
    signature = response.header("X-Inngest-Signature")
    assert signature is not None
    assert signing.verify(signature, response.body, [SIGNING_KEY]) == SIGNING_KEY


def test_dev_introspection() -> None:
    _, handler = dev()
    data = body(handler.handle(Request("GET", URL)))
    assert data["mode"] == "dev"
    assert data["has_event_key"] is False  # the dev placeholder is not a key


# --------------------------------------------------------------------------------------------- PUT


def test_put_syncs_out_of_band(orchestrator: RecordingOrchestrator) -> None:
    _, handler = cloud(api_base_url=orchestrator.url, env="staging")
    request = Request(
        "PUT",
        URL + "?deployId=dep-1",
        {"X-Inngest-Server-Kind": "dev"},
        {"deployId": "dep-1"},
        b'{"url": "http://127.0.0.1:8000/api/inngest"}',
    )
    response = handler.handle(request)
    assert response.status == 200, response.body
    assert body(response) == {"message": "Successfully synced.", "modified": True}
    assert response.header("X-Inngest-Sync-Kind") == "out_of_band"
    [call] = orchestrator.calls_to("/fn/register")
    assert call.query == {"deployId": "dep-1"}
    assert call.header("authorization") == f"Bearer {signing.hash_signing_key(SIGNING_KEY)}"
    assert call.header("x-inngest-expected-server-kind") == "dev"
    assert call.header("x-inngest-sdk") == f"eagerstep-py:v{eagerstep.__version__}"
    assert call.header("x-inngest-framework") == "flask"
    assert call.header("x-inngest-env") == "staging"
    payload = call.json
    assert payload["url"] == URL  # no deployId in the registered url
    assert payload["appName"] == "app"
    assert payload["deployType"] == "ping"
    assert payload["sdk"] == f"eagerstep-py:v{eagerstep.__version__}"
    assert payload["v"] == "0.1"
    assert [f["id"] for f in payload["functions"]] == ["app-hello", "app-hello-failure"]
    assert payload["functions"][0]["steps"]["step"]["runtime"]["url"] == f"{URL}?fnId=app-hello&stepId=step"
    protocol.parse_register_request(payload)
    # The same payload again: not modified.
    assert body(handler.handle(request))["modified"] is False


def test_serve_origin_and_path_override_the_registered_url(orchestrator: RecordingOrchestrator) -> None:
    _, handler = dev(
        api_base_url=orchestrator.url, serve_origin="https://shop.example", serve_path="/hooks/x"
    )
    handler.handle(Request("PUT", URL))
    assert orchestrator.registrations[0]["url"] == "https://shop.example/hooks/x"


def test_register_falls_back_to_the_fallback_key(orchestrator: RecordingOrchestrator) -> None:
    orchestrator.stop()
    with RecordingOrchestrator(signing_keys=[FALLBACK_KEY]) as orch:
        client = eagerstep.Client(
            app_id="app", signing_key=SIGNING_KEY, signing_key_fallback=FALLBACK_KEY, api_base_url=orch.url
        )
        handler = CommHandler(client, _functions(client), framework="flask")
        response = handler.register(URL)
        assert response.status == 200
        auths = [c.header("authorization") for c in orch.calls_to("/fn/register")]
        assert auths == [
            f"Bearer {signing.hash_signing_key(SIGNING_KEY)}",
            f"Bearer {signing.hash_signing_key(FALLBACK_KEY)}",
        ]


def test_register_refused_and_unreachable(orchestrator: RecordingOrchestrator) -> None:
    _, handler = dev(api_base_url=orchestrator.url)
    orchestrator.fail("/fn/register", status=400, body=b'{"error":"bad app"}')
    response = handler.handle(Request("PUT", URL))
    assert response.status == 500
    assert body(response)["code"] == "sync_failed"
    assert "bad app" in body(response)["error"]
    _, down = dev(api_base_url=unused_url())
    response = down.handle(Request("PUT", URL))
    assert response.status == 500
    assert "could not reach the orchestrator" in body(response)["error"]


def test_cloud_sync_without_signing_key_explains_the_fix() -> None:
    client = eagerstep.Client(app_id="app")
    handler = CommHandler(client, _functions(client), framework="flask")
    response = handler.handle(Request("PUT", URL))
    assert response.status == 500
    assert body(response)["code"] == "configuration_error"
    assert "SIGNING_KEY is not set" in body(response)["error"]


def test_in_band_sync_needs_a_valid_signature() -> None:
    _, handler = cloud()
    raw = b'{"url":"https://app.example/api/inngest"}'
    headers = {"X-Inngest-Sync-Kind": "in_band", "X-Inngest-Signature": signing.sign(raw, SIGNING_KEY)}
    response = handler.handle(Request("PUT", URL, headers, {}, raw))
    assert response.status == 200
    assert response.header("X-Inngest-Sync-Kind") == "in_band"
    data = body(response)
    assert data["url"] == "https://app.example/api/inngest"
    assert data["app_id"] == "app"
    assert data["sdk_language"] == "py"
    assert data["inspection"]["authentication_succeeded"] is True
    assert data["functions"][0]["steps"]["step"]["runtime"]["url"].startswith(
        "https://app.example/api/inngest?"
    )
    assert signing.verify(response.header("X-Inngest-Signature"), response.body, [SIGNING_KEY])
    bad = {"X-Inngest-Sync-Kind": "in_band", "X-Inngest-Signature": signing.sign(raw, FALLBACK_KEY)}
    response = handler.handle(Request("PUT", URL, bad, {}, raw))
    assert response.status == 401
    assert body(response)["message"] == "Unauthorized"


# --------------------------------------------------------------------------------------------- POST


def test_cloud_post_requires_a_valid_signature() -> None:
    _, handler = cloud()
    unsigned = handler.handle(call_request("app-hello"))
    assert unsigned.status == 401
    assert body(unsigned)["message"] == "Unauthorized"
    assert body(unsigned)["code"] == "unauthorized"
    _common_headers(unsigned, "flask")
    wrong = handler.handle(call_request("app-hello", signing_key=FALLBACK_KEY))
    assert wrong.status == 401
    expired = handler.handle(
        call_request("app-hello", signing_key=SIGNING_KEY, signature_time=int(time.time()) - 600)
    )
    assert expired.status == 401
    assert "expired" in body(expired)["error"]


def test_signed_post_runs_and_signs_the_response() -> None:
    _, handler = cloud()
    response = handler.handle(call_request("app-hello", signing_key=SIGNING_KEY))
    assert response.status == 200
    assert body(response) == "hi"
    assert signing.verify(response.header("X-Inngest-Signature"), response.body, [SIGNING_KEY]) == SIGNING_KEY


def test_fallback_key_verifies_and_signs() -> None:
    _, handler = cloud(signing_key_fallback=FALLBACK_KEY)
    response = handler.handle(call_request("app-hello", signing_key=FALLBACK_KEY))
    assert response.status == 200
    assert signing.verify(response.header("X-Inngest-Signature"), response.body, [FALLBACK_KEY])


def test_dev_mode_skips_verification() -> None:
    _, handler = dev()
    assert handler.handle(call_request("app-hello")).status == 200
    assert handler.handle(call_request("app-hello", signing_key=SIGNING_KEY)).status == 200


def test_trust_probe() -> None:
    _, handler = cloud()
    request = Request(
        "POST",
        URL + "?probe=trust",
        {"X-Inngest-Signature": signing.sign(b"", SIGNING_KEY)},
        {"probe": "trust"},
    )
    response = handler.handle(request)
    assert response.status == 200 and body(response) == {}
    assert signing.verify(response.header("X-Inngest-Signature"), response.body, [SIGNING_KEY])
    assert handler.handle(Request("POST", URL + "?probe=trust", {}, {"probe": "trust"})).status == 401
    other = Request("POST", URL, {"X-Inngest-Signature": signing.sign(b"", SIGNING_KEY)}, {"probe": "x"})
    assert handler.handle(other).status == 400


@pytest.mark.parametrize(
    ("request_", "status", "code"),
    [
        (Request("DELETE", URL), 405, "method_not_allowed"),
        (Request("POST", URL, {}, {"fnId": "app-hello"}, b"{not json"), 400, "bad_request"),
        (Request("POST", URL, {}, {"fnId": "app-hello"}, b'{"ctx": {}}'), 400, "bad_request"),
        (Request("POST", URL, {}, {"fnId": "app-hello"}, b"[]"), 400, "bad_request"),
        (Request("POST", URL, {}, {}, b"{}"), 400, "bad_request"),
        (Request("POST", URL, {}, {"fnId": "app-nope"}, b"{}"), 500, "function_not_found"),
        (Request("POST", URL, {}, {"fnId": "app-hello"}, b"x" * 200), 413, "body_too_large"),
    ],
)
def test_bad_input_gets_uniform_errors(request_: Request, status: int, code: str) -> None:
    client = eagerstep.Client(app_id="app", dev=True)
    handler = CommHandler(client, _functions(client), framework="django", max_body_bytes=100)
    response = handler.handle(request_)
    assert response.status == status
    data = body(response)
    assert data["code"] == code
    assert isinstance(data["error"], str) and data["error"]
    _common_headers(response, "django")
    if status == 405:
        assert response.header("Allow") == "GET, POST, PUT"
    if code == "function_not_found":
        assert "after the next sync" in data["error"]


async def test_handle_async_gives_the_same_answers(orchestrator: RecordingOrchestrator) -> None:
    _, handler = cloud(api_base_url=orchestrator.url)
    for request in (
        Request("GET", URL),
        Request("PATCH", URL),
        call_request("app-hello"),
        call_request("app-hello", signing_key=SIGNING_KEY),
        Request("PUT", URL),
    ):
        sync_response = handler.handle(request)
        async_response = await handler.handle_async(request)
        assert async_response.status == sync_response.status
        if request.method != "PUT":
            assert async_response.body == sync_response.body
    assert len(orchestrator.calls_to("/fn/register")) == 2


def test_bare_slug_and_failure_function_are_found() -> None:
    _, handler = dev()
    assert handler.handle(call_request("hello")).status == 200
    assert handler.handle(call_request("app-hello-failure")).status == 200


def test_functions_of_another_client_are_rejected() -> None:
    client = eagerstep.Client(app_id="a", dev=True)
    other = eagerstep.Client(app_id="b", dev=True)
    with pytest.raises(ValueError, match="another Client"):
        CommHandler(client, _functions(other), framework="x")
