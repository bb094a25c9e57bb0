"""Parametrise every conformance test over the framework clients (each marked, skipped if missing)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.http.clients.base import HttpClient
from tests.support.orchestrator import RecordingOrchestrator

SIGNING_KEY = "signkey-test-8ee2262a15e8d3c42d6a840db7af3de2aab08ef632b32a37a687f24b34dba3ff"


def _installed(*names: str) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in names)


def _client(module: str, name: str, marker: str, needs: tuple[str, ...], id: str) -> Any:
    return pytest.param(
        (module, name),
        marks=[
            getattr(pytest.mark, marker),
            pytest.mark.skipif(not _installed(*needs), reason=f"needs {needs}"),
        ],
        id=id,
    )


CLIENTS = [
    _client("tests.http.clients.django", "DjangoHttpClient", "django", ("django",), "django"),
    _client(
        "tests.http.clients.django_async", "DjangoAsyncHttpClient", "django", ("django",), "django-async"
    ),
    _client("tests.http.clients.flask", "FlaskHttpClient", "flask", ("flask",), "flask"),
    _client("tests.http.clients.fastapi", "FastAPIHttpClient", "fastapi", ("fastapi", "httpx"), "fastapi"),
]

#: The X-Inngest-Framework value each adapter reports.
FRAMEWORK_HEADER = {"django": "django", "flask": "flask", "fastapi": "fast_api"}


@pytest.fixture(params=CLIENTS)
def http_client_class(request: pytest.FixtureRequest) -> type[HttpClient]:
    module, name = request.param
    cls: type[HttpClient] = getattr(importlib.import_module(module), name)
    return cls


def dev_settings(orchestrator: RecordingOrchestrator) -> dict[str, Any]:
    return {"DEV": True, "API_BASE_URL": orchestrator.url, "EVENT_API_BASE_URL": orchestrator.url}


def cloud_settings(orchestrator: RecordingOrchestrator) -> dict[str, Any]:
    return {**dev_settings(orchestrator), "DEV": False, "SIGNING_KEY": SIGNING_KEY}


MakeClient = Callable[..., HttpClient]


@pytest.fixture
def make_http_client(http_client_class: type[HttpClient]) -> Iterator[MakeClient]:
    """``make_http_client(settings)``: a client with these eagerstep settings, closed after the test."""
    made: list[HttpClient] = []

    def make(settings: dict[str, Any]) -> HttpClient:
        client = http_client_class(settings)
        made.append(client)
        return client

    yield make
    for client in reversed(made):
        client.close()


@pytest.fixture
def http_client(make_http_client: MakeClient, orchestrator: RecordingOrchestrator) -> HttpClient:
    return make_http_client(dev_settings(orchestrator))
