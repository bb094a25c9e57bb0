"""Per-op handling of a 206 reply: step results and errors, planned steps, sleeps, waits and invokes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from eagerstep.core import protocol
from eagerstep.engine import aigateway, expressions
from eagerstep.engine.history import VIA_REPLY
from eagerstep.engine.model import (
    CALL,
    COMPLETED,
    FAILED,
    INVOKE_TIMEOUT,
    MAX_TIMER_SECONDS,
    RUNNING,
    SLEEP,
    WAIT_TIMEOUT,
    FunctionInfo,
    QueueItem,
    RunState,
    Wait,
    new_id,
)

if TYPE_CHECKING:
    from eagerstep.engine.engine import Engine

log = logging.getLogger("eagerstep.engine")


@dataclass(slots=True)
class Op:
    """The fields of an op the engine reads; ``has_data`` tells null from absent."""

    op: str
    id: str
    name: str | None
    displayName: str | None
    opts: dict[str, Any] | None
    data: Any
    error: dict[str, Any] | None
    timing: dict[str, Any] | None
    has_data: bool


def fast_op(raw: Any) -> Op | None:
    """``raw`` as an :class:`Op` when every field has exactly its JSON type, else None.

    Accepts a subset of what ``protocol.GeneratorOp`` accepts, with the same result; anything
    else goes to the model, which coerces or explains what is wrong.
    """
    if type(raw) is not dict:
        return None
    get = raw.get
    kind, op_id, name, display = get("op"), get("id", ""), get("name"), get("displayName")
    opts, error, timing, userland = get("opts"), get("error"), get("timing"), get("userland")
    if (
        type(kind) is not str
        or type(op_id) is not str
        or (name is not None and type(name) is not str)
        or (display is not None and type(display) is not str)
        or (opts is not None and type(opts) is not dict)
        or (error is not None and type(error) is not dict)
        or (timing is not None and type(timing) is not dict)
        or (userland is not None and type(userland) is not dict)
    ):
        return None
    return Op(kind, op_id, name, display, opts, get("data"), error, timing, "data" in raw)


def from_model(model: protocol.GeneratorOp) -> Op:
    return Op(
        model.op,
        model.id,
        model.name,
        model.displayName,
        model.opts,
        model.data,
        model.error,
        model.timing,
        model.has_data,
    )


def parse_ops(raw_ops: Sequence[Any]) -> list[Op]:
    """Ops from JSON; raises pydantic's ``ValidationError`` (readable) for a malformed one."""
    ops: list[Op] = []
    for raw in raw_ops:
        op = fast_op(raw)
        if op is None:
            return [from_model(protocol.GeneratorOp.model_validate(item)) for item in raw_ops]
        ops.append(op)
    return ops


#: Order in which the ops of one reply are applied (waits first, completion last).
_ORDER = {
    "WaitForEvent": 0,
    "StepRun": 1,
    "Step": 1,
    "StepFailed": 1,
    "StepError": 2,
    "RunComplete": 9,
}


#: Ops the orchestrator schedules (a queue item per step id, so a repeated op is a no-op).
_SCHEDULED = frozenset({"StepPlanned", "Sleep", "WaitForEvent", "InvokeFunction", "AIGateway"})


