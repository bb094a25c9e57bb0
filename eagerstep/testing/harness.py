"""``Harness``: the embedded engine on a manual clock, driving an app in process, for tests.

The engine runs on a helper thread with its real HTTP API on a loopback port (the app sends
events and checkpoints to it exactly as to ``eagerstep dev``). Its calls to the app do not go over
a socket: each is handed to the test's thread, which calls the app in process (see
``targets``) while it waits for a run. So function code runs on the test's thread, in the
order the engine asks for it, with the test's database connection: a Django ``TestCase``
sees what its steps wrote, and nothing runs behind the test's back between two assertions.

Time is a :class:`~eagerstep.engine.clock.ManualClock`. While waiting for a run to finish the
harness moves it to the next due timer whenever nothing else is left to do: sleeps and retry
backoff take no real time. Wait-for-event timeouts are moved through only when asked
(``timeouts=True`` or :meth:`Harness.advance`), since a test usually delivers the event instead.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpx

from eagerstep.core import deferred
from eagerstep.engine.appclient import AppHttpError, AppResponse
from eagerstep.engine.clock import ManualClock
from eagerstep.engine.dashboard import queries
from eagerstep.engine.model import BATCH, CALL, DEBOUNCE, INVOKE_TIMEOUT, SLEEP, WAIT_TIMEOUT
from eagerstep.engine.server import EngineServer
from eagerstep.testing.results import RunResult, run_result
from eagerstep.testing.targets import Target

if TYPE_CHECKING:
    from eagerstep.core.client import Client
    from eagerstep.engine.engine import Engine

T = TypeVar("T")
log = logging.getLogger("eagerstep.testing")

FINAL = ("Completed", "Failed", "Cancelled")
#: Timers the harness moves the clock through on its own: sleeps, retry backoff, debounce, batches.
AUTO_KINDS = frozenset({SLEEP, CALL, DEBOUNCE, BATCH})
#: ... and with ``timeouts=True`` also these: a wait_for_event or invoke that nobody answers.
TIMEOUT_KINDS = frozenset({WAIT_TIMEOUT, INVOKE_TIMEOUT})
#: How long a wait may take in real seconds before it fails (a run that never ends, an app that hangs).
DEFAULT_TIMEOUT = 30.0


class HarnessError(AssertionError):
    """A run did not reach the state a test waited for; the message says where it stopped."""


@dataclass
class _Call:
    url: str
    body: bytes
    headers: dict[str, str]
    future: asyncio.Future[AppResponse]
    loop: asyncio.AbstractEventLoop
    method: str = "POST"


class _InProcessCalls:
    """Stands in for the engine's app client: each call request is queued for the test's thread."""

    def __init__(self) -> None:
        self.pending: queue.Queue[_Call] = queue.Queue()

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float | None = None
    ) -> AppResponse:
        return await self.request("POST", url, body, headers, timeout)

    async def request(
        self, method: str, url: str, body: bytes, headers: dict[str, str], timeout: float | None = None
    ) -> AppResponse:
        """Any call the engine makes to the app (durable endpoints are called back with the
        method of their original request)."""
        loop = asyncio.get_running_loop()
        call = _Call(url, body, headers, loop.create_future(), loop, method)
        self.pending.put(call)
        return await call.future

    async def aclose(self) -> None:
        while not self.pending.empty():
            call = self.pending.get_nowait()
            if not call.future.done():
                call.future.set_exception(AppHttpError("the test harness closed"))


class _Faults:
    """Step failures injected by :meth:`Harness.fail_step`: step name -> (failures left, error)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.left: dict[str, list[Any]] = {}

    def wrap(self, step_id: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        if step_id not in self.left:
            return fn

        def fail_or_none() -> BaseException | None:
            with self.lock:
                entry = self.left.get(step_id)
                if not entry or entry[0] <= 0:
                    return None
                entry[0] -= 1
                made = entry[2] - entry[0]
            error: BaseException | type[BaseException] | None = entry[1]
            if error is None:
                return RuntimeError(
                    f"eagerstep.testing: failure {made} of {entry[2]} injected into step {step_id!r}"
                )
            return error() if isinstance(error, type) else error

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def failing_async(*args: Any, **kwargs: Any) -> Any:
                error = fail_or_none()
                if error is not None:
                    raise error
                return await fn(*args, **kwargs)

            return failing_async

        @functools.wraps(fn)
        def failing(*args: Any, **kwargs: Any) -> Any:
            error = fail_or_none()
            if error is not None:
                raise error
            return fn(*args, **kwargs)

        return failing


class _StepWithFaults:
    """``ctx.step`` with :class:`_Faults` applied to ``run``; everything else is the real step API."""

    def __init__(self, step: Any, faults: _Faults) -> None:
        self._step = step
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self._step, name)

    def run(self, step_id: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._step.run(step_id, self._faults.wrap(step_id, fn), *args, **kwargs)


def _idle_state(engine: Engine, kinds: frozenset[str]) -> tuple[bool, float | None]:
    """(nothing to do right now, due time of the nearest timer of ``kinds``); on the engine's loop."""
    items = engine.queue.items.values()
    if engine.queue.inflight:
        return False, None
    now = engine.clock.now()
    if any(item.due_at <= now for item in items):  # due now: the dispatcher is about to start it
        return False, None
    due = [item.due_at for item in items if item.kind in kinds]
    return True, min(due) if due else None


class Harness:
    """An in-process engine on a manual clock, serving one app to a test.

    Use it as a context manager (or call :meth:`start` and :meth:`close`)::

        with Harness(wsgi(app), client) as h:
            run = h.run("shop/order.created", {"id": 7})
            assert run.completed and run.step("charge").attempts == 1

    ``client`` is the app's ``eagerstep.Client``; while the harness runs, its settings point at the
    harness's engine in dev mode (``Client.override_settings``), whatever the environment says.
    ``db_path``: the engine's SQLite file (default: in memory). ``timeout``: how long, in real
    seconds, any single wait may take before it fails with a description of where the run stopped.
    """

    def __init__(
        self,
        target: Target,
        client: Client,
        *,
        db_path: str = ":memory:",
        timeout: float = DEFAULT_TIMEOUT,
        retry_interval: float = 1.0,
    ) -> None:
        self.target = target
        self.client = client
        self.timeout = timeout
        self.clock = ManualClock()
        self.server = EngineServer(db_path, clock=self.clock, retry_interval=retry_interval)
        self.engine = self.server.engine
        self._calls = _InProcessCalls()
        self._faults = _Faults()
        self._swapped: list[tuple[Any, Callable[..., Any]]] = []
        self._settings: Any = None
        self._http: httpx.Client | None = None
        self.url = self.server.url
        self.functions: list[str] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Harness:
        """Start the engine, point the client at it and sync the app; returns ``self``."""
        self.server.start()
        self._http = httpx.Client(base_url=self.url, timeout=self.timeout)

        def use_in_process_calls() -> None:
            self.engine.calls = self._calls  # type: ignore[assignment]

        self.server.run_sync(use_in_process_calls)
        self._settings = self.client.override_settings(
            DEV=self.url, API_BASE_URL=self.url, EVENT_API_BASE_URL=self.url
        )
        self._settings.__enter__()
        try:
            self.sync()
        except BaseException:
            self.close()
            raise
        return self

    def sync(self) -> list[str]:
        """Sync the app with the engine (a ``PUT`` to its serve path, as ``eagerstep dev`` sends);
        returns the ids of the functions the engine now knows."""
        reply = self.target.request("PUT", self.target.path, {"Host": "testserver"}, b"")
        if reply.status >= 300:
            raise HarnessError(
                f"the app did not sync: PUT {self.target.path} answered {reply.status}: "
                f"{reply.body[:500].decode('utf-8', 'replace')}"
            )
        self.functions = sorted(self.server.run_sync(lambda: list(self.engine.functions)))
        return self.functions

    def close(self) -> None:
        """Stop the engine, restore the client's settings and any handler :meth:`fail_step` wrapped."""
        for function, handler in reversed(self._swapped):
            function.handler = handler
        self._swapped.clear()
        if self._settings is not None:
            self._settings.__exit__(None, None, None)
            self._settings = None
        if self._http is not None:
            self._http.close()
            self._http = None
        self.server.stop()
        self.target.close()

    def __enter__(self) -> Harness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ events

    @property
    def http(self) -> httpx.Client:
        """An HTTP client for the engine's API (``/v1/runs/...``, ``/v1/events/...``)."""
        if self._http is None:
            raise RuntimeError("the harness is not started; use `with Harness(...) as h:`")
        return self._http

    def send(self, name: str, data: dict[str, Any] | None = None, **fields: Any) -> str:
        """Send an event to the engine (``id=`` makes it idempotent, ``ts=`` sets its time); returns
        its id. Nothing runs until the test waits (:meth:`wait`, :meth:`run`, :meth:`settle`)."""
        reply = self.http.post("/e/test", json={"name": name, "data": data or {}, **fields})
        if reply.status_code != 200:
            raise HarnessError(f"the engine refused event {name!r}: {reply.status_code} {reply.text}")
        return str(reply.json()["ids"][0])

    def run(
        self,
        name: str,
        data: dict[str, Any] | None = None,
        *,
        function: str | None = None,
        timeouts: bool = False,
        **fields: Any,
    ) -> RunResult:
        """Send an event and run what it triggers to completion (see :meth:`wait`)."""
        return self.wait(self.send(name, data, **fields), function=function, timeouts=timeouts)

    def deliver(self, name: str, data: dict[str, Any] | None = None, **fields: Any) -> str:
        """Send the event a run waits for (``step.wait_for_event``); returns its id. The waiting run
        continues when the test next waits for it."""
        return self.send(name, data, **fields)

    def events(self, name: str) -> list[str]:
        """Ids of the events called ``name`` the engine received (from the test or the app), oldest
        first: how a test finds the event its code under test sent. Deferred sends in flight
        (``DEFER_EVENTS``: they leave after the response, from a background thread) finish first."""
        deferred.drain(self.timeout)
        reply = self.http.get("/v1/events", params={"name": name, "limit": 1000})
        return [str(event["internal_id"]) for event in reversed(reply.json()["data"])]

    # ------------------------------------------------------------------ runs

    def runs(self, event_id: str) -> list[RunResult]:
        """Every run ``event_id`` started so far (they may still be running)."""
        ids = [run["run_id"] for run in self.http.get(f"/v1/events/{event_id}/runs").json()["data"]]
        return [self.result(run_id) for run_id in ids]

    def result(self, run_id: str) -> RunResult:
        """A run as it stands now: status, output or error, and every step with its attempts."""
        return run_result(self.server.run_sync(queries.get_run, self.engine, run_id))

    def wait(
        self,
        event_id: str,
        *,
        function: str | None = None,
        timeouts: bool = False,
        until: str = "final",
    ) -> RunResult:
        """Drive the run ``event_id`` started until it ends (``until="final"``) or until nothing
        is left for it to do without a test's help (``until="idle"``: it waits for an event).

        ``function`` picks the run when the event starts several (a function id, with or without the
        app's prefix). Sleeps and retry backoff are skipped by moving the clock; with
        ``timeouts=True`` so are wait-for-event and invoke timeouts. A run that cannot end fails
        the wait with what it is waiting for.
        """
        kinds = AUTO_KINDS | TIMEOUT_KINDS if timeouts else AUTO_KINDS
        try:
            run_id = self._drive(
                lambda: self._run_id(event_id, function), kinds, "a run of event " + event_id
            )
        except HarnessError:
            if self.server.run_sync(self.engine.history.is_unmatched, event_id):
                raise HarnessError(
                    f"event {event_id} started no run: it matched no function's trigger (the functions "
                    f"synced: {', '.join(self.functions) or 'none'})"
                ) from None
            raise
        if until == "final":
            return self._drive(lambda: self._final(run_id), kinds, f"run {run_id} to end")
        if until == "idle":
            self.settle(timeouts=timeouts)
            return self.result(run_id)
        raise ValueError('until must be "final" or "idle"')

    def settle(self, *, timeouts: bool = False) -> None:
        """Run everything the engine has to do now, moving the clock through sleeps and retry
        backoff (and, with ``timeouts=True``, through wait timeouts), until only waits are left."""
        kinds = AUTO_KINDS | TIMEOUT_KINDS if timeouts else AUTO_KINDS
        self._drive(lambda: None, kinds, "the engine to settle", settle=True)

    def advance(self, by: float | timedelta) -> None:
        """Move the clock forward ``by`` (seconds or a timedelta) and run what is due by then: a
        sleep that ends, a wait_for_event that times out. Timers due later stay pending (this
        does not skip ahead as :meth:`settle` and :meth:`wait` do)."""
        seconds = by.total_seconds() if isinstance(by, timedelta) else float(by)
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.clock.advance(seconds)
        self._drive(lambda: None, frozenset(), f"what is due after {seconds:g}s", settle=True)

    @contextmanager
    def failing(
        self, step: str, times: int = 1, error: BaseException | type[BaseException] | None = None
    ) -> Iterator[None]:
        """:meth:`fail_step` for the duration of a ``with`` block."""
        self.fail_step(step, times, error)
        try:
            yield
        finally:
            with self._faults.lock:
                self._faults.left.pop(step, None)

    def fail_step(
        self, step: str, times: int = 1, error: BaseException | type[BaseException] | None = None
    ) -> None:
        """Make step ``step`` (its id, in any function of the client) raise on its next ``times``
        executions, then run normally: the engine retries it as it would a real failure. ``error``:
        the exception to raise (default: a ``RuntimeError`` saying it was injected). For
        ``step.run`` steps."""
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._faults.lock:
            self._faults.left[step] = [times, error, times]
        self._wrap_handlers()

    # ------------------------------------------------------------------ internals

    def _wrap_handlers(self) -> None:
        wrapped = {id(function) for function, _ in self._swapped}
        faults = self._faults
        for function in self.client.functions:
            if id(function) in wrapped:
                continue
            original = function.handler
            if inspect.iscoroutinefunction(original):

                async def handler_async(ctx: Any, _original: Any = original) -> Any:
                    ctx.step = _StepWithFaults(ctx.step, faults)
                    return await _original(ctx)

                function.handler = handler_async
            else:

                def handler(ctx: Any, _original: Any = original) -> Any:
                    ctx.step = _StepWithFaults(ctx.step, faults)
                    return _original(ctx)

                function.handler = handler
            self._swapped.append((function, original))

    def _run_id(self, event_id: str, function: str | None) -> str | None:
        runs = self.http.get(f"/v1/events/{event_id}/runs").json()["data"]
        if function is not None:
            runs = [
                r for r in runs if r["function_id"] == function or r["function_id"].endswith("-" + function)
            ]
        if len(runs) > 1:
            ids = ", ".join(r["function_id"] for r in runs)
            raise HarnessError(
                f"event {event_id} started several runs ({ids}); pass function=... to pick one"
            )
        return str(runs[0]["run_id"]) if runs else None

    def _final(self, run_id: str) -> RunResult | None:
        result = self.result(run_id)
        return result if result.status in FINAL else None

    def _serve(self, call: _Call) -> None:
        parts = urlsplit(call.url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            reply = self.target.request(
                call.method, path, {**call.headers, "Host": parts.netloc or "testserver"}, call.body
            )
            response = AppResponse(reply.status, reply.headers, reply.body)
        except BaseException as exc:  # an app that raises is a 500, as a server would answer
            log.exception("eagerstep.testing: the app raised while handling a call request")
            result: BaseException = AppHttpError(f"the app raised {exc!r}")
            call.loop.call_soon_threadsafe(_settle_future, call.future, None, result)
            return
        call.loop.call_soon_threadsafe(_settle_future, call.future, response, None)

    def _drive(
        self, done: Callable[[], T | None], kinds: frozenset[str], what: str, *, settle: bool = False
    ) -> T:
        deadline = time.monotonic() + self.timeout
        drained = False
        while True:
            try:
                call = self._calls.pending.get(timeout=0.002)
            except queue.Empty:
                call = None
            if call is not None:
                self._serve(call)
                drained = False
                continue
            value = done()
            if value is not None and not settle:
                return value
            idle, due = self.server.run_sync(_idle_state, self.engine, kinds)
            if idle and self._calls.pending.empty():
                if not drained:  # events the app sends after a response (DEFER_EVENTS, the outbox)
                    deferred.drain(self.timeout)
                    drained = True
                    continue
                if due is not None:
                    self.clock.set(due)
                    continue
                if settle:
                    return value  # type: ignore[return-value]
                raise HarnessError(f"waiting for {what}: nothing is left to do; {self._describe()}")
            if time.monotonic() > deadline:
                raise HarnessError(f"waiting for {what}: not within {self.timeout}s; {self._describe()}")

    def _describe(self) -> str:
        timers = self.server.run_sync(self.engine.pending_timers)
        waits = self.server.run_sync(
            lambda: [(w.run_id, w.kind, w.event_name) for w in self.engine.waits.waits.values()]
        )
        parts = [f"runs waiting for events: {waits}" if waits else "no run waits for an event"]
        parts.append(f"timers: {timers}" if timers else "no timers")
        if waits:
            parts.append("deliver the event with h.deliver(...), or pass timeouts=True to let it time out")
        return "; ".join(parts)


def _settle_future(
    future: asyncio.Future[AppResponse], response: AppResponse | None, error: BaseException | None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert response is not None
        future.set_result(response)
