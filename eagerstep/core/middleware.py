"""Middleware: hooks around a function's requests, its steps, and the events it sends.

A :class:`Middleware` overrides the hooks it needs; a client's middleware apply to every function,
a function's own come after them. With none installed, a request runs on the plain
:class:`~eagerstep.core.execution.RunState` and pays nothing per step; with some, it runs on
:class:`HookedRunState`, which calls the hooks from the points the plain state already passes.

Hooks are plain methods, called on the thread (or the loop) that runs the function's code, one at a
time. Observer hooks (``before_*``, ``after_*``, ``on_failure``) never break a run: an exception in
one is logged and the run goes on. Transform hooks (``transform_*``, ``before_send_events``) change
what the function or the orchestrator sees: an exception in one fails the attempt as an error in
the function's code would.

Replay: a request replays the steps recorded before it (memoised) and then runs new code. Each
step reported to a hook in a request is reported once: a memoised step as ``memoised``, a step
run here as ``executed`` (``checkpointed`` when it was reported by checkpoint and the code went on,
not when its result is the request's reply), a step handed to the orchestrator (a sleep, a wait,
an invoke, a step planned for a request of its own) as neither. The rounds of an eager parallel
group, which call the branches again, do not report a step twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eagerstep.core import protocol
from eagerstep.core.execution import Outcome, RunState, _Interrupt, _loads, serialise
from eagerstep.core.parallel import _Pending

if TYPE_CHECKING:
    from eagerstep.core.function import Function

logger = logging.getLogger("eagerstep")

__all__ = [
    "Chain",
    "Failure",
    "FunctionInput",
    "Middleware",
    "RunInfo",
    "RunOutcome",
    "StepInfo",
    "StepResult",
    "new_run_state",
]


# --------------------------------------------------------------------------------------------
# What the hooks are told


@dataclass
class RunInfo:
    """One call request of a run, as the hooks see it."""

    run_id: str
    function: Function[Any]
    #: The function's full id (``<app_id>-<id>``).
    function_id: str
    #: 0 for the first attempt of the step (or function) this request runs, 1 for the first retry...
    attempt: int
    max_attempts: int
    #: The triggering event (after ``transform_input``): a dict with ``name``, ``data``, ``id``...
    event: dict[str, Any]
    #: True when the request starts by replaying recorded steps (memoised), False for new work only.
    replaying: bool
    #: How many recorded steps the request arrived with.
    memoised_steps: int
    #: True when the request runs in checkpointing mode (steps run one after another here).
    checkpointing: bool
    #: The hashed step id the orchestrator asked for (standard mode), if any.
    target_step: str | None
    #: The call request's HTTP headers, lower-cased names (``traceparent`` among them, if sent).
    headers: Mapping[str, str]
    #: Free storage for middleware, for the length of this request (e.g. a span).
    values: dict[Any, Any] = field(default_factory=dict)


@dataclass
class FunctionInput:
    """What ``transform_input`` may change before the function's code runs: the raw event dicts
    and the recorded steps (hashed step id -> ``{"data": ...}``, ``{"error": ...}``...)."""

    event: dict[str, Any]
    events: list[dict[str, Any]]
    steps: dict[str, Any]


@dataclass(slots=True)
class StepInfo:
    """One step, as the hooks see it."""

    run: RunInfo
    #: The id the code gave the step (``ctx.step.run("charge", ...)`` -> ``"charge"``).
    id: str
    #: The id on the wire: ``sha1(id)`` (``sha1(id:n)`` for the n-th repeat of an id).
    hashed_id: str
    index: int
    #: "run", "send_event", "sleep", "wait_for_event", "invoke", "ai.infer"
    kind: str
    #: Recorded before this request: its result is replayed, nothing runs.
    memoised: bool
    #: Run in this request (False for memoised steps and steps handed to the orchestrator).
    executed: bool
    #: Executed and reported to the orchestrator by checkpoint, the code going on at once
    #: (False: orchestrated, its result is this request's reply).
    checkpointed: bool
    #: The request's attempt (see :attr:`RunInfo.attempt`).
    attempt: int
    #: Part of a ``ctx.step.parallel`` group.
    parallel: bool = False


@dataclass(slots=True)
class StepResult:
    """How a step ended: its output (as recorded: JSON data) or its error."""

    output: Any = None
    error: BaseException | None = None
    #: When the step's code started (ns since the epoch) and how long it ran; 0 when not executed.
    start_ns: int = 0
    duration_ns: int = 0
    #: For an error: True when the step fails for good (no retry left, or non-retriable).
    final: bool = False


@dataclass
class RunOutcome:
    """How the function's code ended in this request (before the reply is flushed and sent)."""

    #: "completed" (the function returned), "failed" (it raised: see ``final``), or "handed_over"
    #: (the request ends at a step the orchestrator takes from here: a step's result, a sleep...)
    kind: str
    status: int
    output: Any = None
    error: BaseException | None = None
    final: bool = False


