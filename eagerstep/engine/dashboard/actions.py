"""The dashboard's actions that the Inngest API has no endpoint for: rerun a run, replay an event."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from eagerstep.engine.model import EngineError
from eagerstep.engine.store import loads

if TYPE_CHECKING:
    from eagerstep.engine.engine import Engine

log = logging.getLogger("eagerstep.engine")


def rerun(engine: Engine, run_id: str) -> str:
    """Start a new run of the same function with the same events (no memos: every step runs
    again); flow control is skipped, as for a rerun from the Inngest dashboard. Returns its id."""
    row = engine.db.one("SELECT function_id, events FROM runs WHERE id=?", (run_id,))
    if row is None:
        raise EngineError(f"run {run_id} not found", 404)
    function_id, events_text = row
    fn = engine.functions.get(function_id)
    if fn is None:
        raise EngineError(f"function {function_id} is not registered any more; sync its app first", 409)
    events: list[dict[str, Any]] = loads(events_text)
    with engine.transaction():
        run = engine.lifecycle.create_run(fn, events)
    log.info("run %s of %s: rerun of run %s", run.id, function_id, run_id)
    return run.id


def replay(engine: Engine, event_id: str) -> str:
    """Send the event again under a new id (routed like any new event). Returns the new id."""
    row = engine.db.one("SELECT body FROM events WHERE id=?", (event_id,))
    if row is None:
        raise EngineError(f"event {event_id} not found", 404)
    event: dict[str, Any] = loads(row[0])
    copy = {key: value for key, value in event.items() if key not in ("id", "ts")}
    (new_id,) = engine.accept_events(copy)
    log.info("event %s (%s): replay of event %s", new_id, event.get("name"), event_id)
    return new_id
