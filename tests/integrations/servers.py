"""Real servers on free loopback ports (uvicorn for ASGI, a threaded WSGI server) and an HTTP handle."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx

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