@dataclass
class Failure:
    """A step or the function raised (each attempt is told; ``final`` says whether it is the last)."""

    run: RunInfo
    error: BaseException
    final: bool
    #: The step that raised, or None when the function's code raised outside any step (a
    #: :class:`~eagerstep.StepError` then means a step that had failed for good was not caught).
    step: StepInfo | None = None


class Middleware:
    """Base class of middleware: every hook does nothing; override the ones you need."""

    # -- the function ------------------------------------------------------------------------

    def transform_input(self, run: RunInfo, input: FunctionInput) -> None:
        """Before the function's code runs, once per request: change the event(s) or the recorded
        steps in place (e.g. decrypt them)."""

    def before_function(self, run: RunInfo) -> None:
        """The function's code is about to run for this request (``run.replaying`` tells whether
        it starts by replaying recorded steps)."""

    def before_execution(self, run: RunInfo) -> None:
        """The code is past the recorded steps: what runs from here is new work. Once per request
        (at once when nothing is recorded)."""

    def after_function(self, run: RunInfo, outcome: RunOutcome) -> None:
        """The function's code has stopped for this request: returned, raised, or reached a step
        the orchestrator takes over."""

    def transform_output(self, run: RunInfo, output: Any) -> Any:
        """The function's result (JSON data) on its way to the orchestrator; return what to send."""
        return output

    # -- steps -------------------------------------------------------------------------------

    def before_step(self, step: StepInfo) -> None:
        """A step is reached: about to run (``executed``), replayed (``memoised``), or about to be
        handed to the orchestrator (neither)."""

    def after_step(self, step: StepInfo, result: StepResult) -> None:
        """A step has run, been replayed, or been handed over; ``result`` has its output or error."""

    def transform_step_output(self, step: StepInfo, output: Any) -> Any:
        """A ``step.run`` output (JSON data) on its way to the orchestrator; return what to send.
        The function's code keeps the original value."""
        return output

    def transform_invoke_data(self, step: StepInfo, data: Any) -> Any:
        """The data of ``ctx.step.invoke`` (JSON data: the invoked function's event data) on its
        way to the orchestrator; return what to send."""
        return data

    # -- events and failures ----------------------------------------------------------------

    def before_send_events(self, events: list[dict[str, Any]]) -> None:
        """Events about to be sent (``client.send`` or ``ctx.step.send_event``): change them in place."""

    def after_send_events(
        self, events: list[dict[str, Any]], ids: list[str] | None, error: BaseException | None
    ) -> None:
        """Events were sent (their ``ids``) or could not be (``error``)."""

    def on_failure(self, failure: Failure) -> None:
        """A step or the function raised (every attempt; ``failure.final`` for the last one)."""


_HOOKS = (
    "transform_input",
    "before_function",
    "before_execution",
    "after_function",
    "transform_output",
    "before_step",
    "after_step",
    "transform_step_output",
    "transform_invoke_data",
    "before_send_events",
    "after_send_events",
    "on_failure",
)


class Chain:
    """The middleware of one function (the client's, then its own), each hook bound once: only
    the middleware that override a hook are called for it."""

    def __init__(self, middleware: Sequence[Middleware]) -> None:
        for item in middleware:
            if not isinstance(item, Middleware):
                raise TypeError(f"middleware must be eagerstep.middleware.Middleware instances, not {item!r}")
        self.middleware = tuple(middleware)
        bound: dict[str, list[Callable[..., Any]]] = {}
        for name in _HOOKS:
            base = getattr(Middleware, name)
            bound[name] = [
                getattr(item, name) for item in self.middleware if getattr(type(item), name) is not base
            ]
        self.transform_input = bound["transform_input"]
        self.before_function = bound["before_function"]
        self.before_execution = bound["before_execution"]
        self.after_function = bound["after_function"]
        self.transform_output = bound["transform_output"]
        self.before_step = bound["before_step"]
        self.after_step = bound["after_step"]
        self.transform_step_output = bound["transform_step_output"]
        self.transform_invoke_data = bound["transform_invoke_data"]
        self.before_send_events = bound["before_send_events"]
        self.after_send_events = bound["after_send_events"]
        self.on_failure = bound["on_failure"]
        #: after-hooks run in reverse order: the first middleware wraps the others
        self.after_function.reverse()
        self.after_step.reverse()
        self.after_send_events.reverse()

    def __bool__(self) -> bool:
        return bool(self.middleware)


