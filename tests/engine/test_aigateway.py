"""The AIGateway op: the engine makes the model request the op describes (a fake OpenAI-compatible
server on loopback) and records the reply as the step's output, or fails the step after retries."""

from __future__ import annotations

import json
from typing import Any

import pytest

from eagerstep.core import protocol
from eagerstep.engine.aigateway import build_request
from tests.engine.fake_model import fake_model_server
from tests.engine.helpers import EngineClient, wsgi_app_server
from tests.engine.test_api import ScriptedApp, api, engine, ok, register

__all__ = ["api", "engine"]  # fixtures

pytestmark = [pytest.mark.engine, pytest.mark.timeout(30)]

AI = protocol.hash_step_id("ask")
BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


def ai_app(model_url: str) -> ScriptedApp:
    """Asks the model in step "ask", then returns what the step gave (data or error)."""

    def handle(
        body: dict[str, Any], headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        memo = body["steps"].get(AI)
        if memo is None:
            opts = {
                "url": f"{model_url}/v1/chat/completions",
                "auth_key": "sk-test",
                "format": "openai-chat",
                "headers": {"x-extra": "1"},
                "body": BODY,
            }
            return ok([{"op": "AIGateway", "id": AI, "name": "ask", "displayName": "ask", "opts": opts}])
        return ok(memo, 200)

    return ScriptedApp(handle)


def test_model_reply_is_the_step_output(api: EngineClient) -> None:
    with fake_model_server() as model, wsgi_app_server(ai_app(model.url)) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "ai/run"}]})
        run = api.wait_run(api.send("ai/run"))
    assert run["status"] == "Completed", run
    assert run["output"]["data"]["choices"][0]["message"]["content"] == "echo: hi"
    [request] = model.requests
    assert request.path == "/v1/chat/completions" and request.body == BODY
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["x-extra"] == "1" and request.headers["content-type"] == "application/json"
    [step] = run["steps"]
    assert step["name"] == "ask" and step["op"] == "AIGateway" and step["output"] == run["output"]["data"]


def test_failed_model_request_retries_then_fails_the_step(api: EngineClient) -> None:
    with fake_model_server() as model, wsgi_app_server(ai_app(model.url)) as origin:
        model.failures = [500, 500]
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "ai/fail"}], "retries": 1})
        run = api.wait_run(api.send("ai/fail"))
    assert len(model.requests) == 2  # one attempt and one retry, as the run allows
    assert run["status"] == "Completed", run
    error = run["output"]["error"]
    assert error["name"] == "AIGatewayError"
    assert error["message"] == "Error making AI request: unsuccessful status code: 500"
    assert (
        json.loads(error["stack"])
        == error["data"]
        == {"error": {"message": "the model is overloaded", "type": "server_error"}}
    )


def test_retry_succeeds_after_one_failure(api: EngineClient) -> None:
    with fake_model_server() as model, wsgi_app_server(ai_app(model.url)) as origin:
        model.failures = [503]
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "ai/flaky"}], "retries": 2})
        run = api.wait_run(api.send("ai/flaky"))
    assert run["status"] == "Completed" and "data" in run["output"], run
    assert len(model.requests) == 2


def test_build_request_per_format() -> None:
    base = {"url": "https://m.test/v1/x?a=1", "auth_key": "k", "body": {"q": 1}, "headers": {"h": "v"}}
    # Header names go out as Go's net/http sends them (canonical case), as the server does.
    url, headers, body = build_request({**base, "format": "anthropic", "headers": {"x-my-header": "v"}})
    assert url == base["url"] and "Authorization" not in headers
    assert headers == {"Content-Type": "application/json", "X-Api-Key": "k", "X-My-Header": "v"}
    assert json.loads(body) == {"q": 1}
    url, headers, _ = build_request({**base, "format": "gemini"})
    assert url == "https://m.test/v1/x?a=1&key=k" and "Authorization" not in headers
    assert build_request({**base, "format": "bedrock"})[1]["Authorization"] == "k"
    assert build_request({**base, "format": "openai-chat"})[1]["Authorization"] == "Bearer k"
    with pytest.raises(ValueError, match=r"opts\.url"):
        build_request({"url": "ftp://x"})
