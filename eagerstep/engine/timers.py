"""The persisted work queue: calls and timers in one heap, the dispatcher that runs what is due, cron."""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from eagerstep.core import protocol
from eagerstep.engine.model import (
    BATCH,
    CALL,
    CANCEL_TIMEOUT,
    CANCELLED,
    CRON,
    DEBOUNCE,
    FAILED,
    FIRE_DEFAULT_KINDS,
    INVOKE_TIMEOUT,
    RUN_TIMEOUT,
    SLEEP,
    WAIT_TIMEOUT,
    QueueItem,
    _iso,
    new_id,
    next_cron_time,
)
from eagerstep.engine.store import dumps, loads

if TYPE_CHECKING:
    from eagerstep.engine.engine import Engine

log = logging.getLogger("eagerstep.engine")


class TimerQueue:
    """Queue items (calls, sleeps, timeouts, cron, debounce and batch windows) in memory and in SQLite.

    Delayed work sits in a heap whose nearest due time arms one timer; anything enqueued wakes the
    dispatcher at once.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.items: dict[str, QueueItem] = {}
        self.heap: list[tuple[float, int, str]] = []
        self.seq = 0
        self.run_items: dict[str, set[str]] = {}
        #: Item id -> generation of the call in flight (or parked) for it.
        self.inflight: dict[str, int] = {}
        self.wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatcher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.wake = asyncio.Event()

    def start_dispatcher(self) -> None:
        self.engine.clock.on_change(self._wake_threadsafe)
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="eagerstep-dispatcher")
        self._dispatcher.add_done_callback(_report_end)

    async def stop(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
            self._dispatcher = None

    def _wake_threadsafe(self) -> None:
        loop, wake = self._loop, self.wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    def load(self) -> None:
        """Rebuild the queue from the file; calls that were in flight go out again with a new
        generation, so a late checkpoint from the old attempt is fenced off (409)."""
        db = self.engine.db
        with db.tx():
            db.execute("UPDATE queue SET generation = generation + 1 WHERE kind = ?", (CALL,))
        self.items.clear()
        self.run_items.clear()
        self.heap.clear()
        self.inflight.clear()
        for qid, run_id, kind, due_at, payload, generation in db.all(
            "SELECT id, run_id, kind, due_at, payload, generation FROM queue"
        ):
            self.schedule(QueueItem(qid, run_id, kind, due_at, loads(payload), generation))

    # ------------------------------------------------------------------ items

    def enqueue(self, kind: str, run_id: str | None, due: float, payload: dict[str, Any]) -> QueueItem:
        item = QueueItem(new_id(), run_id, kind, due, payload)
        self.engine.db.execute(
            "INSERT INTO queue(id, run_id, kind, due_at, payload, generation) VALUES (?,?,?,?,?,?)",
            (item.id, run_id, kind, due, dumps(payload), item.generation),
        )
        self.schedule(item)
        return item

    def schedule(self, item: QueueItem) -> None:
        self.items[item.id] = item
        if item.run_id:
            self.run_items.setdefault(item.run_id, set()).add(item.id)
        self.seq += 1
        heapq.heappush(self.heap, (item.due_at, self.seq, item.id))
        if self.wake is not None:
            self.wake.set()

    def delete_item(self, item: QueueItem) -> None:
        self.unschedule(item.id)
        self.engine.db.execute("DELETE FROM queue WHERE id=?", (item.id,))

    def unschedule(self, item_id: str) -> None:
        """Forget an item in memory (its heap entry is skipped when popped)."""
        item = self.items.pop(item_id, None)
        if item is not None and item.run_id:
            ids = self.run_items.get(item.run_id)
            if ids is not None:
                ids.discard(item_id)
                if not ids:
                    del self.run_items[item.run_id]

    def drop_run(self, run_id: str) -> None:
        """Forget and delete every queue item of a run."""
        ids = self.run_items.get(run_id)
        if not ids:
            return  # memory mirrors the table: nothing of this run is queued
        for item_id in list(ids):
            self.unschedule(item_id)
        self.engine.db.execute("DELETE FROM queue WHERE run_id=?", (run_id,))

    def grouped_item(self, kind: str, function_id: str, key: str) -> QueueItem | None:
        """The pending debounce or batch item of a function and key."""
        for item in self.items.values():
            payload = item.payload
            if item.kind == kind and payload["function_id"] == function_id and payload["key"] == key:
                return item
        return None

    def fire_timers(self, *, run_id: str | None = None, kinds: Iterable[str] | None = None) -> int:
        """Make pending timers due now (sleeps, wait/invoke timeouts, retry backoff by default)."""
        wanted = set(kinds) if kinds is not None else set(FIRE_DEFAULT_KINDS)
        now = self.engine.clock.now()
        due = [
            item
            for item in self.items.values()
            if item.kind in wanted
            and item.due_at > now
            and (run_id is None or item.run_id == run_id)
            and item.id not in self.inflight
        ]
        if not due:
            return 0
        with self.engine.transaction():
            for item in due:
                item.due_at = now
                self.engine.db.execute("UPDATE queue SET due_at=? WHERE id=?", (now, item.id))
                self.schedule(item)
        return len(due)

    def pending_timers(self) -> list[dict[str, Any]]:
        return [
            {"id": i.id, "run_id": i.run_id, "kind": i.kind, "due_at": _iso(i.due_at)}
            for i in sorted(self.items.values(), key=lambda i: i.due_at)
            if i.id not in self.inflight
        ]

    # ------------------------------------------------------------------ dispatch

    async def _dispatch_loop(self) -> None:
        assert self.wake is not None
        loop = asyncio.get_running_loop()
        clock, heap, items, inflight = self.engine.clock, self.heap, self.items, self.inflight
        while True:
            handle = None
            try:
                self.wake.clear()
                now = clock.now()
                while heap and heap[0][0] <= now:
                    due, _, item_id = heapq.heappop(heap)
                    item = items.get(item_id)
                    if item is None or item.due_at != due or item_id in inflight:
                        continue
                    try:
                        self._run_item(item)
                    except Exception:
                        log.exception("processing queue item %s (%s) failed", item.id, item.kind)
                        self._retry_after_failure(item_id)
                if heap:
                    timeout = clock.wait_timeout(heap[0][0])
                    if timeout is not None:
                        handle = loop.call_later(timeout, self.wake.set)
            except Exception:  # never let the dispatcher die: nothing would run any more
                log.exception("the dispatcher failed; it goes on")
                handle = loop.call_later(self._failure_delay(), self.wake.set)
            await self.wake.wait()
            if handle is not None:
                handle.cancel()

    def _failure_delay(self) -> float:
        return max(self.engine.retry_interval, 0.01)

    def _retry_after_failure(self, item_id: str) -> None:
        """An item failed: it goes back in the queue a little later, never lost and never spinning.

        A failed CALL start left the item queued but popped from the heap; a failed timer rolled
        back, and the reload re-queued it as due now (it would fail again at once, forever)."""
        item = self.items.get(item_id)
        if item is None or item_id in self.inflight:
            return
        try:
            self.retry_later(item)
        except Exception:
            log.exception("re-queueing item %s failed", item_id)

    def retry_later(self, item: QueueItem) -> None:
        """Make a queued item due again after the engine's retry interval."""
        item.due_at = self.engine.clock.now() + self._failure_delay()
        self.engine.db.execute("UPDATE queue SET due_at=? WHERE id=?", (item.due_at, item.id))
        self.schedule(item)

    def _run_item(self, item: QueueItem) -> None:
        engine = self.engine
        if item.kind == CALL:
            engine.caller.start_call(item)
            return
        lifecycle = engine.lifecycle
        with engine.transaction():
            self.delete_item(item)
            run = engine.runs.get(item.run_id) if item.run_id else None
            if item.kind == CRON:
                self._fire_cron(item)
            elif item.kind in (DEBOUNCE, BATCH):
                fn = engine.functions.get(item.payload["function_id"])
                if fn is not None:
                    events = [item.payload["event"]] if item.kind == DEBOUNCE else item.payload["events"]
                    lifecycle.create_run(fn, events)
            elif run is None:
                return
            elif item.kind == SLEEP:
                lifecycle.resolve_step(run, item.payload["step_id"], None, "Sleep")
            elif item.kind in (WAIT_TIMEOUT, INVOKE_TIMEOUT):
                wait = engine.waits.waits.get(item.payload["wait_id"])
                if wait is None:
                    return
                engine.waits.drop(wait)
                if item.kind == WAIT_TIMEOUT:
                    lifecycle.resolve_step(run, item.payload["step_id"], None, "WaitForEvent")
                else:
                    memo = {
                        "error": {
                            "name": "InngestInvokeTimeoutError",
                            "message": "Timed out waiting for invoked function to complete",
                        }
                    }
                    lifecycle.resolve_step(run, item.payload["step_id"], memo, "InvokeFunction")
            elif item.kind == RUN_TIMEOUT and item.payload.get("sync"):
                error = {
                    "name": "SyncRunTimeout",
                    "message": "the durable endpoint's request never reported its response (no RunComplete)",
                }
                lifecycle.finish_run(run, FAILED, error=error)
            elif item.kind == RUN_TIMEOUT:
                error = {"name": "FunctionTimeout", "message": "the run exceeded timeouts.finish"}
                lifecycle.finish_run(run, CANCELLED, error=error)
            elif item.kind == CANCEL_TIMEOUT:
                wait = engine.waits.waits.get(item.payload["wait_id"])
                if wait is not None:
                    engine.waits.drop(wait)

    # ------------------------------------------------------------------ cron

    def reconcile_crons(self) -> None:
        functions = self.engine.functions
        wanted = {(fn.id, expr) for fn in functions.values() for expr in fn.crons}
        existing: set[tuple[str, str]] = set()
        for item in [i for i in self.items.values() if i.kind == CRON]:
            key = (item.payload["function_id"], item.payload["cron"])
            if key in wanted and key not in existing:
                existing.add(key)
            else:
                self.delete_item(item)
        now = self.engine.clock.now()
        for fid, expr in sorted(wanted - existing):
            self.enqueue(CRON, None, next_cron_time(expr, now), {"function_id": fid, "cron": expr})

    def _fire_cron(self, item: QueueItem) -> None:
        fid, expr = item.payload["function_id"], item.payload["cron"]
        fn = self.engine.functions.get(fid)
        if fn is None or expr not in fn.crons:
            return
        now = self.engine.clock.now()
        data = {"cron": expr, "scheduledAt": _iso(item.due_at), "fireAt": _iso(now)}
        self.engine.intake.emit(protocol.EVENT_SCHEDULED_TIMER, data, target=fn)
        self.enqueue(CRON, None, next_cron_time(expr, max(now, item.due_at)), dict(item.payload))


def _report_end(task: asyncio.Task[None]) -> None:
    """Log it if the dispatcher ever ends other than by ``stop()``: the engine would be stalled."""
    if not task.cancelled() and task.exception() is not None:
        log.critical("the dispatcher stopped; runs will not progress", exc_info=task.exception())
