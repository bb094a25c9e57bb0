"""Event intake: normalising and storing events, then routing them to waits and function triggers."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from eagerstep.core import protocol
from eagerstep.engine import eventlog, expressions
from eagerstep.engine.model import EngineError, FunctionInfo, _wildcard, new_id
from eagerstep.engine.store import dumps

if TYPE_CHECKING:
    from eagerstep.engine.engine import Engine


class PartialEventsError(EngineError):
    """An event of a batch is invalid: the events before it were stored (``ids``), none after it."""

    def __init__(self, message: str, ids: list[str]) -> None:
        super().__init__(message)
        self.ids = ids


class EventIntake:
    """``POST /e/{key}`` and the engine's own events; keeps the trigger index of synced functions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.exact_triggers: dict[str, list[tuple[FunctionInfo, str | None]]] = {}
        self.wild_triggers: list[tuple[re.Pattern[str], FunctionInfo, str | None]] = []

    def index_triggers(self) -> None:
        self.exact_triggers = {}
        self.wild_triggers = []
        for fn in self.engine.functions.values():
            for trigger in fn.config.triggers:
                if isinstance(trigger, protocol.EventTrigger):
                    if "*" in trigger.event:
                        self.wild_triggers.append((_wildcard(trigger.event), fn, trigger.expression))
                    else:
                        self.exact_triggers.setdefault(trigger.event, []).append((fn, trigger.expression))

    def accept_events(self, raw: Any, seed: str | None = None) -> list[str]:
        """Store and route events (``POST /e/{key}``); returns their ids. One transaction.

        As the server does, events are taken in order up to the first invalid one: those before
        it are stored and their ids given in the :class:`PartialEventsError`. ``seed`` is the
        ``x-inngest-event-id-seed`` header (deterministic ids, see :mod:`eventlog`)."""
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise EngineError("no events in the request body")
        if len(items) > 5000:
            raise EngineError("at most 5000 events per request")
        events: list[dict[str, Any]] = []
        invalid: EngineError | None = None
        for index, item in enumerate(items):
            try:
                events.append(self.normalise(item, index, eventlog.seeded_id(seed, index + 1)))
            except EngineError as exc:
                invalid = exc
                break
        self.engine.stats["events"] += len(events)
        if events:
            with self.engine.transaction():
                for event in events:
                    self.ingest(event)
        ids = [str(e["id"]) for e in events]
        if invalid is not None:
            raise PartialEventsError(invalid.message, ids)
        return ids

    def normalise(self, raw: Any, index: int = 0, seeded_id: str | None = None) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise EngineError(f"event {index}: each event must be a JSON object")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise EngineError(f"event {index}: 'name' is required and must be a non-empty string")
        data = raw.get("data")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise EngineError(f"event {index}: 'data' must be a JSON object")
        event = dict(raw)
        event["name"] = name
        event["data"] = data
        if not event.get("id"):
            event["id"] = seeded_id or new_id()
        event["id"] = str(event["id"])
        ts = event.get("ts")
        if not isinstance(ts, int) or isinstance(ts, bool) or ts <= 0:
            event["ts"] = int(self.engine.clock.now() * 1000)
        if not isinstance(event.get("user"), dict):
            event["user"] = {}
        return event

    def ingest(self, event: dict[str, Any], target: FunctionInfo | None = None) -> bool:
        """Store one event and route it: waits and cancellations first, then triggers."""
        engine = self.engine
        db = engine.db
        now = engine.clock.now()
        stored = db.execute(
            "INSERT OR IGNORE INTO events(id, name, body, received_at) VALUES (?,?,?,?)",
            (event["id"], event["name"], dumps(event), now),
        )
        eventlog.record_receipt(db, event, now)
        if stored.rowcount == 0:
            return False  # an event with this id was accepted before
        awaited = event["name"] in engine.waits.by_event  # a run may be waiting for it
        engine.waits.match(event)
        lifecycle = engine.lifecycle
        if target is not None:
            lifecycle.create_run(target, [event])
            return True
        name = event["name"]
        if name == protocol.EVENT_FUNCTION_INVOKED:
            meta = event["data"].get("_inngest") or {}
            fn = engine.functions.get(str(meta.get("fn_id", "")))
            if fn is not None:
                lifecycle.create_run(fn, [event])
            return True
        candidates = list(self.exact_triggers.get(name, []))
        candidates += [(fn, expr) for pattern, fn, expr in self.wild_triggers if pattern.match(name)]
        flow = engine.flow
        matched = False
        for fn, expression in candidates:
            if expressions.matches(expression, event=event):
                matched = True
                if fn.config.debounce is not None:
                    flow.debounce(fn, event)
                    continue
                if fn.config.batchEvents is not None and fn.config.batchEvents.maxSize > 1:
                    flow.batch(fn, event)
                    continue
                keys = flow.admit(fn, event)
                if keys is not None:
                    lifecycle.create_run(fn, [event], keys)
        if not matched and not awaited:
            engine.history.unmatched(event)
        return True

    def emit(self, name: str, data: dict[str, Any], target: FunctionInfo | None = None) -> dict[str, Any]:
        """An event of the engine's own (function finished/failed, cron), stored and routed."""
        event = {
            "name": name,
            "data": data,
            "id": new_id(),
            "ts": int(self.engine.clock.now() * 1000),
            "user": {},
        }
        self.ingest(event, target)
        return event
