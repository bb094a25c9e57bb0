"""A recording proxy between an orchestrator and an app: a real HTTP server on 127.0.0.1 that forwards
each call request to the app's serve URL and keeps a copy of the request and of the app's reply, in
order, for a test to assert on (as the Inngest server's SDK conformance runner does).
"""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

#: Headers the proxy does not copy between the two legs.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Exchange:
    """One call request as the orchestrator sent it, and the app's reply to it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int = 0
    reply_headers: dict[str, str] = field(default_factory=dict)
    reply_body: bytes = b""

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class RecordingProxy:
    """``with RecordingProxy(app_url) as proxy:`` — ``proxy.url`` stands in for the app.

    PUT is answered 200 without forwarding (as the conformance runner does: syncs go to the app
    directly); every other request is forwarded to ``app_url`` with the same query string.
    """

    def __init__(self, app_url: str) -> None:
        self.app_url = app_url
        self.exchanges: queue.Queue[Exchange] = queue.Queue()
        self._client = httpx.Client(timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_PUT(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                proxy._forward(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
        self._client.close()

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("content-length") or 0))
        parts = urlsplit(handler.path)
        headers = {k.lower(): v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        exchange = Exchange("POST", parts.path, dict(parse_qsl(parts.query)), headers, body)
        target = self.app_url + (f"?{parts.query}" if parts.query else "")
        try:
            reply = self._client.post(target, content=body, headers=headers)
            exchange.status, exchange.reply_body = reply.status_code, reply.content
            exchange.reply_headers = {k.lower(): v for k, v in reply.headers.items()}
        except httpx.HTTPError as exc:
            exchange.status, exchange.reply_body = 502, str(exc).encode()
        self.exchanges.put(exchange)
        handler.send_response(exchange.status)
        for name, value in exchange.reply_headers.items():
            if name not in _HOP_BY_HOP and name != "content-encoding":
                handler.send_header(name, value)
        handler.send_header("content-length", str(len(exchange.reply_body)))
        handler.end_headers()
        handler.wfile.write(exchange.reply_body)

    def next(self, timeout: float = 30.0) -> Exchange:
        """The next call request and its reply, in arrival order (fails after ``timeout``)."""
        try:
            return self.exchanges.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no call request reached the app within {timeout}s") from None

    def expect_none(self, seconds: float) -> None:
        """Assert that no call request arrives for ``seconds``."""
        try:
            exchange = self.exchanges.get(timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected call request {exchange.path}?{exchange.query}")
