"""Read-only views of runs and events for the state and inspection APIs (and the dashboard)."""

from __future__ import annotations

from typing import Any

from eagerstep.core import protocol
from eagerstep.engine.model import EngineError, RunState, _iso
from eagerstep.engine.store import Store, loads

_RUN_COLUMNS = "id, function_id, event_id, status, output, error, created_at, ended_at"


def run_actions(db: Store, live: RunState | None, run_id: str) -> dict[str, Any]:
    """The memo map of a run (``GET /v0/runs/{id}/actions``)."""
    if live is not None:
        return dict(live.memos)
    if db.one("SELECT 1 FROM runs WHERE id=?", (run_id,)) is None:
        raise EngineError(f"run {run_id} not found", 404)
    rows = db.all("SELECT id, memo FROM steps WHERE run_id=? ORDER BY position", (run_id,))
    return {sid: loads(memo) for sid, memo in rows}


def run_batch(db: Store, run_id: str) -> list[Any]:
    """The events of a run (``GET /v0/runs/{id}/batch``)."""
    row = db.one("SELECT events FROM runs WHERE id=?", (run_id,))
    if row is None:
        raise EngineError(f"run {run_id} not found", 404)
    events: list[Any] = loads(row[0])
    return events


def _summary(row: tuple[Any, ...]) -> dict[str, Any]:
    rid, fid, event_id, status, output, error, created_at, ended_at = row
    return {
        "run_id": rid,
        "function_id": fid,
        "event_id": event_id,
        "status": status,
        "output": loads(output),
        "error": loads(error),
        "run_started_at": _iso(created_at),
        "ended_at": _iso(ended_at),
        "duration_ms": round((ended_at - created_at) * 1000, 3) if ended_at else None,
    }


def get_run(db: Store, live: RunState | None, run_id: str) -> dict[str, Any]:
    """A run with its status, output or error, and its steps with timings (pending ones last)."""
    row = db.one(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id=?", (run_id,))
    if row is None:
        raise EngineError(f"run {run_id} not found", 404)
    run = _summary(row)
    steps = []
    for sid, name, op, memo_text, begun, ended in db.all(
        "SELECT id, name, op, memo, started_at, ended_at FROM steps WHERE run_id=? ORDER BY position",
        (run_id,),
    ):
        memo = loads(memo_text)
        kind = protocol.memo_kind(memo)
        step: dict[str, Any] = {
            "id": sid,
            "name": name,
            "op": op,
            "status": "Failed" if kind is protocol.MemoKind.ERROR else "Completed",
            "started_at": _iso(begun),
            "ended_at": _iso(ended),
            "duration_ms": round((ended - begun) * 1000, 3) if begun and ended else None,
        }
        if kind is protocol.MemoKind.ERROR:
            step["error"] = memo["error"]
        elif kind is protocol.MemoKind.DATA:
            step["output"] = memo["data"]
        else:
            step["output"] = memo
        steps.append(step)
    if live is not None:
        for sid in sorted(live.pending):
            steps.append(
                {
                    "id": sid,
                    "name": live.names.get(sid),
                    "status": "Running",
                    "started_at": _iso(live.started.get(sid)),
                }
            )
    run["steps"] = steps
    return run


def event_runs(db: Store, event_id: str) -> list[dict[str, Any]]:
    rows = db.all(f"SELECT {_RUN_COLUMNS} FROM runs WHERE event_id=? ORDER BY created_at", (event_id,))
    return [_summary(r) for r in rows]


def list_runs(db: Store, limit: int = 50) -> list[dict[str, Any]]:
    rows = db.all(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY created_at DESC LIMIT ?", (limit,))
    return [_summary(r) for r in rows]


def get_event(db: Store, event_id: str) -> dict[str, Any]:
    row = db.one("SELECT body FROM events WHERE id=?", (event_id,))
    if row is None:
        raise EngineError(f"event {event_id} not found", 404)
    event: dict[str, Any] = loads(row[0])
    return event
