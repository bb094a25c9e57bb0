"""The Flask example's functions in process: eagerstep.testing's engine, Flask's test client.

No engine or server process: the harness calls the app's /api/inngest on the test's thread and
moves its clock itself, so each test waits exactly as long as its runs take.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("flask")
pytest.importorskip("uvicorn")  # the engine extra

from eagerstep.testing import Harness, wsgi

pytestmark = [pytest.mark.flask, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The example's ``app`` module, its database in a temporary directory."""
    database = tmp_path_factory.mktemp("flask-unit") / "onboarding.sqlite3"
    previous = os.environ.get("FLASK_DATABASE")
    os.environ["FLASK_DATABASE"] = str(database)
    try:
        module = importlib.import_module("app")
        assert Path(module.app.config["DATABASE"]) == database, (
            "app was imported before with another database"
        )
        yield module
    finally:
        if previous is None:
            os.environ.pop("FLASK_DATABASE", None)
        else:
            os.environ["FLASK_DATABASE"] = previous


@pytest.fixture
def h(example: ModuleType) -> Iterator[Harness]:
    with Harness(wsgi(example.app), example.client) as harness:
        yield harness


def test_signup_is_onboarded_and_counted(example: ModuleType, h: Harness) -> None:
    web = example.app.test_client()
    reply = web.post("/signup", data={"email": "ada@example.com"})
    assert reply.status_code == 202, reply.text

    (event_id,) = h.events("app/user.signed_up")  # sent once the request succeeded
    run = h.wait(event_id)
    assert run.completed and run.output == {"user_id": 1, "email": "ada@example.com"}
    assert run.step_names == ["create-account", "send-welcome-email", "mark-onboarded", "announce"]
    assert all(run.step(name).checkpointed for name in ("create-account", "send-welcome-email"))
    (announced,) = h.events("app/user.onboarded")  # step.send_event fans out to count-signups
    assert h.wait(announced).output == 1

    users = web.get("/users").get_json()
    assert users == {"signups": 1, "users": [{"id": 1, "email": "ada@example.com", "onboarded": True}]}
    assert {"email": "ada@example.com", "subject": "Welcome aboard!"} in web.get("/outbox").get_json()


def test_a_failed_request_sends_no_event(example: ModuleType, h: Harness) -> None:
    web = example.app.test_client()
    assert web.post("/signup", json={"email": "bea@example.com"}).status_code == 202
    assert len(h.events("app/user.signed_up")) == 1
    # The same address again: the view sends the event, then fails (409); the deferred event is dropped.
    assert web.post("/signup", json={"email": "bea@example.com"}).status_code == 409
    assert web.post("/signup", json={"email": "not-an-email"}).status_code == 400
    assert len(h.events("app/user.signed_up")) == 1  # events() first lets deferred sends finish


def test_a_mail_provider_outage_is_retried(example: ModuleType, h: Harness) -> None:
    h.fail_step("send-invitation", times=2, error=ConnectionError("mail provider unreachable"))
    result = example.app.test_cli_runner().invoke(args=["invite", "cy@example.com"])
    assert result.exit_code == 0, result.output
    email, event_id = result.output.split()
    run = h.wait(event_id)
    assert run.completed and run.output["email"] == email == "cy@example.com"
    assert run.step("send-invitation").attempts == 3
    assert all(
        "mail provider unreachable" in f["error"]["message"] for f in run.step("send-invitation").failures
    )
