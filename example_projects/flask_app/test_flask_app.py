"""The Flask example end to end: `eagerstep dev` and `flask run` as processes, the CLI commands too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("flask")

HERE = Path(__file__).resolve().parent

pytestmark = [pytest.mark.flask, pytest.mark.engine, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def settings(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What the app and its CLI run with: the engine's URL and a fresh SQLite file."""
    return {
        "INNGEST_DEV": engine.url,
        "FLASK_DATABASE": str(tmp_path_factory.mktemp("flask") / "onboarding.sqlite3"),
    }


@pytest.fixture(scope="module")
def app(engine: Any, serve: Any, settings: dict[str, str]) -> Any:
    server = serve(
        "flask-app",
        lambda port: [sys.executable, "-m", "flask", "--app", "app", "run", "--port", str(port)],
        cwd=HERE,
        env=settings,
        health_path="/users",
    )
    functions = engine.sync(server.url + "/api/inngest")
    assert set(functions) == {
        "flask-onboarding-onboard-user",
        "flask-onboarding-count-signups",
        "flask-onboarding-invite-user",
    }
    return server


@pytest.fixture(scope="module")
def flask_cli(settings: dict[str, str], child_env: Any) -> Any:
    """``flask_cli("eagerstep", "list")``: run ``flask --app app ...`` as the README does; its stdout."""

    def run(*args: str) -> str:
        return run_flask(child_env(**settings), *args)

    return run


def run_flask(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def get(url: str) -> Any:
    reply = httpx.get(url, timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_signup_is_onboarded_by_a_durable_function(engine: Any, app: Any) -> None:
    reply = httpx.post(app.url + "/signup", data={"email": "ada@example.com"}, timeout=10)
    assert reply.status_code == 202, reply.text

    def onboarded() -> bool:
        users = get(app.url + "/users")
        return users["signups"] == 1 and users["users"] == [
            {"id": 1, "email": "ada@example.com", "onboarded": True}
        ]

    engine.wait(onboarded)
    runs = engine.http.get("/v1/runs", params={"limit": 1000}).json()["data"]
    (onboard,) = [r for r in runs if r["function_id"] == "flask-onboarding-onboard-user"]
    run = engine.wait_run(onboard["run_id"])
    assert run["status"] == "Completed" and run["output"] == {"user_id": 1, "email": "ada@example.com"}
    assert engine.step_names(run) == ["create-account", "send-welcome-email", "mark-onboarded", "announce"]
    assert {"email": "ada@example.com", "subject": "Welcome aboard!"} in get(app.url + "/outbox")


def test_flask_eagerstep_send_command(engine: Any, app: Any, flask_cli: Any) -> None:
    out = flask_cli("eagerstep", "send", "app/user.invited", "--data", '{"email": "bob@example.com"}')
    (event_id,) = out.split()
    run = engine.wait_run(engine.run_of(event_id)["run_id"])
    assert run["status"] == "Completed"
    assert run["output"]["email"] == "bob@example.com"
    assert {"email": "bob@example.com", "subject": "You are invited"} in get(app.url + "/outbox")


def test_own_invite_command(engine: Any, app: Any, flask_cli: Any) -> None:
    out = flask_cli("invite", "cy@example.com", "dee@example.com")
    sent = dict(line.split("\t") for line in out.splitlines())
    assert set(sent) == {"cy@example.com", "dee@example.com"}
    for email, event_id in sent.items():
        run = engine.wait_run(engine.run_of(event_id)["run_id"])
        assert run["status"] == "Completed" and run["output"]["email"] == email
    assert "flask-onboarding-invite-user\tevent app/user.invited" in flask_cli("eagerstep", "list")


def test_durable_endpoint_answers_through_the_redirect_after_a_failing_step(
    engine: Any, app: Any, settings: dict[str, str]
) -> None:
    text = "durable endpoints keep the answer even when a step fails once"
    # The lookup step fails once: the view hands the run to the orchestrator and redirects the
    # caller to the run's output, which answers once the retried run completes.
    first = httpx.post(f"{app.url}/summarise", json={"text": text, "email": "eve@example.com"}, timeout=30)
    assert first.status_code == 302, first.text
    final = httpx.get(first.headers["location"], timeout=30)
    assert final.status_code == 201, final.text
    assert final.json()["summary"] == "durable endpoints keep the answer even..."
    stats = {
        row: value for row, value in _stats(settings["FLASK_DATABASE"]).items() if row.startswith("step:")
    }
    assert stats == {"step:model": 1, "step:lookup": 2, "step:write": 1}  # the model ran once
    # Now the dependency works: the next request answers in the same request.
    again = httpx.post(f"{app.url}/summarise", json={"text": "short", "email": "eve@example.com"}, timeout=30)
    assert again.status_code == 201 and again.json()["summary"] == "short"


def _stats(database: str) -> dict[str, int]:
    import sqlite3

    with sqlite3.connect(database) as conn:
        return dict(conn.execute("SELECT name, value FROM stats").fetchall())
