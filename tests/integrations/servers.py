"""Real servers on free loopback ports (uvicorn for ASGI, a threaded WSGI server) and an HTTP handle."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest

from eagerstep.core.comm import Request, Response


def bind_loopback() -> socket.socket:
    """A TCP socket bound to 127.0.0.1:<free port> whose accepted connections get TCP_NODELAY.

    Like ``eagerstep.engine.server.bind`` (not imported: the framework envs lack the engine extra).
    asyncio sets TCP_NODELAY on accepted connections only when the listening socket's proto is
    IPPROTO_TCP; without it a keep-alive response written in two parts can wait ~40 ms for a
    delayed ACK.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve_asgi(app: Any, *, lifespan: str = "auto") -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1:<free port>; yields the base URL."""
    import uvicorn

    sock = bind_loopback()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan=lifespan, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_wsgi(app: Callable[..., Any]) -> Iterator[str]:
    """Run a WSGI ``app`` on a threaded wsgiref server on 127.0.0.1:<free port>."""
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def http_handle(base_url: str, path: str) -> Callable[[Request], Response]:
    """A ``handle(Request) -> Response`` that sends the request over the socket to ``base_url + path``."""
    client = httpx.Client(timeout=30)

    def handle(request: Request) -> Response:
        query = request.url.partition("?")[2]
        url = base_url + path + (f"?{query}" if query else "")
        native = client.request(request.method, url, content=request.body, headers=dict(request.headers))
        return Response(native.status_code, dict(native.headers.items()), native.content)

    return handle


def _framework(name: str, marker: str, needs: tuple[str, ...]) -> Any:
    missing = [module for module in needs if importlib.util.find_spec(module) is None]
    return pytest.param(
        name,
        marks=[getattr(pytest.mark, marker), pytest.mark.skipif(bool(missing), reason=f"needs {missing}")],
        id=name,
    )


#: ``@pytest.mark.parametrize("framework", FRAMEWORKS)``: every adapter served by
#: :func:`serve_framework`, each with its framework's marker, skipped where it is not installed.
FRAMEWORKS = [
    _framework("django", "django", ("django",)),
    _framework("django-async", "django", ("django", "uvicorn")),
    _framework("flask", "flask", ("flask",)),
    _framework("fastapi", "fastapi", ("fastapi", "uvicorn")),
]


@contextmanager
def serve_framework(framework: str, settings: dict[str, Any]) -> Iterator[str]:
    """Serve ``tests.http.functions`` through one adapter with these eagerstep settings, on a real
    server on 127.0.0.1; yields the serve URL (``http://127.0.0.1:<port>/api/inngest...``)."""
    from tests.http import functions

    if framework in ("django", "django-async"):
        from django.conf import settings as django_settings
        from django.test.utils import override_settings

        from tests.http.clients.django import setup_django

        setup_django()
        with override_settings(EAGERSTEP={**django_settings.EAGERSTEP, **settings}):
            if framework == "django":
                from django.core.wsgi import get_wsgi_application

                with serve_wsgi(get_wsgi_application()) as base_url:
                    yield base_url + "/api/inngest"
            else:
                from django.core.asgi import get_asgi_application

                with serve_asgi(get_asgi_application(), lifespan="off") as base_url:
                    yield base_url + "/api/inngest-async"
    elif framework == "flask":
        from flask import Flask

        from eagerstep.integrations.flask import EagerStep

        app = Flask(__name__)
        app.config.update({f"EAGERSTEP_{k}": v for k, v in settings.items()})
        EagerStep(app, client=functions.client, functions=functions.FUNCTIONS)
        with serve_wsgi(app) as base_url:
            yield base_url + "/api/inngest"
    elif framework == "fastapi":
        from fastapi import FastAPI

        from eagerstep.integrations.fastapi import router

        functions.client.set_settings_source(settings.get)
        try:
            app = FastAPI()
            app.include_router(router(functions.client, functions.FUNCTIONS), prefix="/api/inngest")
            with serve_asgi(app) as base_url:
                yield base_url + "/api/inngest"
        finally:
            functions.client.set_settings_source(None)
    else:  # pragma: no cover
        raise ValueError(f"unknown framework {framework!r}")
