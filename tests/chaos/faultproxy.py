"""A fault-injecting HTTP proxy on 127.0.0.1, for the chaos suite.

``FaultProxy(target)`` forwards every request (any method, path and query) to ``target`` and copies
the reply back, except when its current :class:`Fault` fires. A fault matches requests by path
prefix and fires on a schedule (every Nth matching request, or during a time window), so a run
meets it while it is in flight:

- ``status``: answer ``status`` (500, 409, ...) without forwarding;
- ``hang``: hold the request for ``seconds`` (past the client's timeout), then forward it late;
- ``reset``: reset the connection (TCP RST) without reading on: to the client, as a refused or
  dropped connection;
- ``down``: for ``seconds`` out of every ``period`` seconds every matching request is reset: the
  target is unreachable for a while, then back;
- ``duplicate``: forward the request, and deliver a copy of it to the target at the same time (a
  duplicate delivery); the copy's reply is dropped.

Between the app and the engine it breaks the checkpoint API; between the engine and the app it
breaks call requests. ``retarget()`` points it at a restarted target (the engine after a SIGKILL).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}
KINDS = ("status", "hang", "reset", "down", "duplicate")


@dataclass(frozen=True)
class Fault:
    kind: str
    path_prefix: str = "/"
    every: int = 3
    status: int = 500
    seconds: float = 0.0
    period: float = 0.0
    limit: int = 10_000

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {KINDS}")
        if self.every < 1:
            raise ValueError("Fault(every=...) must be at least 1")
        if self.kind == "down" and not 0 < self.seconds < self.period:
            raise ValueError("a down fault needs 0 < seconds < period")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a reset connection is the point, not an error


#: Told of each forwarded request: when it arrived (``time.time()``), its path and body, the reply's
#: status and body, and whether the reply reached the client (False: it had given up or died).
Observer = Callable[[float, str, bytes, int, bytes, bool], None]


class FaultProxy:
    """``with FaultProxy(target) as proxy:`` — ``proxy.url`` stands in for ``target``."""

    def __init__(self, target: str, fault: Fault | None = None, observer: Observer | None = None) -> None:
        self.target = target.rstrip("/")
        self.observer = observer
        self._fault = fault
        self._armed_at = time.monotonic()
        self._seen = 0
        self._lock = threading.Lock()
        #: how many times each fault kind fired, and how many requests were forwarded
        self.counts: Counter[str] = Counter()
        self._client = httpx.Client(
            timeout=httpx.Timeout(120.0, connect=5.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=128),
        )
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy._handle(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # ------------------------------------------------------------------ control

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
        self._client.close()

    def arm(self, fault: Fault | None) -> None:
        """Inject ``fault`` from now on (None: forward everything); its schedule starts again."""
        with self._lock:
            self._fault, self._armed_at, self._seen = fault, time.monotonic(), 0

    def retarget(self, target: str) -> None:
        self.target = target.rstrip("/")

    # ------------------------------------------------------------------ serving

    def _decide(self, path: str) -> Fault | None:
        with self._lock:
            fault = self._fault
            if fault is None or not path.startswith(fault.path_prefix):
                return None
            if self.counts[fault.kind] >= fault.limit:
                return None
            if fault.kind == "down":
                fires = (time.monotonic() - self._armed_at) % fault.period < fault.seconds
            else:
                self._seen += 1
                fires = self._seen % fault.every == 0
            if fires:
                self.counts[fault.kind] += 1
                return fault
            return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        arrived = time.time()
        body = handler.rfile.read(int(handler.headers.get("content-length") or 0))
        fault = self._decide(handler.path)
        if fault is not None and fault.kind in ("reset", "down"):
            _reset(handler)
            return
        if fault is not None and fault.kind == "status":
            _reply(handler, fault.status, {"content-type": "application/json"}, b'{"error":"injected"}')
            return
        if fault is not None and fault.kind == "hang":
            time.sleep(fault.seconds)
        headers = {k.lower(): v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        if fault is not None and fault.kind == "duplicate":
            threading.Thread(
                target=self._send, args=(handler.command, handler.path, headers, body), daemon=True
            ).start()
        self.counts["forwarded"] += 1
        try:
            reply = self._send(handler.command, handler.path, headers, body)
        except httpx.HTTPError as exc:
            _reply(handler, 502, {"content-type": "text/plain"}, f"proxy: {exc}".encode())
            return
        reply_headers = {k.lower(): v for k, v in reply.headers.items() if k.lower() not in _HOP_BY_HOP}
        delivered = _reply(handler, reply.status_code, reply_headers, reply.content)
        if self.observer is not None:
            self.observer(arrived, handler.path, body, reply.status_code, reply.content, delivered)

    def _send(self, method: str, path: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        return self._client.request(method, self.target + path, content=body, headers=headers)


def _reply(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes) -> bool:
    """Write the reply; False when the client is gone (it gave up, timed out, or died)."""
    try:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("content-length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()
    except OSError:
        handler.close_connection = True
        return False
    return True


def _reset(handler: BaseHTTPRequestHandler) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0)."""
    handler.close_connection = True
    sock: socket.socket = handler.connection
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass
