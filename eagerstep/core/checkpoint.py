"""The per-run checkpoint buffer: :class:`RunCheckpointer` and its settings, :class:`Checkpointing`.

A :class:`RunCheckpointer` buffers the ``StepRun`` ops of one call request and has a sender of
:mod:`eagerstep.core.transport` checkpoint them off the user's thread. ``push`` is the hot path: it
appends to a list under a lock and, when a flush is due, wakes the sender; it never encodes JSON or
touches the network. Steps that finish while a flush is in flight join the next one (coalescing),
so a fast function makes fewer checkpoint calls than it has steps.

A flush is retried with exponential backoff and jitter (5 attempts from ~100 ms by default),
switches to the fallback signing key on 401/403, and stops at a 409 (stale dispatch). Whatever was
not confirmed is handed back by :meth:`RunCheckpointer.flush` / :meth:`RunCheckpointer.settle`, in
push order, so the caller can return it in the 206 reply: a completed step is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

from eagerstep.core.transport import (
    OK,
    RETRY,
    STALE,
    CheckpointTarget,
    Job,
    Sender,
    loop_sender,
    thread_sender,
)

logger = logging.getLogger("eagerstep")

__all__ = ["CheckpointTarget", "Checkpointing", "RunCheckpointer"]


@dataclass(frozen=True)
class Checkpointing:
    """How a function checkpoints.

    ``buffered_steps``: a flush starts once this many steps are unflushed (1: after every step).
    ``max_interval``: also start a flush this long after a step entered an empty buffer (None: off).
    ``max_runtime``: after this long in one request, the next step is handed back to the
    orchestrator as ``StepPlanned`` (None: no limit). ``max_unflushed_steps``: backpressure cap;
    only past it does a step wait for a flush to finish. ``request_timeout``: per HTTP attempt.
    ``max_attempts``: HTTP attempts per flush. ``retry_delay``: the first backoff (doubling, with
    jitter). ``parallel_threads``: the size of the process's pool for the steps of eager parallel
    groups (``def`` functions; one pool per size). A reply waits at most ``MAX_REPLY_WAIT`` seconds
    for the checkpoint API: whatever is unconfirmed by then goes in the reply (a step the server
    already stored is ignored there).
    """

    MAX_REPLY_WAIT: ClassVar[float] = 10.0

    buffered_steps: int = 1
    max_interval: timedelta | None = None
    max_runtime: timedelta | None = timedelta(seconds=10)
    max_unflushed_steps: int = 1000
    request_timeout: timedelta = timedelta(seconds=2)
    max_attempts: int = 5
    retry_delay: timedelta = timedelta(milliseconds=100)
    parallel_threads: int = 8

    def __post_init__(self) -> None:
        if self.buffered_steps < 1:
            raise ValueError("Checkpointing(buffered_steps=...) must be at least 1")
        if self.max_unflushed_steps < self.buffered_steps:
            raise ValueError("Checkpointing(max_unflushed_steps=...) must be >= buffered_steps")
        if self.max_attempts < 1:
            raise ValueError("Checkpointing(max_attempts=...) must be at least 1")
        if self.parallel_threads < 1:
            raise ValueError("Checkpointing(parallel_threads=...) must be at least 1")
        if self.request_timeout.total_seconds() <= 0:
            raise ValueError("Checkpointing(request_timeout=...) must be positive")
        # derived once: every checkpointer of every run reads them (not fields: eq/repr unchanged)
        per_attempt = self.request_timeout.total_seconds() * 2  # once more with the fallback key
        base = self.retry_delay.total_seconds()
        backoffs = sum(base * (2.0 ** (n - 1)) + base for n in range(1, self.max_attempts))
        longest = self.max_attempts * per_attempt + backoffs + 0.5
        object.__setattr__(self, "_longest_flush", longest)
        object.__setattr__(self, "_reply_wait", min(longest, self.MAX_REPLY_WAIT))
        object.__setattr__(self, "_attempt_timeout", self.request_timeout.total_seconds())
        object.__setattr__(self, "_interval", self.max_interval.total_seconds() if self.max_interval else 0.0)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (attempt counts from 1)."""
        base = self.retry_delay.total_seconds()
        return base * (2.0 ** (attempt - 1)) + random.uniform(0, base)

    def longest_flush(self) -> float:
        """An upper bound, in seconds, for one flush with all its retries."""
        return self._longest_flush  # type: ignore[attr-defined, no-any-return]

    def reply_wait(self) -> float:
        """How long a reply waits for the checkpoint API by default: ``longest_flush()``, at most
        ``MAX_REPLY_WAIT``."""
        return self._reply_wait  # type: ignore[attr-defined, no-any-return]


