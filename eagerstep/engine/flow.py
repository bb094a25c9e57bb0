"""Flow control: idempotency, rate limit, singleton, debounce, batching, throttle and concurrency."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from eagerstep.core import protocol
from eagerstep.engine import expressions
from eagerstep.engine.model import BATCH, CANCELLED, DEBOUNCE, FunctionInfo, QueueItem, RunState, _seconds
from eagerstep.engine.store import dumps

if TYPE_CHECKING:
    from eagerstep.engine.engine import Engine

Slot = tuple[str, str]


class FlowControl:
    """Decides whether and when an event starts a run, and how many calls of a key run at once."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.slots: dict[Slot, int] = {}
        self.parked: dict[Slot, deque[QueueItem]] = {}

    # ------------------------------------------------------------------ starting runs

    def admit(self, fn: FunctionInfo, event: dict[str, Any]) -> list[tuple[str, str]] | None:
        """Idempotency, rate limit and singleton: None when ``event`` may not start a run of ``fn``,
        else the keys to record for the new run."""
        engine = self.engine
        config, db, now = fn.config, engine.db, engine.clock.now()
        keys: list[tuple[str, str]] = []
        if config.idempotency:
            key = expressions.evaluate_key(config.idempotency, event=event)
            if db.one(
                "SELECT 1 FROM run_keys"
                " WHERE function_id=? AND kind='idempotency' AND key=? AND created_at>?",
                (fn.id, key, now - 86400),
            ):
                return None
            keys.append(("idempotency", key))
        if config.rateLimit and config.rateLimit.limit > 0:
            limit = config.rateLimit
            key = expressions.evaluate_key(limit.key, event=event) if limit.key else ""
            try:
                period = protocol.parse_duration(limit.period).total_seconds()
            except ValueError:
                period = 60.0
            row = db.one(
                "SELECT COUNT(*) FROM run_keys"
                " WHERE function_id=? AND kind='rate' AND key=? AND created_at>?",
                (fn.id, key, now - period),
            )
            if row is not None and row[0] >= limit.limit:
                return None
            keys.append(("rate", key))
        if config.singleton:
            key = expressions.evaluate_key(config.singleton.key, event=event) if config.singleton.key else ""
            active = [
                engine.runs[rid]
                for (rid,) in db.all(
                    "SELECT run_id FROM run_keys WHERE function_id=? AND kind='singleton' AND key=?",
                    (fn.id, key),
                )
                if rid in engine.runs
            ]
            if active and config.singleton.mode == "skip":
                return None
            for run in active:
                engine.lifecycle.finish_run(
                    run, CANCELLED, error={"name": "Cancelled", "message": "replaced (singleton)"}
                )
            keys.append(("singleton", key))
        return keys

    def debounce(self, fn: FunctionInfo, event: dict[str, Any]) -> None:
        """Delay the run until ``period`` passes without another event (or ``timeout`` since the first)."""
        config = fn.config.debounce
        assert config is not None
        queue = self.engine.queue
        now = self.engine.clock.now()
        key = expressions.evaluate_key(config.key, event=event) if config.key else ""
        period = _seconds(config.period, 1.0)
        item = queue.grouped_item(DEBOUNCE, fn.id, key)
        if item is None:
            payload = {"function_id": fn.id, "key": key, "event": event, "first_at": now}
            queue.enqueue(DEBOUNCE, None, now + period, payload)
            return
        due = now + period
        if config.timeout:
            due = min(due, item.payload["first_at"] + _seconds(config.timeout, period))
        item.payload["event"] = event
        item.due_at = due
        self.engine.db.execute(
            "UPDATE queue SET due_at=?, payload=? WHERE id=?", (due, dumps(item.payload), item.id)
        )
        queue.schedule(item)

    def batch(self, fn: FunctionInfo, event: dict[str, Any]) -> None:
        """Collect events into one run: at ``maxSize`` events, or ``timeout`` after the first."""
        config = fn.config.batchEvents
        assert config is not None
        lifecycle, queue = self.engine.lifecycle, self.engine.queue
        if config.if_ and not expressions.matches(config.if_, event=event):
            lifecycle.create_run(fn, [event])
            return
        now = self.engine.clock.now()
        key = expressions.evaluate_key(config.key, event=event) if config.key else ""
        item = queue.grouped_item(BATCH, fn.id, key)
        if item is None:
            payload = {"function_id": fn.id, "key": key, "events": [event]}
            item = queue.enqueue(BATCH, None, now + _seconds(config.timeout, 1.0), payload)
        else:
            item.payload["events"].append(event)
            self.engine.db.execute("UPDATE queue SET payload=? WHERE id=?", (dumps(item.payload), item.id))
        if len(item.payload["events"]) >= config.maxSize:
            queue.delete_item(item)
            lifecycle.create_run(fn, item.payload["events"])

    def throttled_start(self, fn: FunctionInfo, run: RunState, now: float) -> float:
        """When the run may start: at most ``limit`` (+ ``burst``) starts per ``period`` per key."""
        config = fn.config.throttle
        if config is None or config.limit <= 0:
            return now
        db = self.engine.db
        key = expressions.evaluate_key(config.key, event=run.events[0]) if config.key else ""
        period = _seconds(config.period, 60.0)
        allowed = config.limit + max(0, config.burst or 0)
        starts = [
            row[0]
            for row in db.all(
                "SELECT created_at FROM run_keys WHERE function_id=? AND kind='throttle' AND key=?"
                " AND created_at>? ORDER BY created_at",
                (fn.id, key, now - period),
            )
        ]
        start = now if len(starts) < allowed else max(now, starts[len(starts) - allowed] + period)
        db.execute(
            "INSERT INTO run_keys(run_id, function_id, kind, key, created_at) VALUES (?,?,?,?,?)",
            (run.id, fn.id, "throttle", key, start),
        )
        return start

    # ------------------------------------------------------------------ concurrency

    def concurrency_key(self, fn: FunctionInfo, run: RunState) -> Slot:
        if not fn.concurrency_key:
            return (fn.id, "")
        return (fn.id, expressions.evaluate_key(fn.concurrency_key, event=run.events[0]))

    def take_slot(self, item: QueueItem) -> tuple[bool, Slot | None]:
        """Take a concurrency slot for a call; (False, slot) when full: the call is parked."""
        engine = self.engine
        run = engine.runs.get(item.run_id or "")
        fn = engine.functions.get(run.function_id) if run else None
        if run is None or fn is None or not fn.concurrency_limit:
            return True, None
        slot = self.concurrency_key(fn, run)
        if self.slots.get(slot, 0) >= fn.concurrency_limit:
            self.parked.setdefault(slot, deque()).append(item)
            return False, slot
        self.slots[slot] = self.slots.get(slot, 0) + 1
        return True, slot

    def release(self, slot: Slot | None) -> QueueItem | None:
        """Give a slot back; returns the parked call that takes it, if any."""
        if slot is None:
            return None
        self.slots[slot] = max(0, self.slots.get(slot, 0) - 1)
        parked = self.parked.get(slot)
        queue = self.engine.queue
        while parked:
            item = parked.popleft()
            if item.id not in queue.items:
                queue.inflight.pop(item.id, None)
                continue
            self.slots[slot] += 1
            return item
        return None
