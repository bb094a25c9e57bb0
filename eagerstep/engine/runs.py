"""Runs: creating them, storing step memos, resolving waited-on steps, and ending them."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from eagerstep.core import protocol
from eagerstep.engine.failures import standard_error
from eagerstep.engine.model import (
    CALL,
    CANCEL_TIMEOUT,
    CANCELLED,
    COMPLETED,
    FAILED,
    MAX_TIMER_SECONDS,
    RUN_TIMEOUT,
    RUNNING,
    EngineError,
    FunctionInfo,
    RunState,
    Wait,
    new_id,
)
from eagerstep.engine.store import FINAL_STATUSES, dumps, loads

if TYPE_CHECKING:
    from eagerstep.engine.engine import Engine
    from eagerstep.engine.ops import Op

log = logging.getLogger("eagerstep.engine")

_INSERT_STEP = (
    "INSERT OR IGNORE INTO steps(run_id, id, position, name, op, memo, started_at, ended_at)"
    " VALUES (?,?,?,?,?,?,?,?)"
)


class RunLifecycle:
    """Every change to a run's row and memos goes through here (inside the caller's transaction)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self) -> None:
        """Rebuild the active runs (and their memo stacks) from the file."""
        engine = self.engine
        db = engine.db
        engine.runs.clear()
        rows = db.all(
            "SELECT id, function_id, events, status, created_at, state FROM runs WHERE status NOT IN (?,?,?)",
            FINAL_STATUSES,
        )
        for rid, fid, events, status, created_at, state_text in rows:
            state = loads(state_text) or {}
            run = RunState(rid, fid, loads(events), status, created_at)
            run.pending = set(state.get("pending", []))
            run.force_plan = bool(state.get("force_plan"))
            run.version = int(state.get("version", -1))
            run.correlation_id = state.get("correlation_id")
            run.started = dict(state.get("started", {}))
            run.names = dict(state.get("names", {}))
            for sid, memo in db.all("SELECT id, memo FROM steps WHERE run_id=? ORDER BY position", (rid,)):
                run.memos[sid] = loads(memo)
                run.stack.append(sid)
            engine.runs[rid] = run

    def create_run(
        self, fn: FunctionInfo, events: list[dict[str, Any]], keys: Iterable[tuple[str, str]] = ()
    ) -> RunState:
        engine = self.engine
        db, queue = engine.db, engine.queue
        now = engine.clock.now()
        run = RunState(new_id(), fn.id, events, RUNNING, now)
        meta = events[0].get("data", {}).get("_inngest")
        if events[0]["name"] == protocol.EVENT_FUNCTION_INVOKED and isinstance(meta, dict):
            run.correlation_id = meta.get("correlation_id")
        db.execute(
            "INSERT INTO runs(id, function_id, event_id, events, status, created_at, state)"
            " VALUES (?,?,?,?,?,?,?)",
            (run.id, fn.id, events[0]["id"], dumps(events), RUNNING, now, run.state_json()),
        )
        engine.runs[run.id] = run
        for kind, key in keys:
            db.execute(
                "INSERT INTO run_keys(run_id, function_id, kind, key, created_at) VALUES (?,?,?,?,?)",
                (run.id, fn.id, kind, key, now),
            )
        if fn.config.timeouts and fn.config.timeouts.finish:
            try:
                finish = protocol.parse_duration(fn.config.timeouts.finish).total_seconds()
                queue.enqueue(RUN_TIMEOUT, run.id, now + finish, {})
            except ValueError:
                log.warning("function %s: ignoring invalid timeouts.finish", fn.id)
        start = engine.flow.throttled_start(fn, run, now)
        queue.enqueue(CALL, run.id, start, {"step_id": "step", "attempt": 0})
        for cancel in fn.config.cancel or []:
            timer_id = None
            wait_id = new_id()
            if cancel.timeout:
                try:
                    due = now + min(
                        protocol.parse_duration(cancel.timeout).total_seconds(), MAX_TIMER_SECONDS
                    )
                except ValueError:
                    due = now + MAX_TIMER_SECONDS
                timer_id = queue.enqueue(CANCEL_TIMEOUT, run.id, due, {"wait_id": wait_id}).id
            engine.waits.add(
                Wait(wait_id, run.id, "cancel", cancel.event, {"if": cancel.if_, "timer_id": timer_id})
            )
        return run

    def finish_run(
        self, run: RunState, status: str, *, output: Any = None, error: dict[str, Any] | None = None
    ) -> None:
        engine = self.engine
        now = engine.clock.now()
        run.status = status
        engine.db.execute(
            "UPDATE runs SET status=?, output=?, error=?, ended_at=?, state=? WHERE id=?",
            (
                status,
                dumps(output) if status == COMPLETED else None,
                dumps(error) if error is not None else None,
                now,
                run.state_json(),
                run.id,
            ),
        )
        engine.queue.drop_run(run.id)
        engine.waits.drop_run(run.id)
        engine.runs.pop(run.id, None)
        data: dict[str, Any] = {
            "function_id": run.function_id,
            "run_id": run.id,
            "event": run.events[0],
            "events": run.events,
        }
        if run.correlation_id:
            data["correlation_id"] = run.correlation_id
        if status == COMPLETED:
            data["result"] = output
        else:
            data["error"] = error or {"name": "Error", "message": status.lower()}
        data["_inngest"] = {"status": status, "run_id": run.id, "function_id": run.function_id}
        if status == FAILED:
            data["error"] = standard_error(error, run.call_error)
            engine.intake.emit(protocol.EVENT_FUNCTION_FAILED, dict(data))
        elif status == CANCELLED:
            engine.intake.emit(protocol.EVENT_FUNCTION_CANCELLED, dict(data))
        engine.intake.emit(protocol.EVENT_FUNCTION_FINISHED, data)
        engine.stats["runs_finished"] += 1
        engine.notify_finished(run, status)
        if status == FAILED:
            log.info("run %s of %s failed: %s", run.id, run.function_id, (error or {}).get("message"))

    def cancel_run(self, run_id: str) -> str:
        engine = self.engine
        run = engine.runs.get(run_id)
        if run is None:
            row = engine.db.one("SELECT status FROM runs WHERE id=?", (run_id,))
            if row is None:
                raise EngineError(f"run {run_id} not found", 404)
            return str(row[0])
        with engine.transaction():
            self.finish_run(run, CANCELLED, error={"name": "Cancelled", "message": "cancelled via the API"})
        return CANCELLED

    def store_step_op(self, run: RunState, op: Op, now: float) -> None:
        """Record a completed step that arrived as an op (``StepRun``/``Step``, in a checkpoint), with
        the span its ``timing`` gives (``a``: start, ns since the epoch; ``b``: duration, ns)."""
        timing = op.timing or {}
        begun = timing["a"] / 1e9 if isinstance(timing.get("a"), (int, float)) else None
        ended = begun + float(timing.get("b") or 0) / 1e9 if begun is not None else now
        self.store_memo(
            run,
            op.id,
            {"data": op.data if op.has_data else None},
            name=op.displayName or op.name,
            op="StepRun",
            started=begun,
            ended=ended,
        )

    def store_memo(
        self,
        run: RunState,
        step_id: str,
        memo: Any,
        *,
        name: str | None,
        op: str,
        started: float | None = None,
        ended: float | None = None,
    ) -> bool:
        if step_id in run.memos:
            return False
        run.memos[step_id] = memo
        run.stack.append(step_id)
        begun = run.started.pop(step_id, None)
        # One executemany per transaction for all the memos of a reply or checkpoint.
        self.engine.db.execute_deferred(
            _INSERT_STEP,
            (
                run.id,
                step_id,
                len(run.stack) - 1,
                name,
                op,
                dumps(memo),
                started if started is not None else begun,
                ended if ended is not None else self.engine.clock.now(),
            ),
        )
        return True

    def save_run(self, run: RunState) -> None:
        self.engine.db.execute("UPDATE runs SET state=? WHERE id=?", (run.state_json(), run.id))

    def discover(self, run: RunState, *, reset_force_plan: bool = True, force: bool = False) -> None:
        """Schedule a discovery call once nothing planned or waiting is outstanding (``force``: at
        once, as the server does after each step of a ``parallelMode: "race"`` group).

        Scheduling it ends step planning (the server's ``maybeResetForceStepPlan``), unless the
        reply that asks for it is the one that switched the run to planning
        (``reset_force_plan=False``): then its discovery calls still plan.
        """
        if run.pending and not force:
            return
        if reset_force_plan:
            run.force_plan = False
        self.engine.queue.enqueue(CALL, run.id, self.engine.clock.now(), {"step_id": "step", "attempt": 0})

    def resolve_step(self, run: RunState, step_id: str, memo: Any, op: str) -> None:
        """A sleep, wait or invoke finished: store its memo, then continue the run."""
        self.store_memo(run, step_id, memo, name=run.names.pop(step_id, None), op=op)
        run.pending.discard(step_id)
        self.discover(run)
        self.save_run(run)
