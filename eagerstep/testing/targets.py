"""How the test engine reaches the app under test: in process, on the test's own thread.

A target turns one HTTP request (method, path with query, headers, body) into the app's reply by
calling the app in process: a WSGI app through werkzeug's test client, an ASGI app through
Starlette's ``TestClient`` (one event loop for the whole test, as a server has), a Django project
through ``django.test.Client``. The request goes through the app's own routing, middleware and
eagerstep adapter, exactly as it would behind a server; only the socket is skipped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class TargetReply:
    """The app's reply: status, lower-case headers, body."""

    status: int
    headers: dict[str, str]
    body: bytes


class Target(Protocol):
    """An app the harness calls in process. ``path`` is where eagerstep is served (``/api/inngest``)."""

    path: str
    #: The framework's test client on the same app (werkzeug's ``Client``, Starlette's
    #: ``TestClient``, ``django.test.Client``): for requests to the app's own routes in a test.
    client: Any

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> TargetReply:
        """Send one request to the app (``path`` includes the query string); return its reply."""
        ...

    def close(self) -> None:
        """Release what the target holds (an event loop, for ASGI)."""
        ...


def _normalise(path: str) -> str:
    path = "/" + path.strip("/")
    return path


class WsgiTarget:
    """A WSGI app (Flask, or any other), called through werkzeug's test client."""

    def __init__(self, app: Any, path: str = "/api/inngest") -> None:
        from werkzeug.test import Client

        self.app = app
        self.path = _normalise(path)
        self.client = Client(app)

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> TargetReply:
        response = self.client.open(path, method=method, headers=headers, data=body)
        try:
            content = response.get_data()
            return TargetReply(
                response.status_code, {k.lower(): v for k, v in response.headers.items()}, content
            )
        finally:
            response.close()

    def close(self) -> None:
        return None


class AsgiTarget:
    """An ASGI app (FastAPI, Starlette, Django's ASGI handler), called through Starlette's
    ``TestClient``: one event loop on a helper thread for the harness's lifetime, with the app's
    lifespan run at start and at close (so startup hooks and the checkpoint sender behave as
    under uvicorn)."""

    def __init__(self, app: Any, path: str = "/api/inngest") -> None:
        with warnings.catch_warnings():  # newer Starlette prefers httpx2; httpx works the same here
            warnings.filterwarnings("ignore", message=".*httpx2")
            from starlette.testclient import TestClient

        self.app = app
        self.path = _normalise(path)
        self.client = TestClient(app, base_url="http://testserver", raise_server_exceptions=False)
        self.client.__enter__()

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> TargetReply:
        response = self.client.request(method, path, headers=headers, content=body)
        return TargetReply(
            response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content
        )

    def close(self) -> None:
        self.client.__exit__(None, None, None)


class DjangoTarget:
    """The configured Django project, called through ``django.test.Client``: on the test's thread,
    so steps see the test's database connection (and a ``TestCase``'s transaction)."""

    def __init__(self, path: str = "/api/inngest") -> None:
        from django.test import Client

        self.path = _normalise(path)
        self.client = Client()

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> TargetReply:
        response = self.client.generic(
            method,
            path,
            data=body,
            content_type=headers.get("Content-Type") or headers.get("content-type") or "application/json",
            headers={k: v for k, v in headers.items() if k.lower() != "content-type"},
        )
        if getattr(response, "streaming", False):
            content = b"".join(response.streaming_content)  # type: ignore[attr-defined]
        else:
            content = response.content
        return TargetReply(response.status_code, {k.lower(): v for k, v in response.items()}, content)

    def close(self) -> None:
        return None


def wsgi(app: Any, path: str = "/api/inngest") -> WsgiTarget:
    """A WSGI app (a Flask app) with eagerstep served at ``path``."""
    return WsgiTarget(app, path)


def asgi(app: Any, path: str = "/api/inngest") -> AsgiTarget:
    """An ASGI app (a FastAPI app) with eagerstep served at ``path``."""
    return AsgiTarget(app, path)


def django(path: str = "/api/inngest") -> DjangoTarget:
    """The Django project of ``DJANGO_SETTINGS_MODULE``, with eagerstep's urls included at ``path``."""
    return DjangoTarget(path)
