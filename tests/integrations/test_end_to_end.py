"""Each framework over a real socket: sync, then a checkpointed run driven by the recording orchestrator."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tests.http import functions
from tests.http.conftest import dev_settings
from tests.integrations.servers import http_handle, serve_asgi, serve_wsgi
from tests.support.driver import drive
from tests.support.orchestrator import RecordingOrchestrator
from tests.support.requests import wire_event


def _missing(*names: str) -> bool:
    return any(importlib.util.find_spec(name) is None for name in names)


def check_run_over_socket(base_url: str, path: str, orchestrator: RecordingOrchestrator) -> None:
    sync = httpx.put(base_url + path, timeout=30)
    assert sync.status_code == 200, sync.text
    (register,) = orchestrator.calls_to("/fn/register")
    assert register.json["url"] == base_url + path

    handle = http_handle(base_url, path)
    result = drive(
        handle,
        "conformance-steps",
        wire_event("test/steps", {"start": 1}),
        orchestrator=orchestrator,
        url=base_url + path,
    )
    assert result.completed, result.error
    assert result.output == {"first": 2, "second": 12}
    assert result.invocations == 1
    async_result = drive(handle, "conformance-async-steps", orchestrator=orchestrator, url=base_url + path)
    assert async_result.completed and async_result.output == {"first": 2, "second": 12}
    standard = drive(handle, "conformance-standard", orchestrator=orchestrator, url=base_url + path)
    assert standard.completed and standard.invocations == 3


@contextmanager
def django_settings(orchestrator: RecordingOrchestrator) -> Iterator[None]:
    from django.conf import settings
    from django.test.utils import override_settings

    from tests.http.clients.django import setup_django

    setup_django()
    with override_settings(EAGERSTEP={**settings.EAGERSTEP, **dev_settings(orchestrator)}):
        yield


@pytest.mark.django
@pytest.mark.skipif(_missing("django"), reason="needs django")
def test_django_wsgi_over_a_socket(orchestrator: RecordingOrchestrator) -> None:
    with django_settings(orchestrator):
        from django.core.wsgi import get_wsgi_application

        with serve_wsgi(get_wsgi_application()) as base_url:
            check_run_over_socket(base_url, "/api/inngest", orchestrator)


@pytest.mark.django
@pytest.mark.skipif(_missing("django", "uvicorn"), reason="needs django and uvicorn")
def test_django_asgi_over_a_socket(orchestrator: RecordingOrchestrator) -> None:
    with django_settings(orchestrator):
        from django.core.asgi import get_asgi_application

        with serve_asgi(get_asgi_application(), lifespan="off") as base_url:
            check_run_over_socket(base_url, "/api/inngest-async", orchestrator)


@pytest.mark.flask
@pytest.mark.skipif(_missing("flask"), reason="needs flask")
def test_flask_over_a_socket(orchestrator: RecordingOrchestrator) -> None:
    from flask import Flask
    from werkzeug.serving import make_server

    from eagerstep.integrations.flask import EagerStep

    app = Flask(__name__)
    app.config.update({f"EAGERSTEP_{k}": v for k, v in dev_settings(orchestrator).items()})
    EagerStep(app, client=functions.client, functions=functions.FUNCTIONS)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    import threading

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        check_run_over_socket(f"http://127.0.0.1:{server.server_port}", "/api/inngest", orchestrator)
    finally:
        server.shutdown()
        thread.join(10)


@pytest.mark.fastapi
@pytest.mark.skipif(_missing("fastapi", "uvicorn"), reason="needs fastapi and uvicorn")
def test_fastapi_over_a_socket(orchestrator: RecordingOrchestrator) -> None:
    from fastapi import FastAPI

    from eagerstep.integrations.fastapi import router

    settings: dict[str, Any] = dev_settings(orchestrator)
    functions.client.set_settings_source(settings.get)
    try:
        app = FastAPI()
        app.include_router(router(functions.client, functions.FUNCTIONS), prefix="/api/inngest")
        with serve_asgi(app) as base_url:
            check_run_over_socket(base_url, "/api/inngest", orchestrator)
    finally:
        functions.client.set_settings_source(None)
