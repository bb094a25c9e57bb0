"""The checkpoint API: ``POST /v1/checkpoint/{run_id}/async`` records steps an app ran in place."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from eagerstep.core import protocol
from eagerstep.engine.model import EngineError, QueueItem
from eagerstep.engine.ops import Op, fast_op, from_model
from eagerstep.engine.store import dumps

if TYPE_CHECKING:
    from eagerstep.engine.engine import Engine

_OPTIONAL_STR = ("fn_id", "qi_id", "request_id")


def refused_op(steps: list[Op]) -> str | None:
    """Why the server refuses these ops with 400 (``checkpoint.go`` ``checkpointAsyncSteps``), or
    None when it accepts them all: an async op is refused as such; any other sync op (RunComplete,
    StepFailed, SyncRunComplete) falls to the server's default case, "cannot checkpoint opcode"."""
    for op in steps:
        if op.op not in protocol.SYNC_OPCODES:
            return f"cannot checkpoint async steps (got op {op.op})"
    for op in steps:
        if op.op not in protocol.ASYNC_CHECKPOINT_OPCODES:
            return (
                f"cannot checkpoint opcode: {op.op} (this API stores StepRun, Step, StepPlanned, "
                "DeferAdd and DeferAbort; a run's result goes in the reply to the call request)"
            )
    return None


_OPTIONAL_INT = ("generation_id", "request_started_at", "ts")


def _fast_request(raw: Any) -> tuple[str | None, int | None, list[Op]] | None:
    """(qi_id, generation_id, steps) when every field has exactly its JSON type, else None (then
    ``protocol.CheckpointRequest`` validates the body and explains what is wrong)."""
    if type(raw) is not dict or type(raw.get("run_id")) is not str:
        return None
    for key in _OPTIONAL_STR:
        value = raw.get(key)
        if value is not None and type(value) is not str:
            return None
    for key in _OPTIONAL_INT:
        value = raw.get(key)
        if value is not None and type(value) is not int:
            return None
    steps = raw.get("steps", [])
    if type(steps) is not list:
        return None
    ops: list[Op] = []
    for step in steps:
        op = fast_op(step)
        if op is None:
            return None
        ops.append(op)
    return raw.get("qi_id"), raw.get("generation_id"), ops


class CheckpointAPI:
    """Stores checkpointed StepRun memos; enqueues nothing."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def checkpoint(self, run_id: str, raw: Any) -> None:
        engine = self.engine
        engine.stats["checkpoints"] += 1
        parsed = _fast_request(raw)
        if parsed is None:
            try:
                request = protocol.CheckpointRequest.model_validate(raw)
            except ValidationError as exc:
                raise EngineError(f"invalid checkpoint body: {exc}") from exc
            parsed = request.qi_id, request.generation_id, [from_model(op) for op in request.steps]
        qi_id, generation_id, steps = parsed
        refusal = refused_op(steps)
        if refusal is not None:
            raise EngineError(refusal)
        run = engine.runs.get(run_id)
        if run is None:
            row = engine.db.one("SELECT status FROM runs WHERE id=?", (run_id,))
            if row is None:
                raise EngineError(f"run {run_id} not found")
            return  # the run already ended: nothing to record
        item = self.item_for_qi(qi_id)
        if generation_id and item is not None and item.run_id == run_id and item.generation != generation_id:
            raise EngineError(f"stale dispatch: generation {generation_id} != current {item.generation}", 409)
        now = engine.clock.now()
        lifecycle = engine.lifecycle
        with engine.transaction():
            for op in steps:
                if op.op in ("StepRun", "Step"):
                    lifecycle.store_step_op(run, op, now)
            if item is not None and item.run_id == run_id and item.payload.get("attempt"):
                item.payload["attempt"] = 0
                engine.db.execute("UPDATE queue SET payload=? WHERE id=?", (dumps(item.payload), item.id))

    def item_for_qi(self, qi_id: str | None) -> QueueItem | None:
        """The queue item a ``qi_id`` (base64 of ``<item id>::default``) names, if still pending."""
        if not qi_id:
            return None
        try:
            decoded = base64.b64decode(qi_id + "=" * (-len(qi_id) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return self.engine.queue.items.get(decoded.split("::", 1)[0])
