"""One call request's execution: memo replay, standard and checkpointing modes, the ops of the reply.

User code runs until it returns, raises, or reaches a step this request may not run; ``_Interrupt``
unwinds it then, carrying the :class:`Outcome`. The entry points (``execute``/``execute_async``)
finish an outcome into a :class:`~eagerstep.core.messages.Response`, flushing or settling the run's
checkpointer first so that no completed step is ever dropped.
"""

from __future__ import annotations

import asyncio
import json
import json.encoder
import logging
import math
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from json.scanner import make_scanner
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from pydantic import BaseModel, TypeAdapter
from pydantic_core import to_jsonable_python

from eagerstep.core import protocol
from eagerstep.core.checkpoint import Checkpointing
from eagerstep.core.errors import (
    NonRetriableError,
    OutputSerializationError,
    RetryAfterError,
    StepError,
    StepUsageError,
)
from eagerstep.core.messages import Response
from eagerstep.core.parallel import _Pending, _Planned, _Skipped
from eagerstep.core.steps import (
    AsyncContext,
    AsyncStep,
    Context,
    ReplayAwareLogger,
    SyncStep,
)

if TYPE_CHECKING:
    from eagerstep.core.checkpoint import RunCheckpointer
    from eagerstep.core.function import Function, FunctionOwner

logger = logging.getLogger("eagerstep")

_JSON_HEADERS = {"content-type": "application/json"}
_PLAIN = (dict, list, str, int, float, bool, type(None))


class _Interrupt(BaseException):
    """Ends the user's code: this request answers with ``outcome``."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


@dataclass
class Outcome:
    """How a request ends, before the checkpointer's unconfirmed steps are merged in."""

    status: int
    ops: list[dict[str, Any]] | None = None  # the 206 ops (status 206)
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: "flush" (every reply: checkpoint everything unconfirmed first, so the reply carries one op)
    #: or "settle" (the checkpoint API has failed for good: wait for the in-flight call only);
    #: ignored when nothing was pushed to a checkpointer.
    checkpoint: str = "flush"
    #: A function error: when steps are unconfirmed, reply with them instead (the run replays).
    yields_to_unconfirmed: bool = False

    def response(self, unconfirmed: list[dict[str, Any]]) -> Response:
        headers = {**_JSON_HEADERS, **self.headers}
        if self.ops is not None:
            return Response(206, headers, protocol.dumps([*unconfirmed, *self.ops]).encode())
        if unconfirmed and self.yields_to_unconfirmed:
            return Response(206, dict(_JSON_HEADERS), protocol.dumps(unconfirmed).encode())
        return Response(self.status, headers, self.body)


def error_outcome(status: int, code: str, error: str, /, **extra: Any) -> Outcome:
    body = {"error": error, "code": code, **extra}
    return Outcome(status, body=protocol.dumps(body).encode())


def _stale_outcome() -> Outcome:
    message = (
        "stale dispatch: the orchestrator has already dispatched this run again (checkpoint API "
        "answered 409); this request stopped"
    )
    outcome = error_outcome(400, "stale_dispatch", message, name="StaleDispatchError", message=message)
    outcome.headers[protocol.Header.NO_RETRY] = "true"
    return outcome


_MISSING: Any = object()

_return_types: dict[Any, Any] = {}
_adapters: dict[Any, TypeAdapter[Any]] = {}


def _annotation_key(fn: Callable[..., Any]) -> Any:
    """A bounded cache key for ``fn``'s annotations: its code object (shared by every lambda made
    from the same source line), or the class itself; None for other callables (not cached)."""
    code = getattr(fn, "__code__", None) or getattr(getattr(fn, "__func__", None), "__code__", None)
    if code is not None:
        return code
    return fn if isinstance(fn, type) else None


def _return_model(fn: Callable[..., Any]) -> Any:
    """The step function's return annotation if it is a pydantic model class, else None (cached)."""
    key = _annotation_key(fn)
    if key is not None:
        try:
            return _return_types[key]
        except KeyError:
            pass
    model = None
    try:
        ann = typing.get_type_hints(fn).get("return")
    except Exception:
        ann = None
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        model = ann
    if key is not None:
        _return_types[key] = model
    return model


