"""Nothing fails silently: failed syncs are retried and recorded, an event that matches no function
is logged and recorded, every failed attempt is logged with its error, and a final error says how
many attempts it took."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from eagerstep.engine import EngineServer
from tests.engine.helpers import EngineClient, wait_for, wsgi_app_server
from tests.engine.test_api import ScriptedApp, ok, register

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineServer]:
    with EngineServer(tmp_path / "engine.db", retry_interval=0.01) as server:
        yield server


@pytest.fixture
def api(engine: EngineServer) -> Iterator[EngineClient]:
    client = EngineClient(engine.url)
    yield client
    client.close()


Reply = tuple[int, dict[str, str], bytes]


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "eagerstep.engine"]


def test_a_failed_sync_is_retried_with_backoff_and_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eagerstep.engine")
    puts: list[int] = []
    server = EngineServer(tmp_path / "engine.db")

    def handle(body: dict[str, Any], headers: dict[str, str], query: dict[str, str]) -> Reply:
        puts.append(1)
        if len(puts) <= 2:
            return 500, {"Content-Type": "application/json"}, b'{"message": "settings are broken"}'
        config = {
            "id": "late-fn",
            "name": "late",
            "triggers": [{"event": "late/go"}],
            "steps": {"step": {"id": "step", "name": "step", "runtime": {"type": "http", "url": url}}},
        }
        payload = {"url": url, "appName": "late", "sdk": "scripted:v1", "functions": [config]}
        httpx.post(f"{server.url}/fn/register", json=payload).raise_for_status()
        return ok({"ok": True}, 200)

    with wsgi_app_server(ScriptedApp(handle)) as origin:
        url = origin + "/api"
        server.engine.app_urls = [url]
        with server:
            api = EngineClient(server.url)
            apps = wait_for(lambda: api.http.get("/v1/dev/apps").json()["data"])
            assert apps[0]["functions"] == ["late-fn"]
            assert apps[0]["last_sync_error"] is None and apps[0]["sync_failures"] == 0
            api.close()
    assert len(puts) == 3
    messages = _messages(caplog)
    assert any(f"syncing {url} failed (attempt 1 of 20): the app answered 500" in m for m in messages)
    assert any(f"synced {url} after 3 attempts" in m for m in messages)
    assert any("1 function" in m and "1 functions" not in m for m in messages)


def test_a_sync_that_keeps_failing_gives_up_and_the_dashboard_shows_the_error(
    engine: EngineServer, api: EngineClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eagerstep.engine")
    app = ScriptedApp(lambda body, headers, query: (404, {"Content-Type": "text/plain"}, b"no such page"))
    with wsgi_app_server(app) as origin:
        url = origin + "/wrong"
        synced = engine.call(engine.engine.apps.sync_until_reachable(url, first_delay=0.01, max_attempts=3))
    assert synced is False and len(app.calls) == 3
    assert any("failed 3 times; giving up" in m and "Resync" in m for m in _messages(caplog))
    sync = engine.run_sync(engine.engine.history.syncs)[url]
    assert sync["ok"] is False and sync["failures"] == 3 and "answered 404: no such page" in sync["error"]
    page = api.http.get("/apps").text
    assert url in page and "answered 404: no such page" in page and "Resync" in page


def test_an_event_that_matches_no_function_is_logged_and_recorded(
    engine: EngineServer, api: EngineClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eagerstep.engine")
    register(api, "http://127.0.0.1:9/api", {"slug": "a", "triggers": [{"event": "shop/order.created"}]})
    event_id = api.send("shop/order.craeted", {"id": 1})
    assert any(f"event {event_id} (shop/order.craeted) matched no function" in m for m in _messages(caplog))
    assert engine.run_sync(engine.engine.history.is_unmatched, event_id)
    events = api.http.get("/dash/api/events").json()["data"]
    assert [e["matched_no_function"] for e in events if e["id"] == event_id] == [True]


def test_every_failed_attempt_is_logged_and_the_final_error_counts_them(
    api: EngineClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eagerstep.engine")
    error = {"name": "ValueError", "message": "bad total", "stack": "Traceback ...", "noRetry": True}

    def handle(body: dict[str, Any], headers: dict[str, str], query: dict[str, str]) -> Reply:
        attempt = body["ctx"]["attempt"]
        reply = dict(error, noRetry=attempt == 2)  # as the SDK marks its last attempt
        return 500, ok(None)[1], json.dumps(reply).encode()

    with wsgi_app_server(ScriptedApp(handle)) as origin:
        register(api, origin + "/api", {"slug": "fails", "triggers": [{"event": "f/go"}], "retries": 2})
        run = api.wait_run(api.send("f/go"))
    assert run["status"] == "Failed"
    assert run["error"]["attempts"] == 3 and run["error"]["message"] == "bad total"
    messages = _messages(caplog)
    for attempt in (1, 2):
        assert any(
            f"the function failed (attempt {attempt} of 3), retrying in" in m and "ValueError: bad total" in m
            for m in messages
        )
    assert any("the function failed after 3 attempts: ValueError: bad total" in m for m in messages)


def test_a_retried_step_records_each_attempt(
    engine: EngineServer, api: EngineClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eagerstep.engine")

    def handle(body: dict[str, Any], headers: dict[str, str], query: dict[str, str]) -> Reply:
        if "charge" in body["steps"]:
            return ok({"done": True}, 200)
        if body["ctx"]["attempt"] < 2:
            failure = {"name": "ConnectionError", "message": f"gateway down {body['ctx']['attempt']}"}
            return ok([{"op": "StepError", "id": "charge", "name": "charge", "error": failure}])
        return ok([{"op": "StepRun", "id": "charge", "name": "charge", "data": 30}])

    with wsgi_app_server(ScriptedApp(handle)) as origin:
        register(api, origin + "/api", {"slug": "steps", "triggers": [{"event": "s/go"}], "retries": 3})
        run = api.wait_run(api.send("s/go"))
    assert run["status"] == "Completed"
    attempts = engine.run_sync(engine.engine.history.attempts, run["run_id"])
    assert [(a["step_id"], a["attempt"], a["retried"]) for a in attempts] == [
        ("charge", 0, True),
        ("charge", 1, True),
    ]
    assert attempts[1]["error"]["message"] == "gateway down 1"
    assert any(
        "step charge failed (attempt 2 of 4), retrying in" in m and "gateway down 1" in m
        for m in _messages(caplog)
    )
    detail = api.http.get(f"/dash/api/runs/{run['run_id']}").json()["data"]
    charge = next(s for s in detail["steps"] if s["id"] == "charge")
    assert [a["error"]["message"] for a in charge["attempts"]] == ["gateway down 0", "gateway down 1"]
    assert charge["via"] == "reply"
