"""What the engine records beyond run state, so nothing fails silently: every failed attempt with
its error, how each step reached the engine (in a call's reply or by checkpoint), events that
matched no function, and each app's sync attempts. The dashboard and the inspection API read it.

The tables are created idempotently (``CREATE TABLE IF NOT EXISTS``) next to the engine's own, so
an older SQLite file gains them on the next start; so is an index of runs by creation time, for the
dashboard's runs list (polled every second while it is open).
"""

from __future__ import annotations

import difflib
import logging
from typing import TYPE_CHECKING, Any

from eagerstep.engine.model import RunState, _iso
from eagerstep.engine.store import dumps, loads

if TYPE_CHECKING:
    from eagerstep.engine.engine import Engine

log = logging.getLogger("eagerstep.engine")

SCHEMA = """
CREATE TABLE IF NOT EXISTS step_attempts (
    run_id TEXT NOT NULL, step_id TEXT NOT NULL, attempt INTEGER NOT NULL, name TEXT,
    error TEXT NOT NULL, started_at REAL, ended_at REAL NOT NULL, retried INTEGER NOT NULL,
    PRIMARY KEY (run_id, step_id, attempt)
);
CREATE TABLE IF NOT EXISTS step_sources (
    run_id TEXT NOT NULL, step_id TEXT NOT NULL, via TEXT NOT NULL, PRIMARY KEY (run_id, step_id)
);
CREATE TABLE IF NOT EXISTS unmatched_events (event_id TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs(created_at);
CREATE TABLE IF NOT EXISTS app_syncs (
    url TEXT PRIMARY KEY, attempted_at REAL NOT NULL, ok INTEGER NOT NULL, error TEXT,
    failures INTEGER NOT NULL, next_retry_at REAL
);
"""

#: How a step's result reached the engine.
VIA_REPLY = "reply"  # in the reply to a call request (standard orchestration)
VIA_CHECKPOINT = "checkpoint"  # ran in the worker, reported by POST /v1/checkpoint (the default)

_INSERT_ATTEMPT = (
    "INSERT OR REPLACE INTO step_attempts(run_id, step_id, attempt, name, error, started_at, ended_at,"
    " retried) VALUES (?,?,?,?,?,?,?,?)"
)
_INSERT_SOURCE = "INSERT OR IGNORE INTO step_sources(run_id, step_id, via) VALUES (?,?,?)"

#: Events the engine emits itself; one that matches nothing is normal, not worth a log line.
_INTERNAL_PREFIX = "inngest/"


def _describe(error: dict[str, Any]) -> str:
    name = error.get("name") or "Error"
    message = error.get("message")
    return f"{name}: {message}" if message else str(name)


