"""The checkpoint transport: the HTTP calls to ``POST {api}/v1/checkpoint/{run_id}/async`` and the
process-wide senders that schedule them.

Two senders schedule the flushes of the per-run buffers (:class:`eagerstep.core.checkpoint.RunCheckpointer`,
seen here only as :class:`Flushable`):

- one daemon thread per process (:func:`thread_sender`, behind ``handle()`` and the private loop
  of an ``async def`` function it serves); created lazily (:func:`prestart`, called by the serve
  handlers' first request, or the first checkpoint), re-created in a forked child (pid check),
  stopped by :func:`shutdown`;
- one asyncio task per event loop (:func:`loop_sender`, behind ``handle_async()``): flushes,
  timers and retry waits live on the loop; stopped by :func:`shutdown_async`.

The HTTP attempts themselves run on a few daemon worker threads of the process sender, over
keep-alive ``http.client`` connections (:class:`Connections`): they share the GIL with the user's
code, and a stdlib request costs about a quarter of the CPU of an ``httpx`` one, CPU the steps would
otherwise pay. A slow call for one run does not hold up the others.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import heapq
import http.client
import itertools
import logging
import os
import queue
import ssl
import threading
import time
import urllib.request
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import urlsplit

from eagerstep.core.protocol import Header, dumps
from eagerstep.core.signing import hash_signing_key

logger = logging.getLogger("eagerstep")


@dataclass(frozen=True, init=False)
class CheckpointTarget:
    """Where and as whom the checkpoints of one call request go."""

    api_base_url: str
    run_id: str
    fn_id: str
    qi_id: str | None
    request_id: str | None
    generation_id: int | None
    request_started_at_ms: int
    signing_key: str | None
    signing_key_fallback: str | None
    sdk_header: str

    def __init__(
        self,
        api_base_url: str,
        run_id: str,
        fn_id: str,
        qi_id: str | None,
        request_id: str | None,
        generation_id: int | None,
        request_started_at_ms: int,
        signing_key: str | None,
        signing_key_fallback: str | None,
        sdk_header: str,
    ) -> None:
        # One target per call request: a single dict update instead of the ten object.__setattr__
        # calls a frozen dataclass's generated __init__ makes (same fields, same frozenness).
        self.__dict__.update(
            api_base_url=api_base_url,
            run_id=run_id,
            fn_id=fn_id,
            qi_id=qi_id,
            request_id=request_id,
            generation_id=generation_id,
            request_started_at_ms=request_started_at_ms,
            signing_key=signing_key,
            signing_key_fallback=signing_key_fallback,
            sdk_header=sdk_header,
        )

    @functools.cached_property
    def url(self) -> str:
        return f"{self.api_base_url.rstrip('/')}/v1/checkpoint/{self.run_id}/async"

    def body(self, ops: list[dict[str, Any]]) -> bytes:
        """The request body; ``ts`` is now."""
        return dumps(
            {
                "run_id": self.run_id,
                "fn_id": self.fn_id,
                "qi_id": self.qi_id,
                "steps": ops,
                "request_id": self.request_id,
                "generation_id": self.generation_id,
                "request_started_at": self.request_started_at_ms,
                "ts": int(time.time() * 1000),
            }
        ).encode()

    def headers(self, use_fallback: bool) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            Header.SDK: self.sdk_header,
            Header.USER_AGENT: self.sdk_header,
        }
        key = self.signing_key_fallback if use_fallback else self.signing_key
        if key:
            headers[Header.AUTHORIZATION] = f"Bearer {_bearer(key)}"
        return headers


@lru_cache(maxsize=16)
def _bearer(key: str) -> str:
    try:
        return hash_signing_key(key)
    except ValueError:
        return key


# ------------------------------------------------------------------------------------------------
# Outcomes of one HTTP attempt

OK = "ok"
STALE = "stale"  # 409: the orchestrator has re-dispatched the run
RETRY = "retry"  # network error, timeout, 408, 429, 5xx
FATAL = "fatal"  # any other answer: retrying will not help
AUTH = "auth"  # 401/403: try the fallback key


def _classify(status: int) -> str:
    if 200 <= status < 300:
        return OK
    if status == 409:
        return STALE
    if status in (401, 403):
        return AUTH
    if status in (408, 429) or status >= 500:
        return RETRY
    return FATAL


@dataclass
class Job:
    """One HTTP attempt's worth of work, taken from a checkpointer by its sender."""

    target: CheckpointTarget
    ops: list[dict[str, Any]]
    use_fallback: bool
    timeout: float


