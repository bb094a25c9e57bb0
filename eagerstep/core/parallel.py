"""Parallel groups (``ctx.step.parallel``): planned for the orchestrator, or run in the worker.

Orchestrated (standard mode, and ``parallel="orchestrated"``): each branch's first new step is
planned (``StepPlanned``); the orchestrator runs each in its own request and calls again.

Eager (checkpointing mode): the group runs in rounds inside the request. A round calls every branch in
order on the user's thread, with the step-id counters as they were when the group began (so each
step gets the id and index a standard-mode replay gives it); a branch returns, or stops at its first
new ``step.run`` (:class:`_Pending`). The bodies of those steps then run concurrently (a bounded
thread pool per process for ``def`` functions, tasks on the loop for ``async def``); each one that
finishes is checkpointed at once as its own ``StepRun`` and becomes a memo for the next round, so a
branch of several steps moves on step by step. A branch that raises is reported as
``StepError``/``StepFailed`` after the others are checkpointed, so a retry re-runs only it. Anything
else a branch reaches (sleep, wait, invoke, send_event) is planned for the orchestrator, as in
standard mode, once the steps that can run have run.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any, NoReturn, Protocol

from eagerstep.core import protocol


class _Planned(BaseException):
    """A step inside a parallel group was found and must be planned, not run, in this request."""

    def __init__(self, op: dict[str, Any]) -> None:
        self.op = op


class _Skipped(BaseException):
    """A step inside a parallel group is not the one the orchestrator targeted."""


class _Pending(BaseException):
    """A branch of an eager group reached a new ``step.run``: its body is to run in this round."""

    def __init__(
        self,
        hashed: str,
        step_id: str,
        index: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        output_type: Any,
    ) -> None:
        self.hashed = hashed
        self.step_id = step_id
        self.index = index
        self.fn = fn
        self.args = args
        self.output_type = output_type


class GroupState(Protocol):
    """What a parallel group needs from the request it runs in (``execution.RunState``)."""

    collecting: bool
    memos: dict[str, Any]
    around_thread: Callable[[Callable[[], Any]], Any] | None

    def enter_parallel(self) -> None: ...
    def exit_parallel(self) -> None: ...
    def parallel_done(self, planned: list[dict[str, Any]], skipped: int) -> None: ...
    def runs_groups_eagerly(self) -> bool: ...
    def parallel_threads(self) -> int: ...
    def starting_steps(self, pending: Sequence[_Pending]) -> None: ...
    def step_counters(self) -> tuple[dict[str, int], dict[str, str]]: ...
    def restore_step_counters(self, saved: tuple[dict[str, int], dict[str, str]]) -> None: ...
    def run_succeeded(
        self,
        hashed: str,
        step_id: str,
        index: int,
        out: Any,
        start_ns: int,
        duration_ns: int,
        checkpointed: bool,
        fn: Callable[..., Any] | None = ...,
        output_type: Any = ...,
    ) -> tuple[Any, dict[str, Any]]: ...
    def run_failed(self, hashed: str, step_id: str, index: int, exc: BaseException) -> NoReturn: ...
    def push(self, op: dict[str, Any]) -> None: ...
    async def push_async(self, op: dict[str, Any]) -> None: ...


# ------------------------------------------------------------------------------------------------
# one round: call every branch in order


class _Round:
    """What one pass over the branches found: results, steps to run now, ops to plan."""

    def __init__(self) -> None:
        self.results: list[Any] = []
        self.pending: list[_Pending] = []
        self.planned: list[dict[str, Any]] = []
        self.skipped = 0

    @property
    def finished(self) -> bool:
        return not self.pending and not self.planned and not self.skipped

    def stopped(self, stop: BaseException) -> None:
        """A branch stopped before its end: at a step to run, an op to plan, or a skipped step."""
        if isinstance(stop, _Pending):
            self.pending.append(stop)
        elif isinstance(stop, _Planned):
            self.planned.append(stop.op)
        else:
            self.skipped += 1

    def plan_all(self) -> list[dict[str, Any]]:
        """Everything still to do, as the standard-mode plan (the pending steps planned too)."""
        steps = [protocol.step_planned_op(p.hashed, p.step_id, index=p.index) for p in self.pending]
        return [*steps, *self.planned]


def _collect(st: GroupState, callables: Sequence[Callable[[], Any]], *, eager: bool = False) -> _Round:
    found = _Round()
    st.enter_parallel()
    st.collecting = eager
    try:
        for item in callables:
            try:
                found.results.append(item())
            except (_Pending, _Planned, _Skipped) as stop:
                found.stopped(stop)
    finally:
        st.collecting = False
        st.exit_parallel()
    return found


async def _collect_async(
    st: GroupState, callables: Sequence[Callable[[], Any]], *, eager: bool = False
) -> _Round:
    found = _Round()
    st.enter_parallel()
    st.collecting = eager
    try:
        for item in callables:
            try:
                result = item()
                found.results.append(await result if inspect.isawaitable(result) else result)
            except (_Pending, _Planned, _Skipped) as stop:
                found.stopped(stop)
    finally:
        st.collecting = False
        st.exit_parallel()
    return found


def _runs_here(st: GroupState, found: _Round) -> bool:
    """False when the group is done; True to run the round's steps here; plans the rest for the
    orchestrator (raises) when none can run here or the request may not run them."""
    if found.finished:
        return False
    if not found.pending or not st.runs_groups_eagerly():
        st.parallel_done(found.plan_all(), found.skipped)
    return True


# ------------------------------------------------------------------------------------------------
# orchestrated (standard mode)


def run_orchestrated(st: GroupState, callables: Sequence[Callable[[], Any]]) -> tuple[Any, ...]:
    found = _collect(st, callables)
    st.parallel_done(found.planned, found.skipped)
    return tuple(found.results)


async def run_orchestrated_async(st: GroupState, callables: Sequence[Callable[[], Any]]) -> tuple[Any, ...]:
    found = await _collect_async(st, callables)
    st.parallel_done(found.planned, found.skipped)
    return tuple(found.results)


# ------------------------------------------------------------------------------------------------
# eager (checkpointing mode)

_pools: dict[int, tuple[int, ThreadPoolExecutor]] = {}
_pools_lock = threading.Lock()


def _pool(size: int) -> ThreadPoolExecutor:
    """The process's pool of ``size`` threads for eager branches (made on first use; fork-safe)."""
    pid = os.getpid()
    entry = _pools.get(size)
    if entry is not None and entry[0] == pid:
        return entry[1]
    with _pools_lock:
        entry = _pools.get(size)
        if entry is None or entry[0] != pid:
            entry = _pools[size] = (
                pid,
                ThreadPoolExecutor(max_workers=size, thread_name_prefix="eagerstep-parallel"),
            )
        return entry[1]


