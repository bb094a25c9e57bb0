"""The Flask blueprint and extension: app.config settings, the CLI, deferred sending, body limits."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

if importlib.util.find_spec("flask") is None:
    pytest.skip("needs flask", allow_module_level=True)

from flask import Flask, jsonify

from eagerstep.integrations.flask import EagerStep, blueprint, current_client
from tests.http import functions
from tests.http.conftest import dev_settings
from tests.support.orchestrator import RecordingOrchestrator
from tests.support.requests import call_request

pytestmark = pytest.mark.flask


def make_app(orchestrator: RecordingOrchestrator, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update({f"EAGERSTEP_{k}": v for k, v in {**dev_settings(orchestrator), **config}.items()})
    EagerStep(app, client=functions.client, functions=functions.FUNCTIONS)
    return app


def test_app_config_reaches_the_client(orchestrator: RecordingOrchestrator) -> None:
    app = make_app(orchestrator, DEV=False, SIGNING_KEY="signkey-test-cc", ENV="staging")
    with app.app_context():
        assert current_client() is functions.client
        assert functions.client.settings.signing_key == "signkey-test-cc"
        assert functions.client.settings.env == "staging"


def test_extension_builds_a_client_from_app_id(orchestrator: RecordingOrchestrator) -> None:
    app = Flask(__name__)
    app.config.update(EAGERSTEP_APP_ID="from-config", EAGERSTEP_DEV=True)
    ext = EagerStep(app)
    assert ext.client is not None and ext.client.app_id == "from-config"
    assert app.test_client().get("/api/inngest").json["function_count"] == 0  # type: ignore[index]
    with pytest.raises(RuntimeError, match="EAGERSTEP_APP_ID"):
        EagerStep(Flask(__name__))


def test_plain_blueprint_with_its_own_prefix(orchestrator: RecordingOrchestrator) -> None:
    functions.client.set_settings_source(dev_settings(orchestrator).get)
    try:
        app = Flask(__name__)
        app.register_blueprint(blueprint(functions.client, functions.FUNCTIONS), url_prefix="/hooks/inngest")
        response = app.test_client().get("/hooks/inngest")
        assert response.status_code == 200 and response.json["function_count"] >= 8  # type: ignore[index]
        with app.app_context():
            assert current_client() is functions.client
    finally:
        functions.client.set_settings_source(None)


def test_call_requests_are_not_bound_by_max_content_length(orchestrator: RecordingOrchestrator) -> None:
    app = make_app(orchestrator)
    app.config["MAX_CONTENT_LENGTH"] = 1000

    @app.post("/upload")
    def upload() -> Any:
        from flask import request

        return {"size": len(request.get_data())}

    client = app.test_client()
    request = call_request("conformance-steps", event={"name": "test/steps", "data": {"pad": "x" * 5000}})
    response = client.post(
        "/api/inngest?fnId=conformance-steps&stepId=step", data=request.body, content_type="application/json"
    )
    assert response.status_code in (200, 206), response.data
    assert client.post("/upload", data=b"x" * 5000).status_code == 413


# -- CLI --------------------------------------------------------------------------------------


def test_cli_lists_functions(orchestrator: RecordingOrchestrator) -> None:
    result = make_app(orchestrator).test_cli_runner().invoke(args=["eagerstep", "list"])
    assert result.exit_code == 0, result.output
    assert "conformance-steps\tevent test/steps" in result.output


def test_cli_sends_an_event(orchestrator: RecordingOrchestrator) -> None:
    runner = make_app(orchestrator).test_cli_runner()
    result = runner.invoke(args=["eagerstep", "send", "shop/order.created", "--data", '{"id": 7}'])
    assert result.exit_code == 0, result.output
    (call,) = orchestrator.calls_to("/e/")
    assert call.json[0]["name"] == "shop/order.created" and call.json[0]["data"] == {"id": 7}
    bad = runner.invoke(args=["eagerstep", "send", "x", "--data", "{nope"])
    assert bad.exit_code == 2 and "not JSON" in bad.output


def test_cli_syncs_the_app(orchestrator: RecordingOrchestrator) -> None:
    runner = make_app(orchestrator).test_cli_runner()
    missing = runner.invoke(args=["eagerstep", "sync"])
    assert missing.exit_code == 2 and "EAGERSTEP_SERVE_ORIGIN" in missing.output
    result = runner.invoke(args=["eagerstep", "sync", "--url", "https://shop.example.com/api/inngest"])
    assert result.exit_code == 0, result.output
    (call,) = orchestrator.calls_to("/fn/register")
    assert call.json["url"] == "https://shop.example.com/api/inngest"
    runner = make_app(orchestrator, SERVE_ORIGIN="https://shop.example.com").test_cli_runner()
    assert runner.invoke(args=["eagerstep", "sync"]).exit_code == 0
    assert orchestrator.calls_to("/fn/register")[-1].json["url"] == "https://shop.example.com/api/inngest"


# -- deferred sending -------------------------------------------------------------------------


def test_deferred_events_follow_the_response(orchestrator: RecordingOrchestrator) -> None:
    app = make_app(orchestrator, DEFER_EVENTS=True)

    def send(mode: str) -> list[str]:
        return current_client().send({"name": "shop/order.created", "data": {"mode": mode}})

    @app.get("/ok")
    def ok() -> Any:
        return jsonify(ids=send("ok"))

    @app.get("/fail")
    def fail() -> Any:
        send("fail")
        return "no", 500

    @app.get("/boom")
    def boom() -> Any:
        send("boom")
        raise RuntimeError("boom")

    client = app.test_client()
    assert client.get("/fail").status_code == 500
    assert client.get("/boom").status_code == 500
    response = client.get("/ok")
    assert response.json == {"ids": []}
    calls = orchestrator.wait_for_calls("/e/", 1)
    assert [event["data"]["mode"] for call in calls for event in call.json] == ["ok"]
