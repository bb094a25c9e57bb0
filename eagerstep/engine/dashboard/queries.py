"""The dashboard's reads: runs (filtered), one run with its timeline, events, functions and apps,
as JSON-ready dicts (the pages render them; ``/dash/api/...`` returns them as they are)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eagerstep.core import protocol
from eagerstep.engine.history import VIA_CHECKPOINT
from eagerstep.engine.model import CALL, INVOKE_TIMEOUT, SLEEP, WAIT_TIMEOUT, EngineError, _iso
from eagerstep.engine.store import FINAL_STATUSES, loads

if TYPE_CHECKING:
    from eagerstep.engine.engine import Engine

STATUSES = ("Running", "Completed", "Failed", "Cancelled")
#: The ``since`` filter of the runs list: label -> seconds.
SINCE = {"5m": 300.0, "1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0}


@dataclass(frozen=True)
class RunFilter:
    """The runs list's filters; empty fields match everything."""

    status: str = ""
    function: str = ""
    since: str = ""
    query: str = ""  # a run id or an event id (or a prefix of either)
    limit: int = 100

    @classmethod
    def from_query(cls, query: dict[str, str]) -> RunFilter:
        status = query.get("status", "")
        if status and status not in STATUSES:
            raise EngineError(f"status must be one of {', '.join(STATUSES)}")
        since = query.get("since", "")
        if since and since not in SINCE:
            raise EngineError(f"since must be one of {', '.join(SINCE)}")
        try:
            limit = int(query.get("limit", "100"))
        except ValueError as exc:
            raise EngineError("limit must be an integer") from exc
        return cls(
            status,
            query.get("function", "").strip(),
            since,
            query.get("q", "").strip(),
            max(1, min(limit, 1000)),
        )


def _ms(start: float | None, end: float | None) -> float | None:
    return round((end - start) * 1000, 3) if start is not None and end is not None else None


def list_runs(engine: Engine, filters: RunFilter) -> list[dict[str, Any]]:
    where: list[str] = []
    params: list[Any] = []
    if filters.status:
        where.append("status=?")
        params.append(filters.status)
    if filters.function:
        where.append("function_id=?")
        params.append(filters.function)
    if filters.since:
        where.append("created_at>=?")
        params.append(engine.clock.now() - SINCE[filters.since])
    if filters.query:
        where.append("(id LIKE ? OR event_id LIKE ?)")
        params += [filters.query + "%", filters.query + "%"]
    sql = "SELECT id, function_id, event_id, status, created_at, ended_at, events FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC LIMIT ?"
    params.append(filters.limit)
    now = engine.clock.now()
    runs = []
    for rid, fid, event_id, status, created, ended, events in engine.db.all(sql, tuple(params)):
        first = (loads(events) or [{}])[0]
        runs.append(
            {
                "run_id": rid,
                "function_id": fid,
                "event_id": event_id,
                "event_name": first.get("name"),
                "status": status,
                "started_at": _iso(created),
                "ended_at": _iso(ended),
                "duration_ms": _ms(created, ended if ended is not None else now),
            }
        )
    return runs


def _result(memo: Any) -> dict[str, Any]:
    kind = protocol.memo_kind(memo)
    if kind is protocol.MemoKind.ERROR:
        return {"error": memo["error"]}
    if kind is protocol.MemoKind.DATA:
        return {"output": memo["data"]}
    return {"output": memo}


