"""The Django app: settings bridge, discovery, system checks, view exemptions, deferred sending."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest

if importlib.util.find_spec("django") is None:
    pytest.skip("needs django", allow_module_level=True)

import django
from django.conf import settings
from django.core import checks
from django.test import AsyncClient, Client
from django.test.utils import override_settings

from tests.http.clients.base import LoopThread
from tests.http.clients.django import setup_django
from tests.http.conftest import dev_settings
from tests.support.orchestrator import RecordingOrchestrator
from tests.support.requests import call_request

pytestmark = pytest.mark.django
setup_django()

from eagerstep.integrations.django import conf, get_client, get_functions  # noqa: E402
from eagerstep.integrations.django.views import serve, serve_async  # noqa: E402

TESTAPP = "tests.integrations.django_project.testapp.durable"


def eagerstep_settings(**values: Any) -> override_settings:
    return override_settings(EAGERSTEP=values)


def check_ids(*, deploy: bool = False) -> dict[str, checks.CheckMessage]:
    return {
        m.id or "": m
        for m in checks.run_checks(include_deployment_checks=deploy)
        if (m.id or "").startswith("eagerstep")
    }


# -- settings ---------------------------------------------------------------------------------


def test_override_settings_reaches_the_client() -> None:
    with eagerstep_settings(CLIENT="tests.http.functions.client", DEV=False, SIGNING_KEY="signkey-test-aa"):
        assert get_client().settings.signing_key == "signkey-test-aa"
        assert get_client().settings.dev is False
        with eagerstep_settings(CLIENT="tests.http.functions.client", DEV=True):
            assert get_client().settings.dev is True
            assert get_client().settings.signing_key is None
        assert get_client().settings.signing_key == "signkey-test-aa"


def test_environment_fills_what_settings_leave_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INNGEST_SIGNING_KEY", "signkey-test-bb")
    with eagerstep_settings(CLIENT="tests.http.functions.client", DEV=True):
        assert get_client().settings.signing_key == "signkey-test-bb"


def test_client_built_from_app_id_is_kept_across_reloads() -> None:
    with eagerstep_settings(APP_ID="built-here", DEV=True):
        built = get_client()
        assert built.app_id == "built-here"
        with eagerstep_settings(APP_ID="built-here", DEV=True, EVENT_KEY="k"):
            assert get_client() is built and built.settings.event_key == "k"
        with eagerstep_settings(APP_ID="another", DEV=True):
            assert get_client().app_id == "another"


def test_settings_are_read_lazily() -> None:
    conf.reset()
    assert "user_settings" not in vars(conf.eagerstep_settings)
    assert conf.eagerstep_settings.DURABLE_MODULE == "durable"
    assert "user_settings" in vars(conf.eagerstep_settings)


# -- discovery --------------------------------------------------------------------------------


def test_functions_are_discovered_from_durable_modules() -> None:
    with eagerstep_settings(CLIENT=f"{TESTAPP}.client", DEV=True):
        assert {f.id for f in get_functions()} == {"discovered", "db-check", "db-parallel"}


def test_discovery_module_name_is_configurable() -> None:
    with eagerstep_settings(CLIENT=f"{TESTAPP}.client", DURABLE_MODULE="tasks"):
        assert [f.id for f in get_functions()] == ["from-tasks"]


def test_explicit_functions_list_wins() -> None:
    with eagerstep_settings(CLIENT=f"{TESTAPP}.client", FUNCTIONS=[f"{TESTAPP}.discovered"]):
        assert [f.id for f in get_functions()] == ["discovered"]


# -- checks -----------------------------------------------------------------------------------


def test_configured_project_passes_checks() -> None:
    with eagerstep_settings(CLIENT=f"{TESTAPP}.client", DEV=True):
        assert check_ids() == {}


def test_missing_signing_key_in_cloud_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INNGEST_DEV", raising=False)
    monkeypatch.delenv("INNGEST_SIGNING_KEY", raising=False)
    with eagerstep_settings(CLIENT=f"{TESTAPP}.client"):
        found = check_ids()
        assert found["eagerstep.W001"].level == checks.WARNING
        assert "SIGNING_KEY" in (found["eagerstep.W001"].hint or "")
        assert check_ids(deploy=True)["eagerstep.E007"].level == checks.ERROR
    with eagerstep_settings(CLIENT=f"{TESTAPP}.client", SIGNING_KEY="signkey-prod-12"):
        assert check_ids() == {}


def test_unknown_function_module() -> None:
    with eagerstep_settings(CLIENT=f"{TESTAPP}.client", DEV=True, FUNCTIONS=["shop.nowhere"]):
        message = check_ids()["eagerstep.E005"]
        assert "shop.nowhere" in message.msg and message.hint


def test_duplicate_function_ids() -> None:
    with eagerstep_settings(
        CLIENT="tests.integrations.django_project.dupes.client",
        DEV=True,
        FUNCTIONS=["tests.integrations.django_project.dupes"],
    ):
        message = check_ids()["eagerstep.E006"]
        assert "dupes-same" in message.msg and "id=" in (message.hint or "")


def test_bad_values_and_unknown_keys() -> None:
    with eagerstep_settings(
        CLIENT=f"{TESTAPP}.client", DEV="maybe", CHECKPOINTING=3, MAX_BODY_BYTES=-1, SIGNNG_KEY="x"
    ):
        found = checks.run_checks()
        ids = [m.id for m in found if (m.id or "").startswith("eagerstep")]
        assert ids.count("eagerstep.E003") == 3
        unknown = next(m for m in found if m.id == "eagerstep.W002")
        assert unknown.hint == 'Did you mean "SIGNING_KEY"?'


def test_missing_app_id_and_foreign_functions() -> None:
    with eagerstep_settings(DEV=True):
        assert "eagerstep.E004" in check_ids()
    with eagerstep_settings(CLIENT="tests.http.functions.client", DEV=True, FUNCTIONS=[TESTAPP]):
        assert "eagerstep.E008" in check_ids()


def test_not_a_dict() -> None:
    with override_settings(EAGERSTEP=["APP_ID"]):
        assert "eagerstep.E001" in check_ids()


# -- the view ---------------------------------------------------------------------------------


def test_view_is_csrf_exempt_non_atomic_and_login_exempt(orchestrator: RecordingOrchestrator) -> None:
    for view in (serve, serve_async):
        assert view.csrf_exempt is True  # type: ignore[attr-defined]
        assert view.login_required is False  # type: ignore[attr-defined]
        assert "default" in view._non_atomic_requests and "any-alias" in view._non_atomic_requests  # type: ignore[attr-defined]
    middleware = ["django.middleware.csrf.CsrfViewMiddleware", *settings.MIDDLEWARE]
    if django.VERSION >= (5, 1):
        middleware += [
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.auth.middleware.LoginRequiredMiddleware",
        ]
    eager = {**settings.EAGERSTEP, **dev_settings(orchestrator)}
    with override_settings(MIDDLEWARE=middleware, EAGERSTEP=eager):
        client = Client(enforce_csrf_checks=True)
        request = call_request("conformance-steps")
        response = client.post(
            "/api/inngest?fnId=conformance-steps&stepId=step", request.body, content_type="application/json"
        )
        assert response.status_code in (200, 206), response.content
        assert client.get("/api/inngest").status_code == 200


def test_own_body_limit_answers_413() -> None:
    with override_settings(EAGERSTEP={**settings.EAGERSTEP, "MAX_BODY_BYTES": 1000}):
        response = Client().post(
            "/api/inngest?fnId=conformance-steps&stepId=step", b"x" * 2000, content_type="application/json"
        )
        assert response.status_code == 413


def test_async_view_closes_connections_in_pool_threads(orchestrator: RecordingOrchestrator) -> None:
    loop = LoopThread()
    try:
        with eagerstep_settings(CLIENT=f"{TESTAPP}.client", **dev_settings(orchestrator)):
            client = AsyncClient()
            for _ in range(4):
                request = call_request("testapp-db-check")
                response = loop.run(
                    client.post(
                        "/api/inngest-async?fnId=testapp-db-check&stepId=step",
                        request.body,
                        content_type="application/json",
                    )
                )
                assert response.status_code == 200, response.content
                # In eagerstep's pool, not on Django's single thread-sensitive thread.
                assert response.json()["thread"].startswith("eagerstep-fn")
                assert response.json()["was_closed"] is True
    finally:
        loop.close()


def test_eager_parallel_branches_close_connections_in_their_threads(
    orchestrator: RecordingOrchestrator,
) -> None:
    # Each branch of an eager group runs on a thread of eagerstep's parallel pool; Django's request
    # signals never reach those threads, so without the handler's hook a branch would find the
    # connection an earlier branch on that thread left open.
    with eagerstep_settings(CLIENT=f"{TESTAPP}.client", **dev_settings(orchestrator)):
        client = Client()
        for _ in range(4):
            request = call_request("testapp-db-parallel")
            url = "/api/inngest?fnId=testapp-db-parallel&stepId=step"
            response = client.post(url, request.body, content_type="application/json")
            assert response.status_code == 206, response.content
            [complete] = response.json()
            assert complete["op"] == "RunComplete"
            branches = complete["data"]
            assert [b["thread"].startswith("eagerstep-parallel") for b in branches] == [True] * 3
            assert [b["was_closed"] for b in branches] == [True] * 3


# -- deferred sending -------------------------------------------------------------------------


@pytest.fixture
def deferring(orchestrator: RecordingOrchestrator) -> Iterator[RecordingOrchestrator]:
    with eagerstep_settings(
        CLIENT="tests.http.functions.client", DEFER_EVENTS=True, **dev_settings(orchestrator)
    ):
        yield orchestrator


def sent_modes(orchestrator: RecordingOrchestrator) -> list[str]:
    found = []
    for call in orchestrator.calls_to("/e/"):
        body = call.json if isinstance(call.json, list) else [call.json]
        found += [event["data"]["mode"] for event in body]
    return found


def test_events_go_out_after_a_successful_response(deferring: RecordingOrchestrator) -> None:
    response = Client().get("/orders?mode=ok")
    assert response.status_code == 200 and response.json() == {"ids": []}
    deferring.wait_for_calls("/e/", 1)
    assert sent_modes(deferring) == ["ok"]
    (call,) = deferring.calls_to("/e/")
    assert call.json[0]["id"].startswith("deferred-")


@pytest.mark.parametrize("mode", ["fail", "rollback"])
def test_failed_response_or_rolled_back_transaction_sends_nothing(
    deferring: RecordingOrchestrator, mode: str
) -> None:
    Client(raise_request_exception=False).get(f"/orders?mode={mode}")
    Client().get("/orders?mode=ok")  # a later event shows the first would have arrived by now
    deferring.wait_for_calls("/e/", 1)
    assert sent_modes(deferring) == ["ok"]


def test_committed_transaction_sends(deferring: RecordingOrchestrator) -> None:
    assert Client().get("/orders?mode=atomic").status_code == 200
    deferring.wait_for_calls("/e/", 1)
    assert sent_modes(deferring) == ["atomic"]


def test_async_view_defers_too(deferring: RecordingOrchestrator) -> None:
    loop = LoopThread()
    try:
        client = AsyncClient()
        assert loop.run(client.get("/orders-async?mode=fail")).status_code == 500
        assert loop.run(client.get("/orders-async")).status_code == 200
    finally:
        loop.close()
    deferring.wait_for_calls("/e/", 1)
    assert sent_modes(deferring) == ["async"]


def test_deferred_send_is_retried_with_the_same_event_id(deferring: RecordingOrchestrator) -> None:
    deferring.fail("/e/", status=503, times=2)
    Client().get("/orders?mode=ok")
    calls = deferring.wait_for_calls("/e/", 3)
    assert len({call.json[0]["id"] for call in calls}) == 1


def test_without_defer_events_sends_at_once(orchestrator: RecordingOrchestrator) -> None:
    with eagerstep_settings(CLIENT="tests.http.functions.client", **dev_settings(orchestrator)):
        response = Client().get("/orders?mode=ok")
        assert len(response.json()["ids"]) == 1
        assert len(orchestrator.calls_to("/e/")) == 1
