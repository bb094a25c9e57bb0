"""The interface every framework client implements, so one suite runs against all of them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar
from urllib.parse import urlsplit

from eagerstep.core.comm import Request, Response

T = TypeVar("T")


class HttpClient:
    """One framework app serving the conformance functions, reached through the framework's test client.

    ``settings`` are eagerstep keys (``DEV``, ``SIGNING_KEY``, ``API_BASE_URL``...), applied through
    the framework's own settings mechanism (Django EAGERSTEP, Flask app.config, FastAPI source).
    """

    framework = ""
    path = "/api/inngest"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)

    def send(self, method: str, path_and_query: str, body: bytes, headers: Mapping[str, str]) -> Response:
        raise NotImplementedError

    def handle(self, request: Request) -> Response:
        """Send a neutral request (as the driver builds it) to this app's serve path."""
        parts = urlsplit(request.url)
        target = self.path + (f"?{parts.query}" if parts.query else "")
        return self.send(request.method, target, request.body, dict(request.headers))

    def request(
        self, method: str, query: str = "", body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> Response:
        target = self.path + (f"?{query}" if query else "")
        return self.send(method, target, body, {"content-type": "application/json", **(headers or {})})

    def close(self) -> None:
        pass

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LoopThread:
    """An event loop on its own thread, as an ASGI server has: the app sees one loop across requests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-asgi-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def native_headers(items: Any) -> dict[str, str]:
    return {str(key).lower(): str(value) for key, value in items}