class Flushable(Protocol):
    """What a sender needs from a per-run buffer: the next attempt to make, and its outcome."""

    def next_job(self, *, retry: bool = False, timer: int = 0) -> Job | None: ...

    def finish_attempt(self, job: Job, outcome: str, detail: str) -> float | None: ...

    def has_more(self) -> bool: ...

    def use_fallback_key(self) -> bool: ...


# ------------------------------------------------------------------------------------------------
# Senders


class Sender:
    """What a checkpointer needs from its sender."""

    def wake(self, checkpointer: Flushable) -> None:  # thread-safe
        raise NotImplementedError

    def wake_at(self, checkpointer: Flushable, deadline: float, token: int) -> None:
        raise NotImplementedError

    def on_own_loop(self) -> bool:
        """True when called on the event loop this sender runs on (blocking there would deadlock)."""
        return False


class Connections:
    """Keep-alive HTTP/1.1 connections of one sender worker, one per origin (stdlib ``http.client``).

    The sender threads share the GIL with user code, so the CPU a checkpoint call costs is taken
    from the steps: a bare ``http.client`` request costs about a quarter of an ``httpx`` one.
    Honours the ``HTTP(S)_PROXY``/``NO_PROXY`` environment variables. Used by one thread only.
    """

    def __init__(self) -> None:
        self._open: dict[tuple[str, str, int], http.client.HTTPConnection] = {}
        self._tls: ssl.SSLContext | None = None

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
        """POST ``body``; the reply's status and body. Raises ``OSError``/``HTTPException``."""
        parts = urlsplit(url)
        scheme, host = parts.scheme or "http", parts.hostname or "localhost"
        port = parts.port or (443 if scheme == "https" else 80)
        key = (scheme, host, port)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        for fresh in (False, True):
            conn = self._open.get(key)
            if conn is None:
                conn = self._open[key] = self._connect(scheme, host, port, timeout)
                fresh = True
            reused = conn.sock is not None
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            try:
                conn.request("POST", self._target(conn, url, path), body=body, headers=headers)
                response = conn.getresponse()
                content = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop(key)
                if reused and not fresh:
                    continue  # the server closed an idle keep-alive connection: once more, anew
                raise
            except (OSError, http.client.HTTPException):
                self._drop(key)
                raise
            if response.will_close:
                self._drop(key)
            return response.status, content
        raise ConnectionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        for key in list(self._open):
            self._drop(key)

    def _drop(self, key: tuple[str, str, int]) -> None:
        conn = self._open.pop(key, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    @staticmethod
    def _target(conn: http.client.HTTPConnection, url: str, path: str) -> str:
        # through a plain HTTP proxy, the request line carries the absolute URL
        return url if getattr(conn, "_eagerstep_proxied", False) else path

    def _connect(self, scheme: str, host: str, port: int, timeout: float) -> http.client.HTTPConnection:
        proxy = None
        if not urllib.request.proxy_bypass(host):
            proxy = urllib.request.getproxies_environment().get(scheme)
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            if proxy:
                p = urlsplit(proxy)
                tunnel = http.client.HTTPSConnection(
                    p.hostname or "", p.port or 80, timeout=timeout, context=self._tls
                )
                tunnel.set_tunnel(host, port)
                return tunnel
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=self._tls)
        if proxy:
            p = urlsplit(proxy)
            conn = http.client.HTTPConnection(p.hostname or "", p.port or 80, timeout=timeout)
            conn._eagerstep_proxied = True  # type: ignore[attr-defined]
            return conn
        return http.client.HTTPConnection(host, port, timeout=timeout)


class _Call:
    """An HTTP attempt a loop's sender hands to the sender's workers."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.future: concurrent.futures.Future[tuple[str, str]] = concurrent.futures.Future()

    def run(self, post: Callable[[Job], tuple[str, str]]) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            self.future.set_result(post(self.job))
        except BaseException as exc:  # reported to the awaiting task
            self.future.set_exception(exc)


@dataclass
class _Done:
    """A worker's report: one attempt for ``checkpointer`` ended with ``outcome``."""

    checkpointer: Flushable
    job: Job
    outcome: str
    detail: str


