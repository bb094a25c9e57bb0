"""Helpers for engine end-to-end tests: app servers on free loopback ports, bounded waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from werkzeug.serving import make_server

FINAL = ("Completed", "Failed", "Cancelled")


@contextmanager
def wsgi_app_server(app: Any) -> Iterator[str]:
    """Serve a WSGI app on 127.0.0.1 (free port) in a thread; yield its origin."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


@contextmanager
def asgi_app_server(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 (free port) in a thread; yield its origin."""
    import asyncio

    import uvicorn

    from eagerstep.engine.server import bind

    sock = bind("127.0.0.1", 0)  # IPPROTO_TCP: accepted connections get TCP_NODELAY
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))

    def main() -> None:
        asyncio.run(server.serve(sockets=[sock]))

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("app server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


#: How long a wait may take before it fails: generous, so a loaded machine is not a failure; a wait
#: returns as soon as its condition holds, so passing tests do not get slower.
WAIT_TIMEOUT = 30.0


def wait_for(predicate: Callable[[], Any], timeout: float = WAIT_TIMEOUT, interval: float = 0.01) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class EngineClient:
    """A tiny client for the engine's API, as a test uses it."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=WAIT_TIMEOUT)

    def sync(self, app_url: str) -> dict[str, Any]:
        response = self.http.post("/v1/dev/apps", json={"url": app_url})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def send(self, name: str, data: dict[str, Any] | None = None, **extra: Any) -> str:
        response = self.http.post("/e/test-key", json={"name": name, "data": data or {}, **extra})
        assert response.status_code == 200, response.text
        return str(response.json()["ids"][0])

    def runs_of(self, event_id: str) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self.http.get(f"/v1/events/{event_id}/runs").json()["data"]
        return runs

    def run(self, run_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.http.get(f"/v1/runs/{run_id}").json()["data"]
        return data

    def wait_run(
        self, event_id: str, timeout: float = WAIT_TIMEOUT, status: tuple[str, ...] = FINAL
    ) -> dict[str, Any]:
        """Wait until the (first) run of ``event_id`` reaches one of ``status``; return it with steps."""

        def check() -> dict[str, Any] | None:
            runs = self.runs_of(event_id)
            if runs and runs[0]["status"] in status:
                return self.run(runs[0]["run_id"])
            return None

        result: dict[str, Any] = wait_for(check, timeout)
        return result

    def wait_step(
        self, event_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = WAIT_TIMEOUT
    ) -> None:
        def check() -> bool:
            runs = self.runs_of(event_id)
            return bool(runs) and any(predicate(s) for s in self.run(runs[0]["run_id"])["steps"])

        wait_for(check, timeout)

    def fire_timers(self, **body: Any) -> int:
        response = self.http.post("/v1/dev/timers/fire", json=body)
        assert response.status_code == 200, response.text
        return int(response.json()["fired"])

    def close(self) -> None:
        self.http.close()