def _restore(data: Any, output_type: Any, fn: Callable[..., Any] | None) -> Any:
    """A recorded output as the step returns it: validated into ``output_type`` or a model annotation."""
    if output_type is not None:
        if isinstance(output_type, type) and issubclass(output_type, BaseModel):
            return output_type.model_validate(data)
        adapter = _adapters.get(output_type)
        if adapter is None:
            adapter = _adapters[output_type] = TypeAdapter(output_type)
        return adapter.validate_python(data)
    if fn is not None and data is not None:
        model = _return_model(fn)
        if model is not None:
            return model.model_validate(data)
    return data


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# The step path encodes and decodes small JSON on every step: use the C encoder and scanner
# directly (same output as protocol.dumps / json.loads, minus per-call setup).
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_c_encoder = (
    _c_make_encoder(None, _not_json, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    if _c_make_encoder is not None
    else None
)
_scan = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _dumps(value: Any) -> str:
    if _c_encoder is None:  # pragma: no cover - CPython always has the C encoder
        return protocol.dumps(value)
    return "".join(_c_encoder(value, 0))


def _loads(text: str) -> Any:
    return _scan(text, 0)[0]


_IMMUTABLE = (str, int, bool, type(None))
_DECODED_SCALARS = (str, int, float, bool, type(None))


def _second_copy(text: str, data: Any) -> Any:
    """A value equal to, and independent of, ``data`` (which is ``_loads(text)``): what decoding
    ``text`` again would give. A flat object or array (its text has no other bracket, so every
    member is an immutable scalar) is copied shallowly, at a fraction of a second decoding."""
    kind = type(data)
    if kind is dict:
        if text.count("{") == 1 and "[" not in text:
            return data.copy()
    elif kind is list:
        if text.count("[") == 1 and "{" not in text:
            return data.copy()
    elif kind in _DECODED_SCALARS:
        return data
    return _loads(text)


# Hashed step ids by unhashed key ("id" or "id:index"): the same functions run the same step ids
# over and over, and a dictionary hit costs a fraction of a SHA-1. Bounded: cleared when full.
_hashed_ids: dict[str, str] = {}
_HASHED_IDS_MAX = 4096


def _hash_step(key: str) -> str:
    hashed = _hashed_ids.get(key)
    if hashed is None:
        hashed = protocol.hash_step_id(key)
        if len(_hashed_ids) >= _HASHED_IDS_MAX:
            _hashed_ids.clear()
        _hashed_ids[key] = hashed
    return hashed


def serialise(value: Any) -> str:
    """Compact JSON of a step output or a function result; pydantic models and friends allowed."""
    try:
        return _dumps(value)
    except (TypeError, ValueError, RecursionError):
        pass
    try:
        return protocol.dumps(to_jsonable_python(value))
    except Exception as exc:
        raise OutputSerializationError(
            f"the value cannot be stored as JSON ({type(value).__name__}): {exc}; return JSON-compatible "
            "data or a pydantic model"
        ) from exc


class RunState:
    """Everything one call request knows while the user's code runs."""

    MISSING: ClassVar[Any] = _MISSING

    def __init__(
        self,
        function: Function[Any],
        call: protocol.CallRequest,
        *,
        target_step: str | None,
        checkpointing: Checkpointing | None,
        make_checkpointer: Callable[[], RunCheckpointer] | None = None,
        started: float | None = None,
    ) -> None:
        #: Runs a unit of work on one of eagerstep's threads (a branch of an eager parallel group):
        #: set by the serve handler from ``CommHandler.around_thread_work``; None: call it directly.
        self.around_thread: Callable[[Callable[[], Any]], Any] | None = None
        self.function = function
        self.client: FunctionOwner = function.client
        self.call = call
        self.run_id = call.ctx.run_id
        self.memos = call.steps
        self.target_step = target_step
        self.attempt = call.ctx.attempt
        self.max_attempts = call.ctx.max_attempts or function.max_attempts()
        self.disable_immediate = call.ctx.disable_immediate_execution
        self.checkpointing = checkpointing
        self.make_checkpointer = make_checkpointer
        self.checkpointer: RunCheckpointer | None = None
        self.started = time.monotonic() if started is None else started
        self.max_runtime = (
            checkpointing.max_runtime.total_seconds()
            if checkpointing is not None and checkpointing.max_runtime is not None
            else None
        )
        self.counters: dict[str, int] = {}
        self.kinds: dict[str, str] = {}
        self.in_parallel = False
        self.collecting = False  # a round of an eager parallel group is finding its steps
        self.pushed = 0
        self.memo_hits = 0
        self.replaying = bool(self.memos)

    # -- bookkeeping -------------------------------------------------------------------------

    def begin(self, step_id: str, kind: str) -> tuple[str, int]:
        """Hash the next occurrence of ``step_id`` (``sha1(id)``, then ``sha1(id:n)`` for repeats);
        check that its kind is consistent."""
        if type(step_id) is not str or not step_id:
            raise StepUsageError(f"a step id must be a non-empty string, not {step_id!r}")
        seen = self.kinds.get(step_id)
        if seen is None:
            self.kinds[step_id] = kind
            self.counters[step_id] = 1
            return _hash_step(step_id), 0
        if seen != kind:
            raise StepUsageError(
                f"step id {step_id!r} is used for a {seen} step and a {kind} step in the same run; "
                "give each step its own id"
            )
        index = self.counters[step_id]
        self.counters[step_id] = index + 1
        return _hash_step(f"{step_id}:{index}"), index

    def lookup(self, hashed: str) -> Any:
        memo = self.memos.get(hashed, _MISSING)
        if memo is _MISSING:
            self.replaying = False
            return _MISSING
        if type(memo) is dict and len(memo) == 1 and "input" in memo:
            self.replaying = False
            return _MISSING
        self.memo_hits += 1
        if self.memo_hits >= len(self.memos):
            self.replaying = False
        return memo

    def _wrong_form(self, step_id: str, kind: str, expected: str, memo: Any) -> NoReturn:
        raise StepError(
            f"the recorded state of {kind} step {step_id!r} has the wrong form (expected {expected}, got "
            f"{protocol.dumps(memo)[:200]}); was the step id reused for a different kind of step in an "
            "earlier version of this function?",
            step_id=step_id,
            name="StepStateError",
        )

    @staticmethod
    def _step_error(step_id: str, error: Any) -> StepError:
        if not isinstance(error, dict):
            error = {"message": str(error)}
        return StepError(
            str(error.get("message") or ""),
            step_id=step_id,
            name=str(error.get("name") or "Error"),
            stack=error.get("stack") if isinstance(error.get("stack"), str) else None,
            data=error.get("data"),
        )

    def decode_run_memo(
        self, step_id: str, memo: Any, fn: Callable[..., Any] | None, output_type: Any
    ) -> Any:
        kind = protocol.memo_kind(memo)
        if kind is protocol.MemoKind.DATA:
            return _restore(memo["data"], output_type, fn)
        if kind is protocol.MemoKind.ERROR:
            raise self._step_error(step_id, memo["error"])
        self._wrong_form(step_id, "run", '{"data": ...} or {"error": ...}', memo)

    def decode_send_memo(self, step_id: str, memo: Any) -> list[str]:
        data = self.decode_run_memo(step_id, memo, None, None)
        ids = data.get("ids") if isinstance(data, dict) else data
        if not isinstance(ids, list):
            self._wrong_form(step_id, "send_event", '{"data": {"ids": [...]}}', memo)
        return [str(i) for i in ids]

    def decode_wait_memo(self, step_id: str, memo: Any) -> protocol.WireEvent | None:
        kind = protocol.memo_kind(memo)
        if kind is protocol.MemoKind.ERROR:
            raise self._step_error(step_id, memo["error"])
        if kind is protocol.MemoKind.DATA:
            memo = memo["data"]
        if memo is None:
            return None
        if not isinstance(memo, dict) or not isinstance(memo.get("name"), str):
            self._wrong_form(step_id, "wait_for_event", "an event object or null", memo)
        return protocol.WireEvent.model_validate(memo)

    def decode_invoke_memo(self, step_id: str, memo: Any) -> Any:
        kind = protocol.memo_kind(memo)
        if kind is protocol.MemoKind.DATA:
            return memo["data"]
        if kind is protocol.MemoKind.ERROR:
            raise self._step_error(step_id, memo["error"])
        self._wrong_form(step_id, "invoke", '{"data": ...} or {"error": ...}', memo)

    def to_wire_value(self, value: Any, what: str) -> Any:
        try:
            return json.loads(serialise(value))
        except OutputSerializationError as exc:
            raise StepUsageError(f"{what}: {exc}") from exc

    # -- deciding what a new step does -------------------------------------------------------

    def _fall_back(self, step_id: str, reason: str) -> None:
        if self.checkpointing is not None:
            logger.info(
                "checkpointing: run %s hands over to the orchestrator at step %r: %s",
                self.run_id,
                step_id,
                reason,
            )

    def _check_stale(self) -> None:
        cp = self.checkpointer
        if cp is not None and cp.stale:
            raise _Interrupt(_stale_outcome())

    def prepare_run(self, hashed: str, step_id: str, index: int, step_type: str = "step.run") -> bool:
        """Called for a new (unrecorded) run-like step: True to run it and continue (checkpointing),
        False to run it and reply with its result; raises to plan it instead."""
        if self.target_step is not None:
            if hashed == self.target_step:
                return False
            if self.in_parallel:
                raise _Skipped()
            raise _Interrupt(self._step_not_found(step_id))
        if self.in_parallel:
            raise _Planned(protocol.step_planned_op(hashed, step_id, index=index, step_type=step_type))
        if self.disable_immediate:
            raise _Interrupt(
                Outcome(
                    206, ops=[protocol.step_planned_op(hashed, step_id, index=index, step_type=step_type)]
                )
            )
        if self.checkpointing is None:
            return False
        self._check_stale()
        cp = self.checkpointer
        if cp is not None and cp.failed:
            # The checkpoint API keeps failing: hand the unconfirmed steps back in the reply now
            # (the orchestrator stores them and calls again) instead of running on undurably.
            self._fall_back(step_id, "the checkpoint API is failing; unconfirmed steps go in the reply")
            raise _Interrupt(Outcome(206, ops=[], checkpoint="settle"))
        if self.max_runtime is not None and time.monotonic() - self.started >= self.max_runtime:
            self._fall_back(step_id, "max_runtime reached; the step is planned for a new request")
            raise _Interrupt(
                Outcome(
                    206, ops=[protocol.step_planned_op(hashed, step_id, index=index, step_type=step_type)]
                )
            )
        if step_type != "step.run":
            self._fall_back(step_id, f"{step_type} replies at once")
            return False
        if self.attempt > 0 and self.pushed == 0:
            self._fall_back(step_id, f"the request is retry attempt {self.attempt}; replying after one step")
            return False
        return True

    def _step_not_found(self, step_id: str) -> Outcome:
        message = (
            f"the orchestrator asked for step {self.target_step}, but the code reached a different new step "
            f"{step_id!r}; the function's code may have changed since the step was planned"
        )
        return error_outcome(500, "step_not_found", message, name="StepNotFound", message=message)

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
        kind = type(out)
        if kind in _IMMUTABLE or (kind is float and math.isfinite(out)):
            # Immutable JSON scalars: what is recorded is what the code gets; nothing to encode.
            text = None
            data = out
        else:
            try:
                text = serialise(out)
            except OutputSerializationError as exc:
                self.run_failed(hashed, step_id, index, exc)
            data = _loads(text)
        op = protocol.step_run_op(
            hashed, step_id, data, start_ns=start_ns, duration_ns=duration_ns, index=index
        )
        if not checkpointed:
            raise _Interrupt(Outcome(206, ops=[op]))
        if output_type is None and (fn is None or _return_model(fn) is None):
            if isinstance(out, BaseModel):
                return out, op
            # The code gets its own copy, as a replay would: later mutation cannot touch the record.
            return (out if text is None else _second_copy(text, data)), op
        return _restore(data if text is None else _second_copy(text, data), output_type, fn), op

    def run_failed(self, hashed: str, step_id: str, index: int, exc: BaseException) -> NoReturn:
        final = self._is_final(exc)
        self._log_failure(f"step {step_id!r}", exc, final)
        error = protocol.error_payload(exc, no_retry=final)
        op = protocol.step_error_op(hashed, step_id, error, final=final, index=index)
        self._fall_back(step_id, "the step raised " + type(exc).__name__)
        raise _Interrupt(Outcome(206, ops=[op], headers=self._retry_headers(exc, final)))

    def push(self, op: dict[str, Any]) -> None:
        cp = self.checkpointer
        if cp is None:
            cp = self.checkpointer = self._new_checkpointer()
        self.pushed += 1
        cp.push(op)

    async def push_async(self, op: dict[str, Any]) -> None:
        cp = self.checkpointer
        if cp is None:
            cp = self.checkpointer = self._new_checkpointer()
        self.pushed += 1
        await cp.push_async(op)

    def _new_checkpointer(self) -> RunCheckpointer:
        if self.make_checkpointer is None:  # pragma: no cover - guarded by prepare_run
            raise RuntimeError("checkpointing is off for this request")
        return self.make_checkpointer()

    def new_async_op(self, step_id: str, op: dict[str, Any]) -> NoReturn:
        """A sleep / wait / invoke that is not recorded yet: the orchestrator must handle it."""
        if self.target_step is not None:
            if self.in_parallel:
                raise _Skipped()
            raise _Interrupt(self._step_not_found(step_id))
        if self.in_parallel:
            raise _Planned(op)
        self._check_stale()
        self._fall_back(step_id, f"{op['op']} is handled by the orchestrator")
        raise _Interrupt(Outcome(206, ops=[op]))

    # -- parallel groups ---------------------------------------------------------------------

    def enter_parallel(self) -> None:
        if self.in_parallel:
            raise StepUsageError("step.parallel groups cannot be nested")
        self.in_parallel = True

    def exit_parallel(self) -> None:
        self.in_parallel = False

    def runs_groups_eagerly(self) -> bool:
        """Whether a parallel group's steps run in this request (checkpointing, the function's
        ``parallel="eager"``, the checkpoint API healthy, ``max_runtime`` not reached)."""
        if self.checkpointing is None or self.function.parallel != "eager":
            return False
        cp = self.checkpointer
        if cp is not None and (cp.failed or cp.stale):
            return False
        return self.max_runtime is None or time.monotonic() - self.started < self.max_runtime

    def starting_steps(self, pending: Sequence[_Pending]) -> None:
        """The bodies of these steps of an eager group are about to run (middleware hooks)."""

    def parallel_threads(self) -> int:
        return self.checkpointing.parallel_threads if self.checkpointing is not None else 1

    def step_counters(self) -> tuple[dict[str, int], dict[str, str]]:
        return dict(self.counters), dict(self.kinds)

    def restore_step_counters(self, saved: tuple[dict[str, int], dict[str, str]]) -> None:
        """Step ids as a replay from here would hash them (each round of an eager group)."""
        self.counters, self.kinds = dict(saved[0]), dict(saved[1])

    def parallel_done(self, planned: list[dict[str, Any]], skipped: int) -> None:
        if planned:
            self._check_stale()
            self._fall_back(planned[0].get("name") or "", f"a parallel group of {len(planned)} step(s)")
            raise _Interrupt(Outcome(206, ops=planned))
        if skipped:
            raise _Interrupt(self._step_not_found(f"<{skipped} step(s) of a parallel group>"))

    # -- the function's start and end (middleware.HookedRunState calls the hooks here) -------

    def enter(self) -> Outcome | None:
        """Before the function's code runs: an outcome ends the request without running it."""
        return None

    def leave(self, outcome: Outcome) -> Outcome:
        return outcome

    def send_now(self, events: Any) -> list[str]:
        return self.client.send_now(events)

    async def send_now_async(self, events: Any) -> list[str]:
        return await self.client.send_now_async(events)

    def _is_final(self, exc: BaseException) -> bool:
        return isinstance(exc, (NonRetriableError, StepError)) or self.attempt + 1 >= self.max_attempts

    @staticmethod
    def _retry_headers(exc: BaseException, final: bool) -> dict[str, str]:
        headers = {protocol.Header.NO_RETRY: "true" if final else "false"}
        if isinstance(exc, RetryAfterError) and not final:
            headers[protocol.Header.RETRY_AFTER] = exc.header_value()
        return headers

    def function_returned(self, value: Any) -> Outcome:
        """The run's result. After checkpointed steps: ``206 [RunComplete]`` alone, once one
        coalesced flush has checkpointed every unconfirmed step (a reply with several ops is a
        parallel group to a real Inngest server, protocol.md §3.3b); the steps ride ahead of
        ``RunComplete`` only if that flush fails for good. Otherwise 200."""
        try:
            text = serialise(value)
        except OutputSerializationError as exc:
            return self.function_failed(exc)
        if self.pushed:
            return Outcome(206, ops=[protocol.run_complete_op(_loads(text))])
        return Outcome(200, body=text.encode())

    def _log_failure(self, where: str, exc: BaseException, final: bool) -> None:
        """Say on the app's side that user code raised, as Django and Flask do for a view: one line
        per failed attempt, the traceback with the first attempt's line only."""
        attempt, total = self.attempt + 1, self.max_attempts
        if isinstance(exc, NonRetriableError):
            outcome = "non-retriable: the run fails"
        elif final:
            outcome = f"attempt {attempt} of {total}, the last: the run fails"
        else:
            outcome = f"attempt {attempt} of {total}: the orchestrator retries"
        logger.log(
            logging.ERROR if final else logging.WARNING,
            "%s of %s (run %s) raised %s: %s (%s)",
            where,
            self.function.fully_qualified_id,
            self.run_id,
            type(exc).__name__,
            exc,
            outcome,
            exc_info=exc if self.attempt == 0 else None,
        )

    def function_failed(self, exc: BaseException) -> Outcome:
        final = self._is_final(exc)
        if isinstance(exc, StepError):  # a step failed for good: its traceback was logged then
            logger.error(
                "%s (run %s) failed: step %r failed for good and the function did not catch it: %s",
                self.function.fully_qualified_id,
                self.run_id,
                exc.step_id,
                exc.message,
            )
        else:
            self._log_failure("the function", exc, final)
        payload = protocol.error_payload(exc, no_retry=final)
        if isinstance(exc, StepError):
            payload["name"] = exc.name
            payload["message"] = exc.message
            payload["step_id"] = exc.step_id
        return Outcome(
            400 if final else 500,
            body=protocol.dumps(payload).encode(),
            headers=self._retry_headers(exc, final),
            yields_to_unconfirmed=True,
        )


# --------------------------------------------------------------------------------------------
# Running a function


def _event(raw: dict[str, Any]) -> protocol.WireEvent:
    fields = {"name": "", **raw}
    if not isinstance(fields.get("data"), dict):
        fields["data"] = {}
    if not isinstance(fields.get("name"), str):
        fields["name"] = str(fields["name"])
    return protocol.WireEvent.model_validate(fields)


def _events(call: protocol.CallRequest) -> tuple[protocol.WireEvent, list[protocol.WireEvent]]:
    event = _event(call.event)
    events = [_event(e) for e in call.events if isinstance(e, dict)] or [event]
    return event, events


def _context(state: RunState, is_async: bool) -> Context:
    event, events = _events(state.call)
    cls = AsyncContext if is_async else Context
    step = AsyncStep(state) if is_async else SyncStep(state)
    return cls(
        event=event,
        events=events,
        run_id=state.run_id,
        attempt=state.attempt,
        max_attempts=state.max_attempts,
        function_id=state.function.fully_qualified_id,
        step=step,
        logger=ReplayAwareLogger(state.client.logger, state),
    )


def run_sync(state: RunState) -> Outcome:
    """Run a ``def`` function's code for this request; return how the request ends."""
    stopped = state.enter()
    if stopped is not None:
        return state.leave(stopped)
    ctx = _context(state, False)
    try:
        value = state.function.handler(ctx)
    except _Interrupt as stop:
        return state.leave(stop.outcome)
    except (_Planned, _Skipped):  # pragma: no cover - only raised inside parallel groups
        return error_outcome(500, "internal_error", "a step escaped its parallel group")
    except Exception as exc:
        return state.leave(state.function_failed(exc))
    return state.leave(state.function_returned(value))


async def run_async(state: RunState) -> Outcome:
    """Run an ``async def`` function's code for this request; return how the request ends."""
    stopped = state.enter()
    if stopped is not None:
        return state.leave(stopped)
    ctx = _context(state, True)
    try:
        value = await state.function.handler(ctx)
    except _Interrupt as stop:
        return state.leave(stop.outcome)
    except (_Planned, _Skipped):  # pragma: no cover
        return error_outcome(500, "internal_error", "a step escaped its parallel group")
    except Exception as exc:
        return state.leave(state.function_failed(exc))
    return state.leave(state.function_returned(value))


def finish(state: RunState, outcome: Outcome, timeout: float | None = None) -> Response:
    """Merge the checkpointer's unconfirmed steps into the reply (sync entry point)."""
    cp = state.checkpointer
    unconfirmed: list[dict[str, Any]] = []
    if cp is not None:
        try:
            if state.pushed:
                unconfirmed = cp.settle(timeout) if outcome.checkpoint == "settle" else cp.flush(timeout)
        finally:
            cp.close()
        if cp.stale:
            outcome = _stale_outcome()
            unconfirmed = []
    return outcome.response(unconfirmed)


async def finish_async(state: RunState, outcome: Outcome, timeout: float | None = None) -> Response:
    """Merge the checkpointer's unconfirmed steps into the reply (async entry point)."""
    cp = state.checkpointer
    unconfirmed: list[dict[str, Any]] = []
    if cp is not None:
        try:
            if state.pushed:
                if outcome.checkpoint == "settle":
                    unconfirmed = await cp.settle_async(timeout)
                else:
                    unconfirmed = await cp.flush_async(timeout)
        finally:
            cp.close()
        if cp.stale:
            outcome = _stale_outcome()
            unconfirmed = []
    return outcome.response(unconfirmed)


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
