"""Serving the engine: ``serve`` (the CLI, in the main thread) and ``EngineServer`` (a thread, for tests)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from eagerstep.core import protocol
from eagerstep.engine.clock import Clock
from eagerstep.engine.engine import Engine
from eagerstep.engine.http import EngineApp

T = TypeVar("T")


def _server(engine: Engine, *, log_level: str = "warning") -> uvicorn.Server:
    config = uvicorn.Config(
        EngineApp(engine),
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_keep_alive=75,
        server_header=False,
        date_header=False,
    )
    return uvicorn.Server(config)


async def serve(
    engine: Engine,
    host: str,
    port: int,
    *,
    log_level: str = "warning",
    sock: socket.socket | None = None,
) -> None:
    """Run the engine and its HTTP API until interrupted (Ctrl-C); ``sock``: already bound."""
    async with engine:
        if sock is None:
            sock = bind(host, port)
        await _server(engine, log_level=log_level).serve(sockets=[sock])


def bind(host: str, port: int) -> socket.socket:
    """A bound TCP socket whose accepted connections get TCP_NODELAY.

    asyncio sets TCP_NODELAY on accepted connections only when the listening socket's proto is
    IPPROTO_TCP (and Linux copies the option from the listening socket); without it a response
    written in two parts (head, then body) waits ~40 ms for a delayed ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class EngineServer:
    """The engine plus its HTTP API on a background thread; ``start()`` returns the base URL."""

    def __init__(
        self,
        db_path: str | Path = ":memory:",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        signing_key: str | None = None,
        retry_interval: float = 0.05,
        call_timeout: float = 60.0,
        app_urls: Iterable[str] = (),
        max_inline_state: int = protocol.MAX_REQUEST_BODY_BYTES,
    ) -> None:
        self.engine = Engine(
            db_path,
            clock=clock,
            signing_key=signing_key,
            retry_interval=retry_interval,
            call_timeout=call_timeout,
            app_urls=app_urls,
            max_inline_state=max_inline_state,
        )
        self._sock = bind(host, port)
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> str:
        self._thread = threading.Thread(target=self._main, name="eagerstep-engine", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the engine did not start in time")
        if self._error is not None:
            raise RuntimeError("the engine failed to start") from self._error
        return self.url

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        async with self.engine:
            self._server = _server(self.engine)
            task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
            while not self._server.started and not task.done():
                await asyncio.sleep(0.005)
            self._ready.set()
            await task

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the engine's loop and wait for its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def run_sync(self, fn: Any, *args: Any, timeout: float = 30.0) -> Any:
        """Run a plain function on the engine's loop (engine state is loop-owned)."""

        async def wrapper() -> Any:
            return fn(*args)

        return self.call(wrapper(), timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(setattr, self._server, "should_exit", True)
        if self._thread is not None:
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> EngineServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