# kinds of items on the scheduler's queue
_K_NOW, _K_TIMER, _K_RETRY, _K_DONE, _K_STOP = 0, 1, 2, 3, 4


class _ThreadSender(Sender):
    """The process's checkpoint sender: one scheduler thread (flush decisions, timers, retries)
    and up to ``HTTP_WORKERS`` daemon threads making the HTTP attempts, so one slow call does not
    hold up the other runs' checkpoints. Each worker keeps its own keep-alive connections."""

    HTTP_WORKERS = 4

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._queue: queue.SimpleQueue[tuple[int, Any, float, int]] = queue.SimpleQueue()
        self._work: queue.SimpleQueue[Callable[[Connections], None] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._idle = 0
        self._busy = 0  # attempts handed to workers, not yet reported back
        self._workers_lock = threading.Lock()
        self._connections: list[Connections] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="eagerstep-checkpoint", daemon=True)
        self._thread.start()

    # -- called from any thread

    def wake(self, checkpointer: Flushable) -> None:
        self._queue.put((_K_NOW, checkpointer, 0.0, 0))

    def wake_at(self, checkpointer: Flushable, deadline: float, token: int) -> None:
        self._queue.put((_K_TIMER, checkpointer, deadline, token))

    def post_for_loop(self, job: Job) -> concurrent.futures.Future[tuple[str, str]]:
        """One HTTP attempt for a loop's sender; the future resolves with its outcome."""
        call = _Call(job)
        if self._stopping:
            call.future.set_result((RETRY, "the checkpoint sender is shutting down"))
        else:
            self._submit(lambda connections: call.run(lambda j: _post(connections, j)))
        return call.future

    def stop(self, timeout: float) -> None:
        """Finish what is queued (retries are made due now), within ``timeout``; then stop."""
        self._stopping = True
        self._queue.put((_K_STOP, None, 0.0, 0))
        self._thread.join(timeout)
        with self._workers_lock:
            workers = list(self._workers)
        for _ in workers:
            self._work.put(None)
        deadline = time.monotonic() + max(0.1, timeout)
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        if not any(w.is_alive() for w in workers):
            for connections in self._connections:
                connections.close()

    # -- the workers

    def ensure_worker(self) -> None:
        """Have at least one HTTP worker running (started ahead of the first checkpoint call)."""
        with self._workers_lock:
            if not self._workers and not self._stopping:
                self._start_worker_locked()

    def _start_worker_locked(self) -> None:
        worker = threading.Thread(
            target=self._work_loop,
            name=f"eagerstep-checkpoint-http-{len(self._workers)}",
            daemon=True,
        )
        self._workers.append(worker)
        self._idle += 1
        worker.start()

    def _submit(self, task: Callable[[Connections], None]) -> None:
        with self._workers_lock:
            if self._idle == 0 and len(self._workers) < self.HTTP_WORKERS:
                self._start_worker_locked()
        self._work.put(task)

    def _work_loop(self) -> None:
        connections = Connections()
        with self._workers_lock:
            self._connections.append(connections)
        while True:
            task = self._work.get()
            if task is None:
                return
            with self._workers_lock:
                self._idle -= 1
            try:
                task(connections)
            except Exception:  # never let one run's trouble stop the sender
                logger.exception("checkpoint sender: unexpected error")
            finally:
                with self._workers_lock:
                    self._idle += 1

    def _attempt(self, connections: Connections, checkpointer: Flushable, job: Job) -> None:
        try:
            outcome, detail = _post(connections, job)
            if outcome == AUTH and checkpointer.use_fallback_key():
                job.use_fallback = True
                outcome, detail = _post(connections, job)
            if outcome == AUTH:
                outcome = FATAL
        except Exception as exc:
            outcome, detail = FATAL, f"{type(exc).__name__}: {exc}"
        self._queue.put((_K_DONE, _Done(checkpointer, job, outcome, detail), 0.0, 0))

    # -- the scheduler

    def _run(self) -> None:
        # The first HTTP worker starts here, not on the thread that started this sender; with no
        # thread to spare now, _submit tries again when there is work.
        with contextlib.suppress(RuntimeError):
            self.ensure_worker()
        ready: deque[tuple[Flushable, int, int]] = deque()
        timers: list[tuple[float, int, Flushable, int, int]] = []
        sequence = itertools.count()
        while True:
            if self._stopping and not ready and not timers and not self._busy:
                return
            if ready:
                wait: float | None = 0.0
            elif timers:
                wait = max(0.0, timers[0][0] - time.monotonic())
            else:
                wait = None
            try:
                item = self._queue.get(timeout=wait) if wait != 0.0 else self._queue.get_nowait()
            except queue.Empty:
                item = None
            while item is not None:
                kind, obj, deadline, token = item
                if kind == _K_NOW:
                    ready.append((obj, kind, token))
                elif kind in (_K_TIMER, _K_RETRY):
                    heapq.heappush(timers, (deadline, next(sequence), obj, kind, token))
                elif kind == _K_DONE:
                    self._busy -= 1
                    self._done(obj, ready, timers, sequence)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            now = time.monotonic()
            while timers and (timers[0][0] <= now or self._stopping):  # stopping: due now
                _, _, checkpointer, kind, token = heapq.heappop(timers)
                ready.append((checkpointer, kind, token))
            while ready:
                checkpointer, kind, token = ready.popleft()
                try:
                    job = checkpointer.next_job(
                        retry=kind == _K_RETRY, timer=token if kind == _K_TIMER else 0
                    )
                except Exception:
                    logger.exception("checkpoint sender: unexpected error")
                    continue
                if job is not None:
                    self._busy += 1
                    self._submit(functools.partial(self._attempt, checkpointer=checkpointer, job=job))

    def _done(
        self,
        done: _Done,
        ready: deque[tuple[Flushable, int, int]],
        timers: list[tuple[float, int, Flushable, int, int]],
        sequence: itertools.count[int],
    ) -> None:
        checkpointer = done.checkpointer
        try:
            delay = checkpointer.finish_attempt(done.job, done.outcome, done.detail)
            if delay is not None:
                heapq.heappush(timers, (time.monotonic() + delay, next(sequence), checkpointer, _K_RETRY, 0))
            elif checkpointer.has_more():
                ready.append((checkpointer, _K_NOW, 0))
        except Exception:
            logger.exception("checkpoint sender: unexpected error")