def get_run(engine: Engine, run_id: str) -> dict[str, Any]:
    """A run with its steps, every failed attempt, what it waits for, and a timeline whose times
    are milliseconds since the triggering event was received."""
    db = engine.db
    row = db.one(
        "SELECT function_id, event_id, events, status, output, error, created_at, ended_at FROM runs"
        " WHERE id=?",
        (run_id,),
    )
    if row is None:
        raise EngineError(f"run {run_id} not found", 404)
    fid, event_id, events_text, status, output, error, created, ended = row
    received_row = db.one("SELECT received_at FROM events WHERE id=?", (event_id,))
    origin = float(received_row[0]) if received_row else float(created)
    origin = min(origin, float(created))
    now = engine.clock.now()
    end = float(ended) if ended is not None else now

    def rel(ts: float | None) -> float | None:
        return round((ts - origin) * 1000, 3) if ts is not None else None

    history = engine.history
    sources = history.sources(run_id)
    attempts_by_step: dict[str, list[dict[str, Any]]] = {}
    for attempt in history.attempts(run_id):
        started, ended_at = attempt.pop("_started"), attempt.pop("_ended")
        attempt["start_ms"], attempt["end_ms"] = rel(started), rel(ended_at)
        attempts_by_step.setdefault(attempt["step_id"], []).append(attempt)
    steps: list[dict[str, Any]] = []
    for sid, name, op, memo_text, begun, finished in db.all(
        "SELECT id, name, op, memo, started_at, ended_at FROM steps WHERE run_id=? ORDER BY position",
        (run_id,),
    ):
        result = _result(loads(memo_text))
        step: dict[str, Any] = {
            "id": sid,
            "name": name or sid,
            "op": op,
            "status": "Failed" if "error" in result else "Completed",
            "via": _via(op, sources.get(sid)),
            "start_ms": rel(begun),
            "end_ms": rel(finished),
            "duration_ms": _ms(begun, finished),
            "attempts": attempts_by_step.pop(sid, []),
            **result,
        }
        if op == "WaitForEvent" and result.get("output") is None:
            step["timed_out"] = True
        steps.append(step)
    live = engine.runs.get(run_id)
    if live is not None:
        steps += _pending_steps(engine, run_id, rel, attempts_by_step)
    # failed attempts of the function as a whole (a call that failed outside any step)
    function_attempts = attempts_by_step.pop("step", [])
    for sid, attempts in attempts_by_step.items():  # a step that failed and has no memo (yet)
        steps.append(
            {
                "id": sid,
                "name": attempts[-1]["name"] or sid,
                "op": "StepRun",
                "status": "Failed",
                "via": "reply",
                "start_ms": attempts[0]["start_ms"],
                "end_ms": attempts[-1]["end_ms"],
                "duration_ms": None,
                "attempts": attempts,
                "error": attempts[-1]["error"],
            }
        )
    _mark_gaps(steps, rel(float(created)) or 0.0)
    events = loads(events_text) or []
    return {
        "run_id": run_id,
        "function_id": fid,
        "event_id": event_id,
        "event": events[0] if events else None,
        "batch_size": len(events),
        "status": status,
        "final": status in FINAL_STATUSES,
        "output": loads(output),
        "error": loads(error),
        "received_at": _iso(origin),
        "started_at": _iso(created),
        "ended_at": _iso(ended),
        "run_start_ms": rel(float(created)),
        "run_end_ms": rel(end),
        "duration_ms": _ms(float(created), end),
        "steps": steps,
        "function_attempts": function_attempts,
    }


def _via(op: str | None, source: str | None) -> str:
    if op not in ("StepRun", "Step"):
        return "orchestrator"
    return source or VIA_CHECKPOINT