class _Ran:
    """One step body's outcome: its output or its exception, and when it ran."""

    __slots__ = ("duration_ns", "error", "out", "start_ns")

    def __init__(self) -> None:
        self.start_ns = 0
        self.duration_ns = 0
        self.out: Any = None
        self.error: BaseException | None = None


def _call_body(pending: _Pending) -> _Ran:
    ran = _Ran()
    ran.start_ns = time.time_ns()
    t0 = time.perf_counter_ns()
    try:
        ran.out = pending.fn(*pending.args)
    except Exception as exc:
        ran.error = exc
    ran.duration_ns = time.perf_counter_ns() - t0
    return ran


async def _await_body(pending: _Pending) -> _Ran:
    ran = _Ran()
    ran.start_ns = time.time_ns()
    t0 = time.perf_counter_ns()
    try:
        out = pending.fn(*pending.args)
        ran.out = await out if inspect.isawaitable(out) else out
    except Exception as exc:
        ran.error = exc
    ran.duration_ns = time.perf_counter_ns() - t0
    return ran


class _Failures:
    """The first failure of a round in branch order is what the reply reports; each is logged."""

    def __init__(self, order: list[_Pending]) -> None:
        self.order = order
        self.first: tuple[int, BaseException] | None = None

    def add(self, pending: _Pending, stop: BaseException) -> None:
        position = self.order.index(pending)
        if self.first is None or position < self.first[0]:
            self.first = (position, stop)

    def raise_first(self) -> None:
        if self.first is not None:
            raise self.first[1]


def _settle(st: GroupState, pending: _Pending, ran: _Ran, failures: _Failures) -> dict[str, Any] | None:
    """Record one finished body: its ``StepRun`` op (also a memo for the next round), or a failure."""
    try:
        if ran.error is not None:
            st.run_failed(pending.hashed, pending.step_id, pending.index, ran.error)
        _, op = st.run_succeeded(
            pending.hashed,
            pending.step_id,
            pending.index,
            ran.out,
            ran.start_ns,
            ran.duration_ns,
            True,
            pending.fn,
            pending.output_type,
        )
    except BaseException as stop:  # the reply run_failed built (or a value that is not JSON)
        failures.add(pending, stop)
        return None
    st.memos[pending.hashed] = {"data": op["data"]}
    return op


def run_eager(st: GroupState, callables: Sequence[Callable[[], Any]]) -> tuple[Any, ...]:
    """Run a group in this request (``def`` functions); see the module docstring."""
    counters = st.step_counters()
    while True:
        st.restore_step_counters(counters)
        found = _collect(st, callables, eager=True)
        if not _runs_here(st, found):
            return tuple(found.results)
        failures = _Failures(found.pending)
        st.starting_steps(found.pending)
        pool = _pool(st.parallel_threads())
        around = st.around_thread
        futures: dict[Future[_Ran], _Pending] = {}
        for pending in found.pending:
            context = contextvars.copy_context()
            if around is None:
                futures[pool.submit(context.run, _call_body, pending)] = pending
            else:
                futures[pool.submit(context.run, around, functools.partial(_call_body, pending))] = pending
        for future in as_completed(futures):
            op = _settle(st, futures[future], future.result(), failures)
            if op is not None:
                st.push(op)
        failures.raise_first()


async def run_eager_async(st: GroupState, callables: Sequence[Callable[[], Any]]) -> tuple[Any, ...]:
    """Run a group in this request (``async def`` functions): the bodies as tasks on the loop."""
    counters = st.step_counters()
    while True:
        st.restore_step_counters(counters)
        found = await _collect_async(st, callables, eager=True)
        if not _runs_here(st, found):
            return tuple(found.results)
        failures = _Failures(found.pending)
        st.starting_steps(found.pending)
        tasks: dict[asyncio.Future[_Ran], _Pending] = {
            asyncio.ensure_future(_await_body(pending)): pending for pending in found.pending
        }
        waiting: set[asyncio.Future[_Ran]] = set(tasks)
        while waiting:
            done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: found.pending.index(tasks[t])):
                op = _settle(st, tasks[task], task.result(), failures)
                if op is not None:
                    await st.push_async(op)
        failures.raise_first()


__all__ = [
    "GroupState",
    "run_eager",
    "run_eager_async",
    "run_orchestrated",
    "run_orchestrated_async",
]