def observe(hooks: Sequence[Callable[..., Any]], *args: Any) -> None:
    """Call observer hooks; one that raises is logged and the others still run."""
    for hook in hooks:
        try:
            hook(*args)
        except Exception:
            logger.exception("middleware hook %s raised; the run goes on", _name(hook))


def _name(hook: Callable[..., Any]) -> str:
    owner = getattr(hook, "__self__", None)
    return f"{type(owner).__name__}.{getattr(hook, '__name__', '?')}"


# --------------------------------------------------------------------------------------------
# Sending events


def send_with_hooks(chain: Chain, events: list[dict[str, Any]], send: Callable[[], list[str]]) -> list[str]:
    for hook in chain.before_send_events:
        hook(events)
    try:
        ids = send()
    except BaseException as exc:
        observe(chain.after_send_events, events, None, exc)
        raise
    observe(chain.after_send_events, events, ids, None)
    return ids


async def send_with_hooks_async(
    chain: Chain, events: list[dict[str, Any]], send: Callable[[], Any]
) -> list[str]:
    for hook in chain.before_send_events:
        hook(events)
    try:
        ids: list[str] = await send()
    except BaseException as exc:
        observe(chain.after_send_events, events, None, exc)
        raise
    observe(chain.after_send_events, events, ids, None)
    return ids


# --------------------------------------------------------------------------------------------
# The request's state with hooks

_KINDS = {
    "run": "run",
    "step.run": "run",
    "step.sendEvent": "send_event",
    protocol.Opcode.STEP_PLANNED.value: "run",
    protocol.Opcode.SLEEP.value: "sleep",
    protocol.Opcode.WAIT_FOR_EVENT.value: "wait_for_event",
    protocol.Opcode.INVOKE_FUNCTION.value: "invoke",
    protocol.Opcode.AI_GATEWAY.value: "ai.infer",
}


def new_run_state(
    function: Function[Any], call: protocol.CallRequest, headers: Mapping[str, str], **options: Any
) -> RunState:
    """The request's state: the plain one when the function has no middleware (no cost per step)."""
    chain = function.middleware_chain()
    if not chain:
        return RunState(function, call, **options)
    return HookedRunState(function, call, chain=chain, headers=headers, **options)