def _post(connections: Connections, job: Job) -> tuple[str, str]:
    """One HTTP attempt; its outcome class and a short description."""
    try:
        body = job.target.body(job.ops)
    except (TypeError, ValueError) as exc:
        return FATAL, f"a step output is not JSON: {exc}"
    try:
        status, _ = connections.post(job.target.url, body, job.target.headers(job.use_fallback), job.timeout)
    except TimeoutError:
        return RETRY, "timed out"
    except (OSError, http.client.HTTPException) as exc:
        return RETRY, f"{type(exc).__name__}: {exc}"
    return _classify(status), f"HTTP {status}"


class _LoopSender(Sender):
    """One asyncio task per event loop: it starts each flush as a child task, which waits out
    retries with ``asyncio.sleep`` and awaits each HTTP attempt made by the process sender's
    workers (the loop spends no CPU on HTTP, and an attempt costs far less there; see
    :class:`Connections`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.pid = os.getpid()
        self.loop = loop
        self._loop_thread: int | None = None
        self._ready: deque[Flushable] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._stopping = False

    def on_own_loop(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def wake(self, checkpointer: Flushable) -> None:
        if threading.get_ident() == self._loop_thread and self._wakeup is not None:
            self._ready.append(checkpointer)
            self._wakeup.set()
        else:
            self.loop.call_soon_threadsafe(self._wake_here, checkpointer)

    def wake_at(self, checkpointer: Flushable, deadline: float, token: int) -> None:
        delay = max(0.0, deadline - time.monotonic())

        def fire() -> None:
            self._spawn(checkpointer, timer=token)

        if threading.get_ident() == self._loop_thread:
            self.loop.call_later(delay, fire)
        else:
            self.loop.call_soon_threadsafe(self.loop.call_later, delay, fire)

    def start_here(self) -> None:
        """Start the sender task; must run on the loop."""
        if self._task is not None:
            return
        self._loop_thread = threading.get_ident()
        self._wakeup = asyncio.Event()
        self._task = self.loop.create_task(self._run(), name="eagerstep-checkpoint")

    def _wake_here(self, checkpointer: Flushable) -> None:
        self.start_here()
        assert self._wakeup is not None
        self._ready.append(checkpointer)
        self._wakeup.set()

    async def _run(self) -> None:
        assert self._wakeup is not None
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._ready:
                    self._spawn(self._ready.popleft())
                if self._stopping:
                    return
        finally:
            if not self._stopping:  # cancelled: the loop is ending (asyncio.run); so is this sender
                _forget_loop(self.loop, self)

    def _spawn(self, checkpointer: Flushable, timer: int = 0) -> None:
        if self._task is None:
            self.start_here()
        task = self.loop.create_task(self._flush(checkpointer, timer))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, checkpointer: Flushable, timer: int) -> None:
        retry = False
        try:
            while True:
                job = checkpointer.next_job(retry=retry, timer=timer)
                timer = 0
                if job is None:
                    return
                outcome, detail = await self._post(job)
                if outcome == AUTH and checkpointer.use_fallback_key():
                    job.use_fallback = True
                    outcome, detail = await self._post(job)
                if outcome == AUTH:
                    outcome = FATAL
                delay = checkpointer.finish_attempt(job, outcome, detail)
                if delay is not None:
                    await asyncio.sleep(delay)
                    retry = True
                elif checkpointer.has_more():
                    retry = False
                else:
                    return
        except Exception:
            logger.exception("checkpoint sender: unexpected error")

    @staticmethod
    async def _post(job: Job) -> tuple[str, str]:
        return await asyncio.wrap_future(thread_sender().post_for_loop(job))

    async def stop(self, timeout: float) -> None:
        """Let flushes in flight finish (within ``timeout``), then stop the task."""
        self._stopping = True
        if self._flushes:
            await asyncio.wait(set(self._flushes), timeout=timeout)
        for task in list(self._flushes):
            task.cancel()
        if self._task is not None and self._wakeup is not None:
            self._wakeup.set()
            try:
                await asyncio.wait_for(self._task, timeout=1.0)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._task.cancel()


# ------------------------------------------------------------------------------------------------
# Process-wide state (fork-safe)

_state_lock = threading.Lock()
_thread: _ThreadSender | None = None
_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSender] = weakref.WeakKeyDictionary()


def _after_fork_in_child() -> None:
    # The parent's sender thread does not exist here, and its locks may be held: start afresh.
    global _state_lock, _thread, _loops
    _state_lock = threading.Lock()
    _thread = None
    _loops = weakref.WeakKeyDictionary()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _forget_loop(loop: asyncio.AbstractEventLoop, sender: _LoopSender) -> None:
    with _state_lock:
        if _loops.get(loop) is sender:
            del _loops[loop]


def thread_sender() -> _ThreadSender:
    global _thread
    sender = _thread
    if sender is not None and sender.pid == os.getpid():
        return sender
    with _state_lock:
        if _thread is None or _thread.pid != os.getpid():
            _thread = _ThreadSender()
        return _thread


def prestart() -> None:
    """Start the process's sender thread now, if not running in this process (it starts its
    first HTTP worker itself).

    The serve handlers call it on their first request, so that no step pays for thread start-up
    (nor waits for the new thread to be scheduled). Idempotent and fork-safe: a forked child
    starts its own sender on its own first request.
    """
    thread_sender()


def loop_sender(loop: asyncio.AbstractEventLoop) -> _LoopSender:
    sender = _loops.get(loop)
    if sender is not None and sender.pid == os.getpid():
        return sender
    with _state_lock:
        sender = _loops.get(loop)
        if sender is None or sender.pid != os.getpid():
            sender = _loops[loop] = _LoopSender(loop)
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        sender.start_here()
    return sender


def shutdown(timeout: float = 5.0) -> None:
    """Stop the process's sender thread after the flushes it has (within ``timeout``).

    For adapters at process exit; a later checkpoint starts a new sender.
    """
    global _thread
    with _state_lock:
        sender, _thread = _thread, None
    if sender is not None and sender.pid == os.getpid():
        sender.stop(timeout)


async def shutdown_async(timeout: float = 5.0) -> None:
    """Stop the running loop's sender task after its flushes in flight (within ``timeout``)."""
    loop = asyncio.get_running_loop()
    with _state_lock:
        sender = _loops.pop(loop, None)
    if sender is not None and sender.pid == os.getpid():
        await sender.stop(timeout)