def _pending_steps(
    engine: Engine, run_id: str, rel: Any, attempts_by_step: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Steps not finished yet: sleeping (until when), waiting (for what), running or due a retry."""
    live = engine.runs[run_id]
    by_step: dict[str, list[Any]] = {}
    for item_id in engine.queue.run_items.get(run_id, set()):
        item = engine.queue.items.get(item_id)
        if item is not None and "step_id" in item.payload:
            by_step.setdefault(item.payload["step_id"], []).append(item)
    waits = {
        w.payload.get("step_id"): w
        for w in (engine.waits.waits.get(i) for i in engine.waits.by_run.get(run_id, set()))
        if w is not None
    }
    pending = []
    for sid in sorted(live.pending, key=lambda s: live.started.get(s, 0.0)):
        step: dict[str, Any] = {
            "id": sid,
            "name": live.names.get(sid, sid),
            "status": "Running",
            "via": "orchestrator",
            "start_ms": rel(live.started.get(sid)),
            "end_ms": None,
            "attempts": attempts_by_step.pop(sid, []),
        }
        for item in by_step.get(sid, []):
            if item.kind == SLEEP:
                step.update(op="Sleep", status="Sleeping", wakes_at=_iso(item.due_at))
            elif item.kind in (WAIT_TIMEOUT, INVOKE_TIMEOUT):
                step["timeout_at"] = _iso(item.due_at)
            elif item.kind == CALL:
                step.update(op="StepRun", next_attempt_at=_iso(item.due_at))
                step["attempt"] = item.payload.get("attempt")
        wait = waits.get(sid)
        if wait is not None and wait.kind == "wait":
            step.update(op="WaitForEvent", status="Waiting", waits_for=wait.event_name)
            step["condition"] = wait.payload.get("if")
        elif wait is not None and wait.kind == "invoke":
            step.update(op="InvokeFunction", status="Waiting", waits_for="the invoked function to finish")
        pending.append(step)
    return pending


def _mark_gaps(steps: list[dict[str, Any]], run_start: float) -> None:
    """``gap_ms``: the time between the previous span's end (or the run's start) and this step's
    start, where the orchestrator (queueing, HTTP, the app's replay) spent the time."""
    edge = run_start
    for step in steps:
        start = step.get("start_ms")
        if start is None:
            continue
        step["gap_ms"] = round(max(start - edge, 0.0), 3)
        end = step.get("end_ms")
        edge = max(edge, end if end is not None else start)


def list_events(
    engine: Engine, *, limit: int = 100, name: str = "", internal: bool = False
) -> list[dict[str, Any]]:
    where: list[str] = []
    params: list[Any] = []
    if name:
        where.append("e.name=?")
        params.append(name)
    if not internal:
        where.append("e.name NOT LIKE 'inngest/%'")
    sql = (
        "SELECT e.id, e.name, e.body, e.received_at, u.event_id IS NOT NULL,"
        " (SELECT COUNT(*) FROM runs r WHERE r.event_id=e.id) FROM events e"
        " LEFT JOIN unmatched_events u ON u.event_id=e.id"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY e.seq DESC LIMIT ?"
    params.append(limit)
    return [
        {
            "id": eid,
            "name": ename,
            "data": (loads(body) or {}).get("data"),
            "received_at": _iso(received),
            "matched_no_function": bool(unmatched),
            "runs": count,
        }
        for eid, ename, body, received, unmatched, count in engine.db.all(sql, tuple(params))
    ]


def get_event(engine: Engine, event_id: str) -> dict[str, Any]:
    row = engine.db.one("SELECT body, received_at FROM events WHERE id=?", (event_id,))
    if row is None:
        raise EngineError(f"event {event_id} not found", 404)
    runs = engine.db.all(
        "SELECT id, function_id, status, created_at, ended_at FROM runs WHERE event_id=? ORDER BY created_at",
        (event_id,),
    )
    body: dict[str, Any] = loads(row[0])
    unmatched = engine.history.is_unmatched(event_id)
    return {
        "id": event_id,
        "event": body,
        "received_at": _iso(row[1]),
        "matched_no_function": unmatched,
        "did_you_mean": engine.history.similar_triggers(str(body.get("name"))) if unmatched else [],
        "runs": [
            {"run_id": rid, "function_id": fid, "status": status, "duration_ms": _ms(created, ended)}
            for rid, fid, status, created, ended in runs
        ],
    }


def list_functions(engine: Engine) -> list[dict[str, Any]]:
    functions = []
    for fn in sorted(engine.functions.values(), key=lambda f: f.id):
        wire = fn.config.to_wire()
        triggers = [
            {"cron": t["cron"]} if "cron" in t else {"event": t.get("event"), "if": t.get("expression")}
            for t in wire.get("triggers", [])
        ]
        flow = {
            key: wire[key]
            for key in (
                "concurrency", "throttle", "rateLimit", "debounce", "batchEvents",
                "idempotency", "singleton", "priority", "cancel", "timeouts",
            )
            if wire.get(key)
        }  # fmt: skip
        runtime = (wire.get("steps", {}).get("step", {}) or {}).get("runtime", {})
        functions.append(
            {
                "id": fn.id,
                "name": wire.get("name") or fn.id,
                "app_url": fn.app_url,
                "url": runtime.get("url"),
                "triggers": triggers,
                "retries": fn.max_attempts - 1,
                "flow_control": flow,
                "checkpointing": _checkpointing(engine, fn.id),
            }
        )
    return functions


def _checkpointing(engine: Engine, function_id: str) -> dict[str, int]:
    """How this function's steps reached the engine so far. The register payload carries no
    checkpointing setting (it is the app's, see docs/checkpointing.md), so the page shows what
    happened: steps by checkpoint (ran in the worker) and steps in a call's reply (orchestrated)."""
    row = engine.db.one(
        "SELECT COUNT(*), COUNT(src.via) FROM steps s JOIN runs r ON r.id=s.run_id"
        " LEFT JOIN step_sources src ON src.run_id=s.run_id AND src.step_id=s.id"
        " WHERE r.function_id=? AND s.op='StepRun'",
        (function_id,),
    )
    total, by_reply = (int(row[0]), int(row[1])) if row else (0, 0)
    return {"by_checkpoint": total - by_reply, "by_reply": by_reply}


def list_apps(engine: Engine) -> list[dict[str, Any]]:
    """Synced apps, and URLs the engine tried to sync without success, with their sync state."""
    apps = engine.list_apps()
    known = {a["url"] for a in apps}
    for url, sync in engine.history.syncs().items():
        if url not in known:
            apps.append(
                {
                    "url": url,
                    "name": None,
                    "sdk": None,
                    "framework": None,
                    "synced_at": None,
                    "functions": [],
                    "last_sync_attempt_at": sync["attempted_at"],
                    "last_sync_error": sync["error"],
                    "sync_failures": sync["failures"],
                    "next_sync_retry_at": sync["next_retry_at"],
                }
            )
    return apps