# ------------------------------------------------------------------------------------------------
# The checkpointer of one call request


class RunCheckpointer:
    """Buffers the ``StepRun`` ops of one call request and has its sender checkpoint them.

    Thread-safe. Create it with :meth:`sync` (process sender thread) or :meth:`for_loop` (the
    loop's sender task). See the module docstring for the life of a flush.
    """

    YIELD_EVERY = 32

    def __init__(self, target: CheckpointTarget, config: Checkpointing, sender: Sender) -> None:
        self.target = target
        self.config = config
        self._sender = sender
        self._wake = sender.wake
        self._buffered = config.buffered_steps
        self._cap = config.max_unflushed_steps
        self._interval: float = config._interval  # type: ignore[attr-defined]
        self._timeout: float = config._attempt_timeout  # type: ignore[attr-defined]
        self._lock = threading.Lock()
        self._cond: threading.Condition | None = None  # made by the first blocking wait (rare)
        self._futures: list[asyncio.Future[None]] = []
        self._pending: list[dict[str, Any]] = []
        self._inflight: list[dict[str, Any]] | None = None
        self._lost: list[dict[str, Any]] = []  # from a flush that failed for good
        self._attempt = 0
        self._posting = False  # an HTTP attempt is under way
        self._use_fallback = False
        self._queued = False  # waiting in the sender's ready list
        self._halted = False  # stale, failed or closed: nothing more is sent
        self._closed = False
        self._forcing = 0  # flush() callers waiting: send whatever is pending
        self._timer_token = 0
        self._timer_fired = False
        self.stale = False
        self.failed = False
        self.confirmed = 0  # ops the orchestrator accepted
        self.calls = 0  # HTTP attempts made

    @classmethod
    def sync(cls, target: CheckpointTarget, config: Checkpointing) -> RunCheckpointer:
        """A checkpointer served by the process-wide sender thread (for ``handle()``)."""
        return cls(target, config, thread_sender())

    @classmethod
    def for_loop(
        cls, target: CheckpointTarget, config: Checkpointing, loop: asyncio.AbstractEventLoop
    ) -> RunCheckpointer:
        """A checkpointer served by ``loop``'s sender task (for ``handle_async()``)."""
        return cls(target, config, loop_sender(loop))

    # -------------------------------------------------------------------- the hot path

    def push(self, op: dict[str, Any]) -> None:
        """Buffer one op; start a flush when ``buffered_steps`` are unflushed. No I/O here.

        Blocks only while more than ``max_unflushed_steps`` are unconfirmed (never on the sender's
        own event loop: use :meth:`push_async` there).
        """
        with self._lock:
            pending = self._pending
            pending.append(op)
            if self._halted:
                return
            count = len(pending)
            if self._inflight is not None or self._queued:
                if count + len(self._inflight or ()) < self._cap or self._sender.on_own_loop():
                    return
                wake = False
            elif count >= self._buffered:
                self._queued = True
                wake = True
            else:
                if count == 1 and self._interval:
                    self._arm_timer_locked()
                return
        if wake:
            self._wake(self)
        else:
            self._wait_sync(self._below_cap, self.config.longest_flush())

    async def push_async(self, op: dict[str, Any]) -> None:
        """:meth:`push` for coroutines: awaits (never blocks the loop) past the backpressure cap.

        While a flush is due or in flight it also yields to the loop every ``YIELD_EVERY`` steps,
        so that the loop's sender (and the server's other requests) make progress even when the
        function's steps never await anything themselves.
        """
        yield_now = False
        with self._lock:
            pending = self._pending
            pending.append(op)
            if self._halted:
                return
            count = len(pending)
            if self._inflight is not None or self._queued:
                if count + len(self._inflight or ()) < self._cap:
                    if count % self.YIELD_EVERY:
                        return
                    yield_now = True
                wake = False
            elif count >= self._buffered:
                self._queued = True
                wake = True
            else:
                if count == 1 and self._interval:
                    self._arm_timer_locked()
                return
        if wake:
            self._wake(self)
        elif yield_now:
            await asyncio.sleep(0)
        else:
            await self._wait_async(self._below_cap, self.config.longest_flush())

    def _arm_timer_locked(self) -> None:
        self._timer_token += 1
        self._sender.wake_at(self, time.monotonic() + self._interval, self._timer_token)

    def _below_cap(self) -> bool:
        return self._halted or len(self._pending) + len(self._inflight or ()) < self._cap

    # -------------------------------------------------------------------- waiting for the sender

    def flush(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """Send everything buffered now and wait; return the ops not confirmed, in push order."""
        self._check_not_on_loop("flush")
        with self._lock:
            self._forcing += 1
            wake = self._request_flush_locked()
        try:
            if wake:
                self._wake(self)
            self._wait_sync(self._all_sent, self._bound(timeout))
        finally:
            with self._lock:
                self._forcing -= 1
        return self.unconfirmed()

    async def flush_async(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """:meth:`flush` for coroutines."""
        with self._lock:
            self._forcing += 1
            wake = self._request_flush_locked()
        try:
            if wake:
                self._wake(self)
            await self._wait_async(self._all_sent, self._bound(timeout))
        finally:
            with self._lock:
                self._forcing -= 1
        return self.unconfirmed()

    def settle(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """Start nothing new; wait for a flush in flight; return the ops not confirmed, in order.

        Afterwards the checkpointer is closed: timers are off and nothing more is sent.
        """
        self._check_not_on_loop("settle")
        self._close_for_settle()
        self._wait_sync(self._nothing_in_flight, self._bound(timeout))
        return self.unconfirmed()

    async def settle_async(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """:meth:`settle` for coroutines."""
        self._close_for_settle()
        await self._wait_async(self._nothing_in_flight, self._bound(timeout))
        return self.unconfirmed()

    def close(self) -> None:
        """Stop: no further flushes, timers off; a request in flight is left to finish."""
        with self._lock:
            self._closed = self._halted = True
            self._timer_token += 1
            self._notify_locked()

    def unconfirmed(self) -> list[dict[str, Any]]:
        """Ops the orchestrator has not confirmed (yet), in push order."""
        with self._lock:
            return [*self._lost, *(self._inflight or ()), *self._pending]

    @property
    def in_flight(self) -> bool:
        return self._inflight is not None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` or :meth:`settle` began: nothing more is sent."""
        return self._closed

    def _close_for_settle(self) -> None:
        with self._lock:
            self._closed = self._halted = True
            self._timer_token += 1
            if self._inflight is not None and not self._posting:
                # waiting to retry: the caller takes these ops for its reply instead
                self._give_up_locked(self._inflight, "the request was answered")

    def _request_flush_locked(self) -> bool:
        if self._halted or not self._pending or self._inflight is not None or self._queued:
            return False
        self._queued = True
        return True

    def _all_sent(self) -> bool:
        return self._halted or (not self._pending and self._inflight is None)

    def _nothing_in_flight(self) -> bool:
        return self._inflight is None

    def _bound(self, timeout: float | None) -> float:
        if timeout is None:
            return self.config.reply_wait()
        return max(0.0, timeout)

    def _check_not_on_loop(self, name: str) -> None:
        if self._sender.on_own_loop():
            raise RuntimeError(f"RunCheckpointer.{name}() would block the event loop; await {name}_async()")

    def _wait_sync(self, done: Callable[[], bool], timeout: float) -> None:
        with self._lock:
            if done():
                return
            deadline = time.monotonic() + timeout
            cond = self._cond
            if cond is None:
                cond = self._cond = threading.Condition(self._lock)
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                cond.wait(remaining)

    async def _wait_async(self, done: Callable[[], bool], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self._lock:
                if done():
                    return
                future: asyncio.Future[None] = loop.create_future()
                self._futures.append(future)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(future, remaining)
            except asyncio.TimeoutError:
                return

    def _notify_locked(self) -> None:
        if self._cond is not None:
            self._cond.notify_all()
        if self._futures:
            futures, self._futures = self._futures, []
            for future in futures:
                _resolve(future)

    # -------------------------------------------------------------------- the sender's side

    def next_job(self, *, retry: bool = False, timer: int = 0) -> Job | None:
        """Called by the sender: the next HTTP attempt to make for this run, if any."""
        with self._lock:
            self._queued = False
            if self._inflight is not None:
                if not retry:
                    return None
                if self._closed and self._attempt:
                    # settled: the caller has already taken these ops for its reply
                    self._give_up_locked(self._inflight, "the request was answered")
                    return None
                self._posting = True
                return Job(self.target, self._inflight, self._use_fallback, self._timeout)
            if timer:
                if timer != self._timer_token:
                    return None
                self._timer_fired = True
            if self._halted or not self._pending:
                return None
            if not (len(self._pending) >= self._buffered or self._forcing or self._timer_fired):
                return None
            self._inflight, self._pending = self._pending, []
            self._attempt = 0
            self._timer_fired = False
            self._timer_token += 1
            self._posting = True
            return Job(self.target, self._inflight, self._use_fallback, self._timeout)

    def finish_attempt(self, job: Job, outcome: str, detail: str) -> float | None:
        """Record one attempt's outcome. Returns a delay before retrying, or None.

        After None the sender calls :meth:`next_job` again if ``_more`` says so.
        """
        with self._lock:
            self.calls += 1
            self._posting = False
            if self._inflight is not job.ops:
                return None
            if outcome == OK:
                self.confirmed += len(job.ops)
                self._inflight = None
            elif outcome == STALE:
                self.stale = True
                self._halted = True
                self._lost.extend(job.ops)
                self._inflight = None
                logger.info("checkpoint: run %s was re-dispatched (409); stopping", self.target.run_id)
            elif outcome == RETRY and self._attempt + 1 < self.config.max_attempts and not self._closed:
                self._attempt += 1
                self._notify_locked()
                return self.config.backoff(self._attempt)
            else:
                self._give_up_locked(job.ops, detail)
            if self._pending and not self._halted and self._interval and not self._more_locked():
                self._arm_timer_locked()
            self._notify_locked()
            return None

    def _give_up_locked(self, ops: list[dict[str, Any]], detail: str) -> None:
        self.failed = not self._closed
        self._halted = True
        self._lost.extend(ops)
        self._inflight = None
        if self.failed:
            logger.warning(
                "checkpoint: %d step(s) of run %s not checkpointed (%s); they go back in the reply",
                len(ops),
                self.target.run_id,
                detail,
            )
        self._notify_locked()

    def _more_locked(self) -> bool:
        return (
            not self._halted
            and self._inflight is None
            and bool(self._pending)
            and (len(self._pending) >= self._buffered or self._forcing > 0)
        )

    def has_more(self) -> bool:
        with self._lock:
            return self._more_locked()

    def use_fallback_key(self) -> bool:
        """After a 401/403: switch to the fallback key if there is one (and we are not on it)."""
        with self._lock:
            if self._use_fallback or not self.target.signing_key_fallback:
                return False
            self._use_fallback = True
            return True


def _resolve(future: asyncio.Future[None]) -> None:
    loop = future.get_loop()
    if loop.is_closed():
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        if not future.done():
            future.set_result(None)
    else:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
            loop.call_soon_threadsafe(_set_done, future)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
