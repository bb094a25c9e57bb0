"""The step API offered to user code: ``ctx.step`` in a sync and an async flavour, and the Context."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, Protocol, TypeVar, overload

from eagerstep.core import parallel as groups
from eagerstep.core import protocol
from eagerstep.core.ai import AsyncAI, SyncAI
from eagerstep.core.errors import StepUsageError
from eagerstep.core.parallel import GroupState, _Pending

if TYPE_CHECKING:
    from eagerstep.core.function import Function, FunctionOwner

T = TypeVar("T")


class StepState(GroupState, Protocol):
    """What the step API needs from the request it runs in (``execution.RunState`` provides it):
    step ids, memo lookups, and the decisions about a new step. Execution imports this module, not
    the other way round."""

    MISSING: ClassVar[Any]
    client: FunctionOwner
    replaying: bool

    def begin(self, step_id: str, kind: str) -> tuple[str, int]: ...
    def lookup(self, hashed: str) -> Any: ...
    def decode_run_memo(
        self, step_id: str, memo: Any, fn: Callable[..., Any] | None, output_type: Any
    ) -> Any: ...
    def decode_send_memo(self, step_id: str, memo: Any) -> list[str]: ...
    def decode_wait_memo(self, step_id: str, memo: Any) -> protocol.WireEvent | None: ...
    def decode_invoke_memo(self, step_id: str, memo: Any) -> Any: ...
    def to_wire_value(self, value: Any, what: str) -> Any: ...
    def prepare_run(self, hashed: str, step_id: str, index: int, step_type: str = ...) -> bool: ...
    def new_async_op(self, step_id: str, op: dict[str, Any]) -> NoReturn: ...
    def send_now(self, events: Any) -> list[str]: ...
    async def send_now_async(self, events: Any) -> list[str]: ...


Duration = timedelta | str


class ReplayAwareLogger:
    """A logger that stays quiet while memoised steps replay, so each line appears once per run."""

    def __init__(self, logger: logging.Logger, state: StepState) -> None:
        self._logger = logger
        self._state = state

    @property
    def replaying(self) -> bool:
        return self._state.replaying

    def _log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not self._state.replaying:
            kwargs.setdefault("stacklevel", 3)
            self._logger.log(level, msg, *args, **kwargs)

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._log(logging.DEBUG, msg, *args, **kwargs)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._log(logging.INFO, msg, *args, **kwargs)

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._log(logging.WARNING, msg, *args, **kwargs)

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._log(logging.ERROR, msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("exc_info", True)
        self._log(logging.ERROR, msg, *args, **kwargs)

    def critical(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._log(logging.CRITICAL, msg, *args, **kwargs)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        self._log(level, msg, *args, **kwargs)


def _function_id(function: Function[Any] | str) -> str:
    if isinstance(function, str):
        return function
    return function.fully_qualified_id


def _duration(value: Duration, what: str) -> str:
    try:
        return protocol.duration_text(value)
    except ValueError as exc:
        raise StepUsageError(f"{what}: {exc}") from exc


def _sleep_until_text(when: datetime | str) -> str:
    if isinstance(when, datetime):
        return protocol.format_datetime(when)
    try:
        return protocol.format_datetime(protocol.parse_datetime(when))
    except ValueError as exc:
        raise StepUsageError(f"sleep_until: {when!r} is not an ISO 8601 / RFC 3339 date") from exc


class _StepBase:
    __slots__ = ("_state",)

    def __init__(self, state: StepState) -> None:
        self._state = state

    def _sleep(self, step_id: str, until: str) -> None:
        st = self._state
        hashed, index = st.begin(step_id, "sleep")
        if st.lookup(hashed) is not st.MISSING:
            return
        st.new_async_op(step_id, protocol.sleep_op(hashed, step_id, until, index=index))

    def _wait_for_event(
        self, step_id: str, event: str, timeout: Duration, if_: str | None
    ) -> protocol.WireEvent | None:
        st = self._state
        hashed, index = st.begin(step_id, "wait_for_event")
        memo = st.lookup(hashed)
        if memo is not st.MISSING:
            return st.decode_wait_memo(step_id, memo)
        timeout_text = _duration(timeout, "wait_for_event(timeout=...)")
        st.new_async_op(
            step_id, protocol.wait_for_event_op(hashed, step_id, event, timeout_text, if_, index=index)
        )

    def _invoke(
        self, step_id: str, function: Function[Any] | str, data: Any, timeout: Duration | None
    ) -> Any:
        st = self._state
        hashed, index = st.begin(step_id, "invoke")
        memo = st.lookup(hashed)
        if memo is not st.MISSING:
            return st.decode_invoke_memo(step_id, memo)
        timeout_text = _duration(timeout, "invoke(timeout=...)") if timeout is not None else None
        payload = st.to_wire_value(data if data is not None else {}, f"invoke({step_id!r}, data=...)")
        st.new_async_op(
            step_id,
            protocol.invoke_op(hashed, step_id, _function_id(function), payload, timeout_text, index=index),
        )


class SyncStep(_StepBase):
    """``ctx.step`` for ``def`` functions."""

    __slots__ = ()

    @property
    def ai(self) -> SyncAI:
        """Model calls as steps: ``infer`` (made by the orchestrator) and ``wrap`` (made here)."""
        return SyncAI(self)

    def run(self, step_id: str, fn: Callable[..., T], *args: Any, output_type: type[T] | Any = None) -> T:
        """Run ``fn(*args)`` once per run: later requests get its recorded output instead."""
        st = self._state
        hashed, index = st.begin(step_id, "run")
        memo = st.lookup(hashed)
        if memo is not st.MISSING:
            return st.decode_run_memo(step_id, memo, fn, output_type)  # type: ignore[no-any-return]
        if st.collecting:  # a branch of an eager parallel group: run with the others
            raise _Pending(hashed, step_id, index, fn, args, output_type)
        checkpointed = st.prepare_run(hashed, step_id, index)
        start_ns = time.time_ns()
        t0 = time.perf_counter_ns()
        try:
            out = fn(*args)
        except Exception as exc:
            st.run_failed(hashed, step_id, index, exc)
        value, op = st.run_succeeded(
            hashed, step_id, index, out, start_ns, time.perf_counter_ns() - t0, checkpointed, fn, output_type
        )
        st.push(op)
        return value  # type: ignore[no-any-return]

    def sleep(self, step_id: str, duration: Duration) -> None:
        """Pause the run for ``duration`` (the orchestrator resumes it later)."""
        self._sleep(step_id, _duration(duration, f"sleep({step_id!r})"))

    def sleep_until(self, step_id: str, when: datetime | str) -> None:
        """Pause the run until ``when`` (a datetime; naive means UTC)."""
        self._sleep(step_id, _sleep_until_text(when))

    def wait_for_event(
        self, step_id: str, *, event: str, timeout: Duration, if_: str | None = None
    ) -> protocol.WireEvent | None:
        """Wait for an event named ``event`` matching ``if_``; None when ``timeout`` passes first."""
        return self._wait_for_event(step_id, event, timeout, if_)

    def invoke(
        self,
        step_id: str,
        *,
        function: Function[Any] | str,
        data: Any = None,
        timeout: Duration | None = None,
    ) -> Any:
        """Run another function (a Function or its full id) with ``data`` and return its result."""
        return self._invoke(step_id, function, data, timeout)

    def send_event(self, step_id: str, events: Any) -> list[str]:
        """Send events as a step (sent once per run); return their ids."""
        st = self._state
        hashed, index = st.begin(step_id, "send_event")
        memo = st.lookup(hashed)
        if memo is not st.MISSING:
            return st.decode_send_memo(step_id, memo)
        checkpointed = st.prepare_run(hashed, step_id, index, step_type="step.sendEvent")
        start_ns = time.time_ns()
        t0 = time.perf_counter_ns()
        try:
            ids = st.send_now(events)
        except Exception as exc:
            st.run_failed(hashed, step_id, index, exc)
        st.run_succeeded(
            hashed, step_id, index, {"ids": ids}, start_ns, time.perf_counter_ns() - t0, checkpointed
        )
        raise AssertionError("send_event always replies after sending")  # pragma: no cover

    def parallel(self, callables: Sequence[Callable[[], T]]) -> tuple[T, ...]:
        """Run a group of steps in parallel: ``ctx.step.parallel([lambda: ctx.step.run(...), ...])``.

        Returns the branches' results, in order, once all are done. When the request checkpoints
        (and the function's ``parallel`` is "eager"), the group's steps run here, concurrently, each
        checkpointed as it finishes; otherwise the orchestrator runs each in its own request.
        """
        st = self._state
        if st.runs_groups_eagerly():
            return groups.run_eager(st, callables)
        return groups.run_orchestrated(st, callables)


class AsyncStep(_StepBase):
    """``ctx.step`` for ``async def`` functions: the same API, awaited."""

    __slots__ = ()

    @property
    def ai(self) -> AsyncAI:
        """Model calls as steps: ``await ctx.step.ai.infer(...)`` and ``await ctx.step.ai.wrap(...)``."""
        return AsyncAI(self)

    @overload
    async def run(
        self, step_id: str, fn: Callable[..., Awaitable[T]], *args: Any, output_type: type[T] | Any = None
    ) -> T: ...
    @overload
    async def run(
        self, step_id: str, fn: Callable[..., T], *args: Any, output_type: type[T] | Any = None
    ) -> T: ...

    async def run(self, step_id: str, fn: Callable[..., Any], *args: Any, output_type: Any = None) -> Any:
        """Run ``fn(*args)`` (a coroutine function or a plain one) once per run."""
        st = self._state
        hashed, index = st.begin(step_id, "run")
        memo = st.lookup(hashed)
        if memo is not st.MISSING:
            return st.decode_run_memo(step_id, memo, fn, output_type)
        if st.collecting:  # a branch of an eager parallel group: run with the others
            raise _Pending(hashed, step_id, index, fn, args, output_type)
        checkpointed = st.prepare_run(hashed, step_id, index)
        start_ns = time.time_ns()
        t0 = time.perf_counter_ns()
        try:
            out = fn(*args)
            if inspect.isawaitable(out):
                out = await out
        except Exception as exc:
            st.run_failed(hashed, step_id, index, exc)
        value, op = st.run_succeeded(
            hashed, step_id, index, out, start_ns, time.perf_counter_ns() - t0, checkpointed, fn, output_type
        )
        await st.push_async(op)
        return value

    async def sleep(self, step_id: str, duration: Duration) -> None:
        self._sleep(step_id, _duration(duration, f"sleep({step_id!r})"))

    async def sleep_until(self, step_id: str, when: datetime | str) -> None:
        self._sleep(step_id, _sleep_until_text(when))

    async def wait_for_event(
        self, step_id: str, *, event: str, timeout: Duration, if_: str | None = None
    ) -> protocol.WireEvent | None:
        return self._wait_for_event(step_id, event, timeout, if_)

    async def invoke(
        self,
        step_id: str,
        *,
        function: Function[Any] | str,
        data: Any = None,
        timeout: Duration | None = None,
    ) -> Any:
        return self._invoke(step_id, function, data, timeout)

    async def send_event(self, step_id: str, events: Any) -> list[str]:
        st = self._state
        hashed, index = st.begin(step_id, "send_event")
        memo = st.lookup(hashed)
        if memo is not st.MISSING:
            return st.decode_send_memo(step_id, memo)
        checkpointed = st.prepare_run(hashed, step_id, index, step_type="step.sendEvent")
        start_ns = time.time_ns()
        t0 = time.perf_counter_ns()
        try:
            ids = await st.send_now_async(events)
        except Exception as exc:
            st.run_failed(hashed, step_id, index, exc)
        st.run_succeeded(
            hashed, step_id, index, {"ids": ids}, start_ns, time.perf_counter_ns() - t0, checkpointed
        )
        raise AssertionError("send_event always replies after sending")  # pragma: no cover

    async def parallel(self, callables: Sequence[Callable[[], Awaitable[T] | T]]) -> tuple[T, ...]:
        """``await ctx.step.parallel([lambda: ctx.step.run(...), ...])``: as the sync flavour, with
        the group's step bodies run as tasks on the loop."""
        st = self._state
        if st.runs_groups_eagerly():
            return await groups.run_eager_async(st, callables)
        return await groups.run_orchestrated_async(st, callables)


class Context:
    """What a function receives: the event(s), run identity, ``step`` and a replay-aware ``logger``."""

    step: SyncStep

    def __init__(
        self,
        *,
        event: protocol.WireEvent,
        events: list[protocol.WireEvent],
        run_id: str,
        attempt: int,
        max_attempts: int,
        function_id: str,
        step: Any,
        logger: ReplayAwareLogger,
    ) -> None:
        self.event = event
        self.events = events
        self.run_id = run_id
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.function_id = function_id
        self.step = step
        self.logger = logger

    def __repr__(self) -> str:
        return f"<eagerstep.Context run_id={self.run_id!r} event={self.event.name!r} attempt={self.attempt}>"


class AsyncContext(Context):
    """The Context of an ``async def`` function (``ctx.step`` methods are awaited)."""

    step: AsyncStep  # type: ignore[assignment]
