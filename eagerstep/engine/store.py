"""The engine's SQLite file: schema, one short transaction per state change, and loaders.

WAL mode with ``synchronous=NORMAL``: a committed transaction is in the WAL before the commit
returns, so killing the process (even with SIGKILL) loses nothing that was acknowledged; only a
power cut may drop the last few commits. Every statement runs on the engine's event loop thread:
a short write costs tens of microseconds, less than handing it to a worker thread.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS apps (
    url TEXT PRIMARY KEY, name TEXT NOT NULL, sdk TEXT, framework TEXT,
    checksum TEXT NOT NULL, synced_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS functions (
    id TEXT PRIMARY KEY, uuid TEXT NOT NULL, app_url TEXT NOT NULL, config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
    body TEXT NOT NULL, received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, function_id TEXT NOT NULL, event_id TEXT, events TEXT NOT NULL,
    status TEXT NOT NULL, output TEXT, error TEXT, created_at REAL NOT NULL, started_at REAL,
    ended_at REAL, state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_event ON runs(event_id);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs(status);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL, id TEXT NOT NULL, position INTEGER NOT NULL, name TEXT, op TEXT,
    memo TEXT NOT NULL, started_at REAL, ended_at REAL, PRIMARY KEY (run_id, id)
);
CREATE TABLE IF NOT EXISTS queue (
    id TEXT PRIMARY KEY, run_id TEXT, kind TEXT NOT NULL, due_at REAL NOT NULL,
    payload TEXT NOT NULL, generation INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS queue_by_run ON queue(run_id);
CREATE TABLE IF NOT EXISTS waits (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL, kind TEXT NOT NULL, event_name TEXT,
    payload TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS waits_by_run ON waits(run_id);
CREATE TABLE IF NOT EXISTS run_keys (
    run_id TEXT NOT NULL, function_id TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS event_receipts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, name TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS event_receipts_by_name ON event_receipts(name, seq);
CREATE INDEX IF NOT EXISTS run_keys_by_key ON run_keys(function_id, kind, key, created_at);
"""

FINAL_STATUSES = ("Completed", "Failed", "Cancelled")


#: ``json.dumps(value, separators=(",", ":"), ensure_ascii=False)`` without building an encoder per call.
dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Store:
    """A thin wrapper over one sqlite3 connection (autocommit off; explicit transactions)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.conn.executescript(SCHEMA)
        self._depth = 0
        self._deferred: dict[str, list[tuple[Any, ...]]] = {}

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction; nested uses join the outer one. Deferred rows are written just before
        the commit, inside the transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.conn
            for sql, rows in self._deferred.items():
                self.conn.executemany(sql, rows)
        except BaseException:
            self._depth = 0
            self._deferred.clear()
            self.conn.execute("ROLLBACK")
            raise
        self._deferred.clear()
        self._depth = 0
        self.conn.execute("COMMIT")

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def execute_deferred(self, sql: str, params: tuple[Any, ...]) -> None:
        """Run ``sql`` at the end of the current transaction, the rows of one statement in one
        ``executemany`` (for writes nothing reads back before the commit); at once outside one."""
        if not self._depth:
            self.conn.execute(sql, params)
            return
        rows = self._deferred.get(sql)
        if rows is None:
            self._deferred[sql] = [params]
        else:
            rows.append(params)

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql, params).fetchall())
