"""Durable endpoints per framework, over real sockets against the embedded engine."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("uvicorn")  # the engine extra
pytest.importorskip("flask")  # the answer-mode tests and the apps' shared module

from eagerstep.core import protocol, signing
from eagerstep.engine import EngineServer
from tests.endpoints.apps import SIGNING_KEY, Work, fastapi_app, flask_app, make_client
from tests.engine.helpers import wait_for
from tests.integrations.servers import serve_asgi, serve_wsgi

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]

Serve = Callable[[Any, Work], AbstractContextManager[str]]


def _flask(client: Any, work: Work) -> AbstractContextManager[str]:
    return serve_wsgi(flask_app(client, work))


def _fastapi(client: Any, work: Work) -> AbstractContextManager[str]:
    return serve_asgi(fastapi_app(client, work))


@contextmanager
def _django(client: Any, work: Work, *, is_async: bool) -> Iterator[str]:
    from django.core.asgi import get_asgi_application
    from django.core.wsgi import get_wsgi_application
    from django.test.utils import override_settings

    from tests.endpoints.django_views import urlconf
    from tests.http.clients.django import setup_django

    setup_django()
    with override_settings(ROOT_URLCONF=urlconf(client, work, is_async=is_async)):
        if is_async:
            with serve_asgi(get_asgi_application()) as url:
                yield url
        else:
            with serve_wsgi(get_wsgi_application()) as url:
                yield url


def _django_wsgi(client: Any, work: Work) -> AbstractContextManager[str]:
    return _django(client, work, is_async=False)


def _django_asgi(client: Any, work: Work) -> AbstractContextManager[str]:
    return _django(client, work, is_async=True)


def _needs(marker: pytest.MarkDecorator, *modules: str) -> list[pytest.MarkDecorator]:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return [marker, pytest.mark.skipif(bool(missing), reason=f"needs {missing}")]


FRAMEWORKS = [
    pytest.param(_django_wsgi, id="django-wsgi", marks=_needs(pytest.mark.django, "django")),
    pytest.param(_django_asgi, id="django-asgi", marks=_needs(pytest.mark.django, "django", "uvicorn")),
    pytest.param(_flask, id="flask", marks=_needs(pytest.mark.flask, "flask")),
    pytest.param(_fastapi, id="fastapi", marks=_needs(pytest.mark.fastapi, "fastapi", "uvicorn")),
]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineServer]:
    server = EngineServer(tmp_path / "engine.db", signing_key=SIGNING_KEY, retry_interval=0.05)
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=FRAMEWORKS)
def app(request: pytest.FixtureRequest, engine: EngineServer) -> Iterator[tuple[str, Work]]:
    work = Work()
    with request.param(make_client(engine.url), work) as url:
        yield url, work


def _stats(engine: EngineServer) -> dict[str, int]:
    return dict(engine.engine.stats)


def _runs(engine: EngineServer) -> list[dict[str, Any]]:
    return list(httpx.get(f"{engine.url}/v1/runs").json()["data"])


def test_happy_path_answers_in_the_request(app: tuple[str, Work], engine: EngineServer) -> None:
    url, work = app
    before = _stats(engine)
    response = httpx.post(f"{url}/shop/orders/7?q=blue", json={"note": "gift"}, timeout=30)
    assert response.status_code == 201, response.text
    assert response.json() == {"order": 7, "total": 71, "q": "blue", "note": "gift"}
    assert response.headers["x-order"] == "7"
    assert work.calls == {"price": 1, "charge": 1, "mail": 1}
    after = _stats(engine)
    assert after.get("sync_runs", 0) - before.get("sync_runs", 0) == 1  # one POST /v1/checkpoint
    assert 0 <= after["checkpoints"] - before["checkpoints"] <= 3  # appended steps + RunComplete
    assert after["calls"] == before["calls"]  # the engine never called the app
    [run] = _runs(engine)
    assert run["status"] == "Completed"
    assert run["output"]["status"] == 201
    assert run["output"]["headers"]["x-order"] == "7"
    assert '"total":71' in run["output"]["body"].replace(" ", "")
    steps = httpx.get(
        f"{engine.url}/v0/runs/{run['run_id']}/actions",
        headers={"Authorization": f"Bearer {signing.hash_signing_key(SIGNING_KEY)}"},
    ).json()
    assert steps[protocol.hash_step_id("price")] == {"data": 70}
    assert steps[protocol.hash_step_id("charge")] == {"data": 71}


def test_failing_step_goes_async_and_the_redirect_gets_the_answer(
    app: tuple[str, Work], engine: EngineServer
) -> None:
    url, work = app
    work.fail_once.add("charge")
    response = httpx.post(f"{url}/shop/orders/3?q=red", json={"note": "n"}, timeout=30)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(f"{engine.url}/v1/http/runs/") and "token=" in location
    final = httpx.get(location, timeout=30)
    assert final.status_code == 201, final.text
    assert final.json() == {"order": 3, "total": 31, "q": "red", "note": "n"}
    assert final.headers["x-order"] == "3"
    # re-entry replayed the memo of "price" and never ran it again
    assert work.calls == {"price": 1, "charge": 2, "mail": 1}
    [run] = _runs(engine)
    assert run["status"] == "Completed"


def test_non_retriable_error_answers_at_once(app: tuple[str, Work], engine: EngineServer) -> None:
    url, work = app
    response = httpx.post(f"{url}/shop/fatal", timeout=30)
    assert response.status_code == 400, response.text
    assert "declined" in response.json()["message"]
    assert work.calls == {"price": 1, "fatal": 1}
    run = wait_for(lambda: [r for r in _runs(engine) if r["status"] != "Running"])[0]
    assert run["status"] == "Failed"


@pytest.mark.parametrize("signature", [None, "t=1&s=00"], ids=["missing", "bad"])
def test_reentry_needs_a_valid_signature(
    app: tuple[str, Work], engine: EngineServer, signature: str | None
) -> None:
    url, work = app
    headers = {"X-Run-ID": "01J0000000000000000000000A", "Content-Type": "application/json"}
    if signature:
        headers[protocol.Header.SIGNATURE] = signature
    response = httpx.post(f"{url}/shop/orders/1", content=b"{}", headers=headers, timeout=30)
    assert response.status_code == 401, response.text
    assert work.calls == {}


# -- answer modes and orchestrator-handled steps (one framework: the core decides these) ----------


@pytest.fixture
def modes(engine: EngineServer) -> Iterator[tuple[str, Work]]:
    from tests.endpoints.apps import flask_modes_app

    work = Work()
    with serve_wsgi(flask_modes_app(make_client(engine.url), work)) as url:
        yield url, work


@pytest.mark.flask
def test_sleep_hands_over_and_resumes_after_the_timer(modes: tuple[str, Work], engine: EngineServer) -> None:
    url, work = modes
    response = httpx.get(f"{url}/nap?x=1", timeout=30)
    assert response.status_code == 302
    run_id = response.headers["location"].split("/runs/")[1].split("/")[0]
    assert work.calls == {"before": 1}
    timers = f"{engine.url}/v1/dev/timers"
    wait_for(lambda: [t for t in httpx.get(timers).json()["data"] if t["kind"] == "sleep"])
    httpx.post(f"{engine.url}/v1/dev/timers/fire", json={"run_id": run_id})
    final = httpx.get(response.headers["location"], timeout=30)
    assert final.status_code == 200, final.text
    assert final.json() == {"sum": 3}
    assert work.calls == {"before": 1, "after": 1}


@pytest.mark.flask
def test_token_and_event_stream_answers(modes: tuple[str, Work], engine: EngineServer) -> None:
    url, _ = modes
    response = httpx.get(f"{url}/nap-token", timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"run_id", "token"}
    polled = httpx.get(f"{engine.url}/v1/checkpoint/{body['run_id']}/output", params={"token": "bad"})
    assert polled.status_code == 401

    stream = httpx.get(f"{url}/nap", headers={"Accept": "text/event-stream"}, timeout=30)
    assert stream.status_code == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = [block.split("\n") for block in stream.text.strip().split("\n\n")]
    assert [lines[0] for lines in events] == ["event: inngest.metadata", "event: inngest.redirect_info"]
    info = json.loads(events[1][1].removeprefix("data: "))
    assert info["url"].startswith(f"{engine.url}/v1/http/runs/{info['runId']}/output?token=")


@pytest.mark.flask
def test_reentry_with_a_valid_signature_replays_and_answers_ops(
    modes: tuple[str, Work], engine: EngineServer
) -> None:
    url, work = modes
    response = httpx.get(f"{url}/nap", timeout=30)
    run_id = response.headers["location"].split("/runs/")[1].split("/")[0]
    # what the engine sends: the original request, signed, with X-Run-ID
    headers = {"X-Run-ID": run_id, protocol.Header.SIGNATURE: signing.sign(b"", SIGNING_KEY)}
    reentry = httpx.get(url + "/nap", headers=headers, timeout=30)
    assert reentry.status_code == 206, reentry.text
    assert reentry.headers["x-inngest-sdk"].startswith("eagerstep-py:")
    [op] = reentry.json()
    assert op["op"] == "Sleep"  # the recorded step replayed; the sleep is still pending
    assert work.calls == {"before": 1}


@pytest.mark.flask
def test_a_step_out_of_retries_ends_the_run_with_an_error_response(
    modes: tuple[str, Work], engine: EngineServer
) -> None:
    url, work = modes
    response = httpx.get(f"{url}/broken", follow_redirects=True, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["message"] == "broken failed (always)"
    assert work.calls == {"ok": 1, "broken": 2}  # retries=1: two attempts, "ok" never again
    [run] = _runs(engine)
    assert run["status"] == "Failed"


@pytest.mark.flask
@pytest.mark.parametrize("path", ["/fan-out", "/long"], ids=["parallel-group", "max-runtime"])
def test_parallel_groups_and_max_runtime_hand_over(
    modes: tuple[str, Work], engine: EngineServer, path: str
) -> None:
    url, work = modes
    response = httpx.get(url + path, timeout=30)
    assert response.status_code == 302, response.text
    final = httpx.get(response.headers["location"], timeout=30)
    assert final.status_code == 200, final.text
    assert final.json() == {"total": 10 if path == "/fan-out" else 3}
    assert all(count == 1 for count in work.calls.values()), work.calls  # each step ran once


@pytest.mark.flask
def test_an_unreachable_orchestrator_still_answers_a_finished_view(tmp_path: Path) -> None:
    from tests.integrations.servers import bind_loopback

    sock = bind_loopback()  # bound, never listening: connections are refused
    dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    work = Work()
    client = make_client(dead)
    with serve_wsgi(flask_app(client, work)) as url:
        response = httpx.post(f"{url}/shop/orders/2", json={}, timeout=60)
    sock.close()
    assert response.status_code == 201  # the view's answer; an error is logged for the run record
    assert work.calls == {"price": 1, "charge": 1, "mail": 1}


@pytest.mark.django
@pytest.mark.skipif(importlib.util.find_spec("django") is None, reason="needs django")
def test_django_still_checks_csrf_on_first_requests_only(engine: EngineServer) -> None:
    from django.conf import settings
    from django.test.utils import override_settings

    from tests.http.clients.django import setup_django

    setup_django()
    work = Work()
    middleware = ["django.middleware.csrf.CsrfViewMiddleware", *settings.MIDDLEWARE]
    with (
        override_settings(MIDDLEWARE=middleware),
        _django(make_client(engine.url), work, is_async=False) as url,
    ):
        refused = httpx.post(f"{url}/shop/orders/1", json={}, timeout=30)
        assert refused.status_code == 403  # no CSRF token: refused before the view runs
        assert work.calls == {}
        work.fail_once.add("charge")  # the signed re-entry (no CSRF token either) must get through
        with httpx.Client(cookies={"csrftoken": "a" * 32}) as browser:
            first = browser.post(
                f"{url}/shop/orders/1", json={}, headers={"X-CSRFToken": "a" * 32, "Referer": url}, timeout=30
            )
        assert first.status_code == 302, first.text
        final = httpx.get(first.headers["location"], timeout=30)
    assert final.status_code == 201, final.text
    assert work.calls == {"price": 1, "charge": 2, "mail": 1}


@pytest.mark.flask
def test_buffered_steps_send_a_fast_view_in_one_call(modes: tuple[str, Work], engine: EngineServer) -> None:
    url, _ = modes
    before = _stats(engine)
    response = httpx.get(f"{url}/batched", timeout=30)
    assert response.status_code == 200 and response.json() == {"total": 3}
    after = _stats(engine)
    assert after.get("sync_runs", 0) - before.get("sync_runs", 0) == 1
    assert after["checkpoints"] == before["checkpoints"]  # steps and response all in POST /v1/checkpoint
    [run] = _runs(engine)
    assert run["status"] == "Completed"
    assert len(httpx.get(f"{engine.url}/v1/runs/{run['run_id']}").json()["data"]["steps"]) == 2
