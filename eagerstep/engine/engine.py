"""The orchestrator's facade: ``Engine`` owns the state and wires the parts that change it.

Everything runs on one asyncio loop. Each state change is one short SQLite transaction
(``Engine.transaction``); memory mirrors the database for active runs and is rebuilt from it at
start, so a killed engine resumes where it stopped. Dispatch is push-based: accepting an event, a
reply or a checkpoint enqueues work and wakes the dispatcher at once; delayed work (sleeps,
timeouts, retry backoff, cron) sits in a persisted queue whose nearest due time arms one timer.

The parts, each in its own module: ``sync`` (apps and functions), ``events`` (intake and trigger
matching), ``flow`` (idempotency, rate limit, singleton, debounce, batching, throttle,
concurrency), ``runs`` (run lifecycle and memos), ``calls`` (the call loop), ``ops`` (per-op
handling), ``waits``, ``timers`` (the queue, its dispatcher and cron) and ``checkpoint``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from eagerstep.core import protocol, signing
from eagerstep.engine import inspection
from eagerstep.engine.appclient import AppClient
from eagerstep.engine.calls import CallLoop
from eagerstep.engine.checkpoint import CheckpointAPI
from eagerstep.engine.clock import Clock, RealClock
from eagerstep.engine.endpoints import EndpointAPI
from eagerstep.engine.events import EventIntake
from eagerstep.engine.flow import FlowControl
from eagerstep.engine.history import RunHistory
from eagerstep.engine.model import (
    SERVER_KIND,
    USER_AGENT,
    EngineError,
    FunctionInfo,
    RunListener,
    RunState,
    new_id,
)
from eagerstep.engine.ops import OpHandler
from eagerstep.engine.runs import RunLifecycle
from eagerstep.engine.store import FINAL_STATUSES, Store
from eagerstep.engine.sync import AppRegistry
from eagerstep.engine.timers import TimerQueue
from eagerstep.engine.waits import WaitIndex

log = logging.getLogger("eagerstep.engine")

__all__ = ["SERVER_KIND", "Engine", "EngineError", "new_id"]


class Engine:
    """The embedded orchestrator. Use ``async with Engine(db_path=...) as engine:``."""

    def __init__(
        self,
        db_path: str | Path = ":memory:",
        *,
        clock: Clock | None = None,
        signing_key: str | None = None,
        retry_interval: float = 1.0,
        call_timeout: float = 300.0,
        app_urls: Iterable[str] = (),
        max_connections: int = 100,
        max_inline_state: int = protocol.MAX_REQUEST_BODY_BYTES,
    ) -> None:
        self.db_path = str(db_path)
        #: A call request larger than this goes with ``use_api: true`` and no steps or events: the
        #: SDK loads them from ``/v0/runs/{id}/actions`` and ``/batch`` (as a server does past 4 MB).
        self.max_inline_state = max_inline_state
        self.clock: Clock = clock or RealClock()
        self.signing_key = signing_key or None
        self.retry_interval = retry_interval
        self.call_timeout = call_timeout
        self.app_urls = list(app_urls)
        self._max_connections = max_connections
        self.store: Store | None = None
        self.http: httpx.AsyncClient | None = None
        self.calls: AppClient | None = None
        self.functions: dict[str, FunctionInfo] = {}
        self.runs: dict[str, RunState] = {}
        #: Counters since start (calls made to apps, checkpoint requests, events, finished runs).
        self.stats: dict[str, int] = {
            "calls": 0,
            "checkpoints": 0,
            "events": 0,
            "runs_finished": 0,
            # replies with several non-lazy ops that are not a parallel plan (protocol.md §3.3b)
            "parallel_replies": 0,
        }
        self.apps = AppRegistry(self)
        self.intake = EventIntake(self)
        self.flow = FlowControl(self)
        self.lifecycle = RunLifecycle(self)
        self.queue = TimerQueue(self)
        self.waits = WaitIndex(self)
        self.caller = CallLoop(self)
        self.ops = OpHandler(self)
        self.checkpoints = CheckpointAPI(self)
        self.history = RunHistory(self)
        self.endpoints = EndpointAPI(self)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listeners: list[RunListener] = []
        self._run_waiters: dict[str, list[asyncio.Future[str]]] = {}
        self._valid_auth: set[str] = set()
        if self.signing_key:
            self._valid_auth = {self.signing_key}
            with contextlib.suppress(ValueError):
                self._valid_auth.add(signing.hash_signing_key(self.signing_key))

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self.queue.start()
        self.store = Store(self.db_path)
        self.history.create_tables()
        self.calls = AppClient(timeout=self.call_timeout, max_idle=self._max_connections)
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(self.call_timeout, connect=5.0),
            limits=httpx.Limits(
                max_connections=self._max_connections, max_keepalive_connections=self._max_connections
            ),
            headers={"User-Agent": USER_AGENT},
        )
        self.load()
        self.queue.start_dispatcher()
        for url in self.app_urls:
            self.spawn(self.apps.sync_until_reachable(url))

    async def close(self) -> None:
        await self.queue.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.aclose()
            self.http = None
        if self.calls is not None:
            await self.calls.aclose()
            self.calls = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the engine cancels on close."""
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    @property
    def db(self) -> Store:
        if self.store is None:
            raise RuntimeError("the engine is not started; use `async with Engine(...)`")
        return self.store

    def load(self) -> None:
        """(Re)build every in-memory index from the SQLite file."""
        self.apps.load()
        self.intake.index_triggers()
        self.lifecycle.load()
        self.queue.load()
        self.flow.parked.clear()
        self.waits.load()

    def transaction(self) -> _EngineTx:
        """``with engine.transaction():`` one SQLite transaction (nested uses join the outer one)."""
        return _EngineTx(self)

    # ------------------------------------------------------------------ listeners (tests, benchmarks)

    def add_listener(self, listener: RunListener) -> None:
        """Call ``listener(run_id, status, event_id)`` on the loop when a run ends."""
        self._listeners.append(listener)

    async def wait_for_run(self, run_id: str, timeout: float = 10.0) -> str:
        """Wait until the run ends; return its final status."""
        row = self.db.one("SELECT status FROM runs WHERE id=?", (run_id,))
        if row is None:
            raise EngineError(f"run {run_id} not found", 404)
        if row[0] in FINAL_STATUSES:
            return str(row[0])
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._run_waiters.setdefault(run_id, []).append(future)
        return await asyncio.wait_for(future, timeout)

    def notify_finished(self, run: RunState, status: str) -> None:
        """Tell listeners and ``wait_for_run`` callers that ``run`` ended."""
        event_id = run.events[0].get("id")
        for listener in self._listeners:
            try:
                listener(run.id, status, event_id)
            except Exception:
                log.exception("run listener failed")
        for future in self._run_waiters.pop(run.id, []):
            if not future.done():
                future.set_result(status)

    # ------------------------------------------------------------------ sync

    def check_auth(self, authorization: str | None) -> None:
        """Require ``Authorization: Bearer <signing key, raw or hashed>`` when a key is configured."""
        if not self.signing_key:
            return
        token = (authorization or "").strip()
        if token.lower().startswith("bearer"):
            token = token[6:].strip()
        if token not in self._valid_auth:
            raise EngineError(
                "unauthorized: send Authorization: Bearer <signing key> (the engine was started with"
                " --signing-key)",
                401,
            )

    def register(self, raw: Any, headers: Mapping[str, str]) -> dict[str, Any]:
        """Handle ``POST /fn/register``; ``headers`` keys are lower-case."""
        return self.apps.register(raw, headers)

    async def sync_app(self, url: str) -> tuple[int, Any]:
        """Ask the app at ``url`` to sync (``PUT url``); return its status and reply body."""
        return await self.apps.sync_app(url)

    def list_apps(self) -> list[dict[str, Any]]:
        return self.apps.list_apps()

    # ------------------------------------------------------------------ events, runs, timers

    def accept_events(self, raw: Any, seed: str | None = None) -> list[str]:
        """Store and route events (``POST /e/{key}``); returns their ids. One transaction."""
        return self.intake.accept_events(raw, seed)

    def cancel_run(self, run_id: str) -> str:
        return self.lifecycle.cancel_run(run_id)

    def fire_timers(self, *, run_id: str | None = None, kinds: Iterable[str] | None = None) -> int:
        """Make pending timers due now (sleeps, wait/invoke timeouts, retry backoff by default)."""
        return self.queue.fire_timers(run_id=run_id, kinds=kinds)

    def pending_timers(self) -> list[dict[str, Any]]:
        return self.queue.pending_timers()

    # ------------------------------------------------------------------ checkpoint API

    def checkpoint(self, run_id: str, raw: Any) -> None:
        """``POST /v1/checkpoint/{run_id}/async``."""
        self.checkpoints.checkpoint(run_id, raw)

    # ------------------------------------------------------------------ state and inspection APIs

    def run_actions(self, run_id: str) -> dict[str, Any]:
        return inspection.run_actions(self.db, self.runs.get(run_id), run_id)

    def run_batch(self, run_id: str) -> list[Any]:
        return inspection.run_batch(self.db, run_id)

    def get_run(self, run_id: str) -> dict[str, Any]:
        return inspection.get_run(self.db, self.runs.get(run_id), run_id)

    def event_runs(self, event_id: str) -> list[dict[str, Any]]:
        return inspection.event_runs(self.db, event_id)

    def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        return inspection.list_runs(self.db, limit)

    def get_event(self, event_id: str) -> dict[str, Any]:
        return inspection.get_event(self.db, event_id)


class _EngineTx:
    """One SQLite transaction; on failure, memory is rebuilt from the file."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.cm: Any = None

    def __enter__(self) -> None:
        self.cm = self.engine.db.tx()
        self.cm.__enter__()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        nested = self.engine.db._depth > 1
        failure = exc
        try:
            self.cm.__exit__(exc_type, exc, tb)  # the deferred writes and the commit may fail too
        except BaseException as error:
            failure = error
            raise
        finally:
            if failure is not None and not nested:
                log.error("a state change failed and was rolled back; reloading state: %r", failure)
                self.engine.load()