class OpHandler:
    """Applies the ops of one 206 reply to a run, inside the reply's transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def apply(
        self,
        item: QueueItem,
        run: RunState,
        fn: FunctionInfo,
        raw_ops: list[Any],
        no_retry: bool,
        retry_after: str | None,
        started: float,
    ) -> None:
        engine = self.engine
        lifecycle, queue = engine.lifecycle, engine.queue
        try:
            ops = parse_ops(raw_ops)
        except ValidationError as exc:
            engine.caller.function_error(
                item,
                run,
                fn,
                {"name": "InvalidOps", "message": f"the app answered 206 with invalid ops: {exc}"},
                False,
                None,
            )
            return
        now = engine.clock.now()
        step_id = item.payload["step_id"]
        attempt = int(item.payload.get("attempt", 0))
        # The server's rules for a reply (executor.go HandleGeneratorResponse): several non-lazy
        # ops are a parallel group. The run switches to step planning (ForceStepPlan: later
        # calls carry disable_immediate_execution) and each op is handled on its own: every
        # StepRun schedules its own discovery. ForceStepPlan is cleared only when a discovery is
        # scheduled from a reply handled while it was already set (maybeResetForceStepPlan reads
        # the run's metadata as loaded for this reply), i.e. once the group has drained.
        forced_before = run.force_plan
        non_lazy = [op.op for op in ops if op.op not in protocol.LAZY_OPCODES]
        if len(non_lazy) > 1:
            run.force_plan = True
            if not all(kind in _SCHEDULED for kind in non_lazy):
                engine.stats["parallel_replies"] += 1
                log.info(
                    "run %s: the app answered %d ops in one reply (%s); like an Inngest server, the engine "
                    "handles them as a parallel group and plans the run's next steps one request each",
                    run.id,
                    len(non_lazy),
                    ", ".join(sorted(set(non_lazy))),
                )
        ops.sort(key=lambda o: _ORDER.get(o.op, 5))
        discoveries = 0
        retried = False
        complete: tuple[bool, Any] = (False, None)
        new_pending: list[str] = []
        for op in ops:
            name = op.displayName or op.name
            if op.op in ("StepRun", "Step"):
                timing = op.timing or {}
                begun = ended = None
                if isinstance(timing.get("a"), (int, float)):
                    begun = timing["a"] / 1e9
                    ended = begun + float(timing.get("b") or 0) / 1e9
                lifecycle.store_memo(
                    run,
                    op.id,
                    {"data": op.data if op.has_data else None},
                    name=name,
                    op="StepRun",
                    started=begun if begun is not None else started,
                    ended=ended if ended is not None else now,
                )
                engine.history.reported(run, [op.id], VIA_REPLY)
                discoveries += 1
            elif op.op in ("StepError", "StepFailed"):
                error = dict(op.error or {"name": "Error", "message": "step failed"})
                final = op.op == "StepFailed" or no_retry or bool(error.get("noRetry"))
                retry = not final and attempt + 1 < fn.max_attempts
                delay = engine.caller.retry_delay(retry_after) if retry else None
                engine.history.attempt_failed(
                    run,
                    op.id,
                    name,
                    attempt,
                    error,
                    started=started,
                    max_attempts=fn.max_attempts,
                    retry_in=delay,
                )
                if delay is not None:
                    queue.enqueue(CALL, run.id, now + delay, {"step_id": step_id, "attempt": attempt + 1})
                    retried = True
                    continue
                lifecycle.store_memo(
                    run, op.id, {"error": error}, name=name, op="StepFailed", started=started, ended=now
                )
                discoveries += 1
            elif op.op in _SCHEDULED and (op.id in run.memos or op.id in run.pending):
                # Already done, or already scheduled: the server's queue item for it has the same
                # job id (``<run>-<step>``, ``-plan`` for a planned step), so a repeat is a no-op.
                if op.id in run.memos:
                    discoveries += 1
                continue
            elif op.op == "StepPlanned":
                new_pending.append(op.id)
                run.started[op.id] = now
                run.names[op.id] = name or op.id
                race = {"race": True} if (op.opts or {}).get("parallelMode") == "race" else {}
                queue.enqueue(CALL, run.id, now, {"step_id": op.id, "attempt": 0, **race})
            elif op.op == "Sleep":
                opts = op.opts or {}
                text = str(opts.get("duration") or op.name or "")
                try:
                    target = protocol.parse_sleep_target(text, datetime.fromtimestamp(now, timezone.utc))
                except ValueError:
                    lifecycle.finish_run(
                        run,
                        FAILED,
                        error={"name": "InvalidSleep", "message": f"invalid sleep duration {text!r}"},
                    )
                    return
                due = min(target.timestamp(), now + MAX_TIMER_SECONDS)
                new_pending.append(op.id)
                run.started[op.id] = now
                run.names[op.id] = name or op.id
                queue.enqueue(SLEEP, run.id, due, {"step_id": op.id})
            elif op.op == "WaitForEvent":
                if not self._wait_for_event(run, op, now):
                    return
                new_pending.append(op.id)
                run.started[op.id] = now
                run.names[op.id] = name or op.id
            elif op.op == "InvokeFunction":
                new_pending.append(op.id)
                run.started[op.id] = now
                run.names[op.id] = name or op.id
                self._invoke(run, fn, op, now)
            elif op.op == aigateway.OP:
                new_pending.append(op.id)
                run.started[op.id] = now
                run.names[op.id] = name or op.id
                aigateway.start(engine, item, run, fn, op.id, op.opts)
            elif op.op == "RunComplete":
                complete = (True, op.data)
            elif op.op == "DiscoveryRequest":
                discoveries += 1
            elif op.op == "None" or op.op in protocol.LAZY_OPCODES:
                continue  # DeferAdd/DeferAbort: deferred work is not run by eagerstep dev
            else:
                lifecycle.finish_run(
                    run,
                    FAILED,
                    error={
                        "name": "UnsupportedOp",
                        "message": f"op {op.op} is not supported by eagerstep dev",
                    },
                )
                return
            if run.status != RUNNING:
                return
        if run.status != RUNNING:
            return
        if complete[0]:
            lifecycle.finish_run(run, COMPLETED, output=complete[1])
            return
        if step_id != "step" and not retried:
            run.pending.discard(step_id)
            discoveries = max(discoveries, 1)
        run.pending.update(new_pending)
        if discoveries and not retried:
            # Race mode: the server makes a discovery call after each parallel step, even while
            # others run (shouldEnqueueDiscovery), so a fast branch moves on without the slow one.
            race_mode = bool(item.payload.get("race"))
            for _ in range(discoveries):
                lifecycle.discover(run, reset_force_plan=forced_before, force=race_mode)
        elif not retried and not new_pending and not run.pending:
            # Nothing ran, nothing is planned or waiting: without this the run would hang forever.
            error = {
                "name": "NoProgress",
                "message": "the app answered 206 without any op the run can continue from",
            }
            engine.caller.function_error(item, run, fn, error, False, None)
            return
        lifecycle.save_run(run)

    def _wait_for_event(self, run: RunState, op: Op, now: float) -> bool:
        """Register a wait and its timeout; False when the run failed on a bad expression or timeout."""
        lifecycle = self.engine.lifecycle
        opts = op.opts or {}
        event_name = opts.get("event") or op.name
        expression = opts.get("if") or None
        if expression:
            try:
                expressions.check(expression)
            except expressions.ExpressionError as exc:
                lifecycle.finish_run(run, FAILED, error={"name": "InvalidExpression", "message": str(exc)})
                return False
        timeout = str(opts.get("timeout") or "")
        try:
            seconds = protocol.parse_duration(timeout).total_seconds() if timeout else 0.0
        except ValueError:
            try:
                seconds = protocol.parse_datetime(timeout).timestamp() - now
            except ValueError:
                lifecycle.finish_run(
                    run,
                    FAILED,
                    error={"name": "InvalidTimeout", "message": f"invalid wait timeout {timeout!r}"},
                )
                return False
        wait_id = new_id()
        timer = self.engine.queue.enqueue(
            WAIT_TIMEOUT,
            run.id,
            now + min(max(seconds, 0.0), MAX_TIMER_SECONDS),
            {"wait_id": wait_id, "step_id": op.id},
        )
        self.engine.waits.add(
            Wait(
                wait_id,
                run.id,
                "wait",
                str(event_name),
                {"step_id": op.id, "if": expression, "timer_id": timer.id},
            )
        )
        return True

    def _invoke(self, run: RunState, fn: FunctionInfo, op: Op, now: float) -> None:
        engine = self.engine
        opts = op.opts or {}
        target_id = str(opts.get("function_id") or "")
        payload = opts.get("payload") or {}
        target = engine.functions.get(target_id)
        if target is None:
            memo = {
                "error": {
                    "name": "Error",
                    "message": f"cannot invoke {target_id!r}: no such function is registered;"
                    " sync the app serving it",
                }
            }
            engine.lifecycle.store_memo(run, op.id, memo, name=op.displayName or op.name, op="InvokeFunction")
            return
        timeout = str(opts.get("timeout") or "")
        try:
            seconds = protocol.parse_duration(timeout).total_seconds() if timeout else MAX_TIMER_SECONDS
        except ValueError:
            seconds = MAX_TIMER_SECONDS
        correlation_id = f"{run.id}.{op.id}"
        wait_id = new_id()
        timer = engine.queue.enqueue(
            INVOKE_TIMEOUT,
            run.id,
            now + min(seconds, MAX_TIMER_SECONDS),
            {"wait_id": wait_id, "step_id": op.id},
        )
        engine.waits.add(
            Wait(
                wait_id,
                run.id,
                "invoke",
                None,
                {"step_id": op.id, "correlation_id": correlation_id, "timer_id": timer.id},
            )
        )
        data = dict(payload.get("data") or {})
        data["_inngest"] = {
            "fn_id": target_id,
            "correlation_id": correlation_id,
            "source_app_id": fn.app_url,
            "source_fn_id": fn.uuid,
            "source_fn_v": 1,
            "expire": int((now + seconds) * 1000),
            "gid": new_id(),
            "name": protocol.EVENT_FUNCTION_INVOKED,
        }
        event: dict[str, Any] = {
            "name": protocol.EVENT_FUNCTION_INVOKED,
            "data": data,
            "id": new_id(),
            "ts": int(now * 1000),
            "user": payload.get("user") or {},
        }
        if payload.get("v"):
            event["v"] = payload["v"]
        engine.intake.ingest(event, target)