class HookedRunState(RunState):
    """A :class:`RunState` that calls the middleware hooks from the points it passes."""

    def __init__(
        self,
        function: Function[Any],
        call: protocol.CallRequest,
        *,
        chain: Chain,
        headers: Mapping[str, str],
        **options: Any,
    ) -> None:
        super().__init__(function, call, **options)
        self.chain = chain
        self.headers = {name.lower(): value for name, value in headers.items()}
        self.info: RunInfo | None = None
        self._last: tuple[str, str, str, int] = ("", "", "", 0)  # the last step begun
        self._seen: set[str] = set()  # hashed ids reported in this request
        self._open: dict[str, tuple[StepInfo, int]] = {}  # executing: info, start (ns)
        self._executed: dict[str, StepInfo] = {}
        self._executing_started = False
        self._returned: tuple[Any] | None = None
        self._failure: tuple[BaseException, bool] | None = None

    # -- the function ------------------------------------------------------------------------

    def enter(self) -> Outcome | None:
        call = self.call
        run = self.info = RunInfo(
            run_id=self.run_id,
            function=self.function,
            function_id=self.function.fully_qualified_id,
            attempt=self.attempt,
            max_attempts=self.max_attempts,
            event=call.event,
            replaying=self.replaying,
            memoised_steps=len(self.memos),
            checkpointing=self.checkpointing is not None,
            target_step=self.target_step,
            headers=self.headers,
        )
        if self.chain.transform_input:
            data = FunctionInput(call.event, call.events, self.memos)
            try:
                for hook in self.chain.transform_input:
                    hook(run, data)
            except Exception as exc:
                observe(self.chain.before_function, run)
                return self.function_failed(exc)
            call.event, call.events, self.memos = data.event, data.events, data.steps
            run.event = data.event
            self.replaying = bool(self.memos)
        observe(self.chain.before_function, run)
        if not self.replaying:
            self._start_execution()
        return None

    def leave(self, outcome: Outcome) -> Outcome:
        run = self._run()
        if self._returned is not None:
            result = RunOutcome("completed", outcome.status, output=self._returned[0])
        elif self._failure is not None:
            error, final = self._failure
            result = RunOutcome("failed", outcome.status, error=error, final=final)
        else:
            result = RunOutcome("handed_over", outcome.status)
        observe(self.chain.after_function, run, result)
        return outcome

    def _run(self) -> RunInfo:
        run = self.info
        if run is None:  # pragma: no cover - enter() runs first
            raise RuntimeError("the request has not started")
        return run

    def _start_execution(self) -> None:
        if not self._executing_started:
            self._executing_started = True
            observe(self.chain.before_execution, self._run())

    def function_returned(self, value: Any) -> Outcome:
        self._start_execution()
        if self.chain.transform_output:
            run = self._run()
            try:
                data = _loads(serialise(value))
                for hook in self.chain.transform_output:
                    data = hook(run, data)
            except Exception as exc:
                return self.function_failed(exc)
            self._returned = (data,)
            return super().function_returned(data)
        self._returned = (value,)
        return super().function_returned(value)

    def function_failed(self, exc: BaseException) -> Outcome:
        self._start_execution()
        self._returned = None
        final = self._is_final(exc)
        self._failure = (exc, final)
        observe(self.chain.on_failure, Failure(self._run(), exc, final))
        return super().function_failed(exc)

    # -- steps -------------------------------------------------------------------------------

    def begin(self, step_id: str, kind: str) -> tuple[str, int]:
        hashed, index = super().begin(step_id, kind)
        self._last = (hashed, step_id, kind, index)
        return hashed, index

    def _info(
        self,
        hashed: str,
        step_id: str,
        kind: str,
        index: int,
        memoised: bool = False,
        executed: bool = False,
        checkpointed: bool = False,
        parallel: bool = False,
    ) -> StepInfo:
        run = self.info
        if run is None:  # pragma: no cover - enter() runs first
            run = self._run()
        return StepInfo(
            run,
            step_id,
            hashed,
            index,
            kind,
            memoised,
            executed,
            checkpointed,
            self.attempt,
            self.in_parallel or parallel,
        )

    def lookup(self, hashed: str) -> Any:
        was_replaying = self.replaying
        memo = super().lookup(hashed)
        if memo is not self.MISSING and hashed not in self._seen:
            self._seen.add(hashed)
            last = self._last
            step_id, kind, index = (last[1], last[2], last[3]) if last[0] == hashed else (hashed, "run", 0)
            info = self._info(hashed, step_id, kind, index, memoised=True)
            observe(self.chain.before_step, info)
            observe(self.chain.after_step, info, self._memo_result(step_id, memo))
        if was_replaying and not self.replaying:
            self._start_execution()
        return memo

    def _memo_result(self, step_id: str, memo: Any) -> StepResult:
        kind = protocol.memo_kind(memo)
        if kind is protocol.MemoKind.ERROR:
            return StepResult(error=self._step_error(step_id, memo["error"]), final=True)
        if kind is protocol.MemoKind.DATA:
            return StepResult(output=memo["data"])
        return StepResult(output=memo)

    def _executing(self, info: StepInfo) -> None:
        self._seen.add(info.hashed_id)
        self._open[info.hashed_id] = (info, time.time_ns())
        self._executed[info.hashed_id] = info
        observe(self.chain.before_step, info)

    def _finished(self, hashed: str, result: StepResult) -> None:
        entry = self._open.pop(hashed, None)
        if entry is None:
            return
        info, started = entry
        if not result.start_ns:
            result.start_ns = started
            result.duration_ns = time.time_ns() - started
        observe(self.chain.after_step, info, result)

    def _scheduled(self, op: Mapping[str, Any], kind: str | None = None) -> None:
        hashed = str(op.get("id") or "")
        if not hashed or hashed in self._seen:
            return
        self._seen.add(hashed)
        if kind is None:
            kind = _KINDS.get(str(op.get("op")), str(op.get("op")))
            if op.get("op") == protocol.Opcode.STEP_PLANNED.value:
                opts = op.get("opts")
                kind = _KINDS.get(str(opts.get("type")) if isinstance(opts, dict) else "run", "run")
        userland = op.get("userland")
        index = userland.get("index", 0) if isinstance(userland, dict) else 0
        info = self._info(hashed, str(op.get("name") or hashed), kind, int(index or 0))
        observe(self.chain.before_step, info)
        observe(self.chain.after_step, info, StepResult())

    def prepare_run(self, hashed: str, step_id: str, index: int, step_type: str = "step.run") -> bool:
        try:
            checkpointed = super().prepare_run(hashed, step_id, index, step_type)
        except _Interrupt as stop:
            for op in stop.outcome.ops or ():
                if op.get("op") == protocol.Opcode.STEP_PLANNED.value and op.get("id") == hashed:
                    self._scheduled(op)
            raise
        kind = _KINDS.get(step_type, step_type)
        self._executing(self._info(hashed, step_id, kind, index, executed=True, checkpointed=checkpointed))
        return checkpointed

    def starting_steps(self, pending: Sequence[_Pending]) -> None:
        for item in pending:
            info = self._info(
                item.hashed, item.step_id, "run", item.index, executed=True, checkpointed=True, parallel=True
            )
            self._executing(info)

    def run_succeeded(
        self,
        hashed: str,
        step_id: str,
        index: int,
        out: Any,
        start_ns: int,
        duration_ns: int,
        checkpointed: bool,
        fn: Callable[..., Any] | None = None,
        output_type: Any = None,
    ) -> tuple[Any, dict[str, Any]]:
        try:
            value, op = super().run_succeeded(
                hashed, step_id, index, out, start_ns, duration_ns, checkpointed, fn, output_type
            )
        except _Interrupt as stop:
            ops = stop.outcome.ops
            if ops and ops[0].get("op") == protocol.Opcode.STEP_RUN.value and ops[0].get("id") == hashed:
                plain = ops[0]
                self._finished(hashed, StepResult(plain.get("data"), None, start_ns, duration_ns))
                ops[0] = self._wire(plain)
            raise
        self._finished(hashed, StepResult(op.get("data"), None, start_ns, duration_ns))
        return value, op

    def run_failed(self, hashed: str, step_id: str, index: int, exc: BaseException) -> Any:
        final = self._is_final(exc)
        info = self._open.get(hashed)
        self._finished(hashed, StepResult(error=exc, final=final))
        step = info[0] if info is not None else None
        observe(self.chain.on_failure, Failure(self._run(), exc, final, step))
        return super().run_failed(hashed, step_id, index, exc)

    def new_async_op(self, step_id: str, op: dict[str, Any]) -> Any:
        if self.chain.transform_invoke_data and op.get("op") == protocol.Opcode.INVOKE_FUNCTION.value:
            op = self._invoke_data(step_id, op)
        if self.target_step is None and not self.in_parallel:
            self._scheduled(op)
        return super().new_async_op(step_id, op)

    def _invoke_data(self, step_id: str, op: dict[str, Any]) -> dict[str, Any]:
        opts = op.get("opts")
        payload = opts.get("payload") if isinstance(opts, dict) else None
        if not isinstance(opts, dict) or not isinstance(payload, dict):
            return op
        last = self._last
        index = last[3] if last[0] == op.get("id") else 0
        info = self._info(str(op.get("id")), step_id, "invoke", index)
        data = payload.get("data")
        for hook in self.chain.transform_invoke_data:
            data = hook(info, data)
        return {**op, "opts": {**opts, "payload": {**payload, "data": data}}}

    def parallel_done(self, planned: list[dict[str, Any]], skipped: int) -> None:
        if self.target_step is None:
            for op in planned:
                self._scheduled(op)
        super().parallel_done(planned, skipped)

    def _wire(self, op: dict[str, Any]) -> dict[str, Any]:
        """The op as sent: a ``step.run`` output through ``transform_step_output``."""
        hooks = self.chain.transform_step_output
        if not hooks:
            return op
        info = self._executed.get(op.get("id") or "")
        if info is None or info.kind != "run" or op.get("op") != protocol.Opcode.STEP_RUN.value:
            return op
        data = op.get("data")
        for hook in hooks:
            data = hook(info, data)
        return {**op, "data": data}

    def push(self, op: dict[str, Any]) -> None:
        super().push(self._wire(op))

    async def push_async(self, op: dict[str, Any]) -> None:
        await super().push_async(self._wire(op))

    # -- events ------------------------------------------------------------------------------

    def send_now(self, events: Any) -> list[str]:
        return self.client.send_now(events, middleware=self.chain)

    async def send_now_async(self, events: Any) -> list[str]:
        return await self.client.send_now_async(events, middleware=self.chain)