class RunHistory:
    """Records and reads the engine's history tables (inside the caller's transaction)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_tables(self) -> None:
        self.engine.db.conn.executescript(SCHEMA)

    # ------------------------------------------------------------------ hooks (write)

    def attempt_failed(
        self,
        run: RunState,
        step_id: str,
        name: str | None,
        attempt: int,
        error: dict[str, Any],
        *,
        started: float | None,
        max_attempts: int,
        retry_in: float | None,
    ) -> dict[str, Any]:
        """A function or step attempt failed; ``retry_in``: seconds until the next attempt, or None
        when this was the last one. Logs it, records it, and returns the error to store: on the last
        attempt with ``attempts`` (how many were made) added, so a final error never reads as "never
        retried"."""
        engine = self.engine
        now = engine.clock.now()
        what = f"step {name or step_id}" if step_id != "step" else "the function"
        engine.db.execute_deferred(
            _INSERT_ATTEMPT,
            (run.id, step_id, attempt, name, dumps(error), started, now, int(retry_in is not None)),
        )
        if retry_in is not None:
            log.warning(
                "run %s of %s: %s failed (attempt %d of %d), retrying in %.1fs: %s",
                run.id,
                run.function_id,
                what,
                attempt + 1,
                max_attempts,
                retry_in,
                _describe(error),
            )
            return error
        final = dict(error)
        final["attempts"] = attempt + 1
        cause = self._failed_step(run) if step_id == "step" and error.get("step_id") else None
        if cause is not None:
            # the function raised the final error of a step: that step's attempts are the story
            step_name, final["attempts"] = cause
            what = f"the function (its step {step_name})"
        count = final["attempts"]
        log.warning(
            "run %s of %s: %s failed after %d attempt%s: %s",
            run.id,
            run.function_id,
            what,
            count,
            "" if count == 1 else "s",
            _describe(error),
        )
        return final

    def _failed_step(self, run: RunState) -> tuple[str, int] | None:
        """(name, attempts) of the run's step whose last attempt failed for good, if any."""
        row = self.engine.db.one(
            "SELECT step_id, name FROM step_attempts WHERE run_id=? AND retried=0 AND step_id!='step'"
            " ORDER BY ended_at DESC LIMIT 1",
            (run.id,),
        )
        if row is None:
            return None
        count = self.engine.db.one(
            "SELECT COUNT(*) FROM step_attempts WHERE run_id=? AND step_id=?", (run.id, row[0])
        )
        return str(row[1] or row[0]), int(count[0]) if count else 1

    def reported(self, run: RunState, step_ids: list[str], via: str) -> None:
        """Steps that reached the engine ``via`` a call's reply or a checkpoint."""
        db = self.engine.db
        for step_id in step_ids:
            db.execute_deferred(_INSERT_SOURCE, (run.id, step_id, via))

    def unmatched(self, event: dict[str, Any]) -> None:
        """An event whose name and expression match no synced function's trigger."""
        name = str(event.get("name"))
        if name.startswith(_INTERNAL_PREFIX):
            return
        self.engine.db.execute_deferred(
            "INSERT OR IGNORE INTO unmatched_events(event_id, at) VALUES (?,?)",
            (event["id"], self.engine.clock.now()),
        )
        hint = self.similar_triggers(name)
        log.info(
            "event %s (%s) matched no function; no run was started%s",
            event["id"],
            name,
            f" (did you mean {' or '.join(hint)}?)" if hint else "",
        )

    def similar_triggers(self, name: str) -> list[str]:
        """Trigger event names of synced functions close to ``name`` (a typo's likely fix)."""
        return difflib.get_close_matches(name, list(self.engine.intake.exact_triggers), n=3, cutoff=0.8)

    def sync_attempted(self, url: str, error: str | None, next_retry_in: float | None = None) -> None:
        """An attempt to sync the app at ``url``: ``error`` is None when it succeeded."""
        engine = self.engine
        now = engine.clock.now()
        row = engine.db.one("SELECT failures FROM app_syncs WHERE url=?", (url,))
        failures = 0 if error is None else (int(row[0]) if row else 0) + 1
        engine.db.execute(
            "INSERT INTO app_syncs(url, attempted_at, ok, error, failures, next_retry_at)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT(url) DO UPDATE SET attempted_at=excluded.attempted_at,"
            " ok=excluded.ok, error=excluded.error, failures=excluded.failures,"
            " next_retry_at=excluded.next_retry_at",
            (
                url,
                now,
                int(error is None),
                error,
                failures,
                now + next_retry_in if next_retry_in is not None else None,
            ),
        )

    # ------------------------------------------------------------------ reads

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.engine.db.all(
            "SELECT step_id, attempt, name, error, started_at, ended_at, retried FROM step_attempts"
            " WHERE run_id=? ORDER BY ended_at, attempt",
            (run_id,),
        )
        return [
            {
                "step_id": step_id,
                "attempt": attempt,
                "name": name,
                "error": loads(error),
                "started_at": _iso(started),
                "ended_at": _iso(ended),
                "retried": bool(retried),
                "_started": started,
                "_ended": ended,
            }
            for step_id, attempt, name, error, started, ended, retried in rows
        ]

    def sources(self, run_id: str) -> dict[str, str]:
        rows = self.engine.db.all("SELECT step_id, via FROM step_sources WHERE run_id=?", (run_id,))
        return {step_id: via for step_id, via in rows}

    def is_unmatched(self, event_id: str) -> bool:
        return self.engine.db.one("SELECT 1 FROM unmatched_events WHERE event_id=?", (event_id,)) is not None

    def syncs(self) -> dict[str, dict[str, Any]]:
        return {
            url: {
                "attempted_at": _iso(at),
                "ok": bool(ok),
                "error": error,
                "failures": failures,
                "next_retry_at": _iso(next_at),
            }
            for url, at, ok, error, failures, next_at in self.engine.db.all(
                "SELECT url, attempted_at, ok, error, failures, next_retry_at FROM app_syncs"
            )
        }
