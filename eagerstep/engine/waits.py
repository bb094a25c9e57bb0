"""Pending waits (wait_for_event, invoke results, cancel_on) indexed by event name, correlation and run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eagerstep.core import protocol
from eagerstep.engine import expressions
from eagerstep.engine.model import CANCELLED, Wait
from eagerstep.engine.store import dumps, loads

if TYPE_CHECKING:
    from eagerstep.engine.engine import Engine


class WaitIndex:
    """The engine's waits in memory (mirroring the ``waits`` table) and their resolution by events."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.waits: dict[str, Wait] = {}
        self.by_event: dict[str, dict[str, Wait]] = {}
        self.invokes: dict[str, Wait] = {}
        self.by_run: dict[str, set[str]] = {}

    def load(self) -> None:
        self.waits.clear()
        self.by_run.clear()
        self.by_event.clear()
        self.invokes.clear()
        for wid, run_id, kind, event_name, payload in self.engine.db.all(
            "SELECT id, run_id, kind, event_name, payload FROM waits"
        ):
            self._index(Wait(wid, run_id, kind, event_name, loads(payload)))

    def add(self, wait: Wait) -> None:
        self.engine.db.execute(
            "INSERT INTO waits(id, run_id, kind, event_name, payload, created_at) VALUES (?,?,?,?,?,?)",
            (wait.id, wait.run_id, wait.kind, wait.event_name, dumps(wait.payload), self.engine.clock.now()),
        )
        self._index(wait)

    def _index(self, wait: Wait) -> None:
        self.waits[wait.id] = wait
        self.by_run.setdefault(wait.run_id, set()).add(wait.id)
        if wait.kind == "invoke":
            self.invokes[str(wait.payload.get("correlation_id"))] = wait
        elif wait.event_name:
            self.by_event.setdefault(wait.event_name, {})[wait.id] = wait

    def drop(self, wait: Wait, *, delete: bool = True) -> None:
        self.waits.pop(wait.id, None)
        ids = self.by_run.get(wait.run_id)
        if ids is not None:
            ids.discard(wait.id)
            if not ids:
                del self.by_run[wait.run_id]
        if wait.kind == "invoke":
            self.invokes.pop(str(wait.payload.get("correlation_id")), None)
        elif wait.event_name:
            bucket = self.by_event.get(wait.event_name)
            if bucket is not None:
                bucket.pop(wait.id, None)
                if not bucket:
                    del self.by_event[wait.event_name]
        if delete:
            self.engine.db.execute("DELETE FROM waits WHERE id=?", (wait.id,))
            timer_id = wait.payload.get("timer_id")
            queue = self.engine.queue
            if timer_id and timer_id in queue.items:
                queue.delete_item(queue.items[timer_id])

    def drop_run(self, run_id: str) -> None:
        """Forget and delete every wait of a run (its timers go with the run's queue items)."""
        ids = self.by_run.get(run_id)
        if not ids:
            return  # memory mirrors the table: the run waits for nothing
        for wait_id in list(ids):
            self.drop(self.waits[wait_id], delete=False)
        self.engine.db.execute("DELETE FROM waits WHERE run_id=?", (run_id,))

    def match(self, event: dict[str, Any]) -> None:
        """Resolve the waits, cancellations and invoke results that ``event`` satisfies."""
        engine = self.engine
        name = event["name"]
        for wait in list(self.by_event.get(name, {}).values()):
            run = engine.runs.get(wait.run_id)
            if run is None:
                self.drop(wait)
                continue
            if not expressions.matches(wait.payload.get("if"), event=run.events[0], async_event=event):
                continue
            self.drop(wait)
            if wait.kind == "wait":
                engine.lifecycle.resolve_step(run, wait.payload["step_id"], event, "WaitForEvent")
            elif wait.kind == "cancel":
                engine.lifecycle.finish_run(
                    run,
                    CANCELLED,
                    error={"name": "Cancelled", "message": f"cancelled by event {name} ({event['id']})"},
                )
        if name == protocol.EVENT_FUNCTION_FINISHED:
            correlation = event["data"].get("correlation_id")
            invoke_wait = self.invokes.get(str(correlation)) if correlation else None
            if invoke_wait is not None:
                run = engine.runs.get(invoke_wait.run_id)
                self.drop(invoke_wait)
                if run is not None:
                    data = event["data"]
                    memo = (
                        {"error": data["error"]}
                        if data.get("error") is not None
                        else {"data": data.get("result")}
                    )
                    engine.lifecycle.resolve_step(run, invoke_wait.payload["step_id"], memo, "InvokeFunction")
