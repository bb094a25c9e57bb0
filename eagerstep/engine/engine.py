"""The orchestrator: apps and functions, events, runs, the call loop, ops, waits and timers.

Everything runs on one asyncio loop. Each state change is one short SQLite transaction
(``Store.tx``); memory mirrors the database for active runs and is rebuilt from it at start,
so a killed engine resumes where it stopped. Dispatch is push-based: accepting an event, a
reply or a checkpoint enqueues work and wakes the dispatcher at once; delayed work (sleeps,
timeouts, retry backoff, cron) sits in a persisted queue whose nearest due time arms one timer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import heapq
import logging
import re
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from pydantic import ValidationError

from eagerstep.core import protocol, signing
from eagerstep.engine import expressions, inspection
from eagerstep.engine.appclient import AppClient, AppHttpError
from eagerstep.engine.clock import Clock, RealClock
from eagerstep.engine.model import (
    _APP_NAMESPACE,
    _FN_NAMESPACE,
    BATCH,
    CALL,
    CANCEL_TIMEOUT,
    CANCELLED,
    COMPLETED,
    CRON,
    DEBOUNCE,
    FAILED,
    FIRE_DEFAULT_KINDS,
    INVOKE_TIMEOUT,
    MAX_TIMER_SECONDS,
    RUN_TIMEOUT,
    RUNNING,
    SERVER_KIND,
    SLEEP,
    USER_AGENT,
    WAIT_TIMEOUT,
    EngineError,
    FunctionInfo,
    QueueItem,
    RunListener,
    RunState,
    Wait,
    _iso,
    _seconds,
    _wildcard,
    new_id,
    next_cron_time,
)
from eagerstep.engine.store import FINAL_STATUSES, Store, dumps, loads

log = logging.getLogger("eagerstep.engine")

__all__ = ["SERVER_KIND", "Engine", "EngineError", "new_id"]


class Engine:
    """The embedded orchestrator. Use ``async with Engine(db_path=...) as engine:``."""

    def __init__(
        self,
        db_path: str | Path = ":memory:",
        *,
        clock: Clock | None = None,
        signing_key: str | None = None,
        retry_interval: float = 1.0,
        call_timeout: float = 300.0,
        app_urls: Iterable[str] = (),
        max_connections: int = 100,
    ) -> None:
        self.db_path = str(db_path)
        self.clock: Clock = clock or RealClock()
        self.signing_key = signing_key or None
        self.retry_interval = retry_interval
        self.call_timeout = call_timeout
        self.app_urls = list(app_urls)
        self._max_connections = max_connections
        self.store: Store | None = None
        self.http: httpx.AsyncClient | None = None
        self.calls: AppClient | None = None
        self.functions: dict[str, FunctionInfo] = {}
        self.runs: dict[str, RunState] = {}
        self._exact_triggers: dict[str, list[tuple[FunctionInfo, str | None]]] = {}
        self._wild_triggers: list[tuple[re.Pattern[str], FunctionInfo, str | None]] = []
        self._items: dict[str, QueueItem] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._waits: dict[str, Wait] = {}
        self._waits_by_event: dict[str, dict[str, Wait]] = {}
        self._invoke_waits: dict[str, Wait] = {}
        self._run_items: dict[str, set[str]] = {}
        self._run_waits: dict[str, set[str]] = {}
        self._inflight: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._slots: dict[tuple[str, str], int] = {}
        self._parked: dict[tuple[str, str], deque[QueueItem]] = {}
        self._listeners: list[RunListener] = []
        self._run_waiters: dict[str, list[asyncio.Future[str]]] = {}
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._valid_auth: set[str] = set()
        #: Counters since start (calls made to apps, checkpoint requests, events, finished runs).
        self.stats: dict[str, int] = {"calls": 0, "checkpoints": 0, "events": 0, "runs_finished": 0}
        if self.signing_key:
            self._valid_auth = {self.signing_key}
            with contextlib.suppress(ValueError):
                self._valid_auth.add(signing.hash_signing_key(self.signing_key))

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.store = Store(self.db_path)
        self.calls = AppClient(timeout=self.call_timeout, max_idle=self._max_connections)
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(self.call_timeout, connect=5.0),
            limits=httpx.Limits(
                max_connections=self._max_connections, max_keepalive_connections=self._max_connections
            ),
            headers={"User-Agent": USER_AGENT},
        )
        self._load()
        self.clock.on_change(self._wake_threadsafe)
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="eagerstep-dispatcher")
        for url in self.app_urls:
            self._spawn(self._sync_until_reachable(url))

    async def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
            self._dispatcher = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.aclose()
            self.http = None
        if self.calls is not None:
            await self.calls.aclose()
            self.calls = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _wake_threadsafe(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    @property
    def db(self) -> Store:
        if self.store is None:
            raise RuntimeError("the engine is not started; use `async with Engine(...)`")
        return self.store

    def _load(self) -> None:
        db = self.db
        self.functions.clear()
        for fid, fuuid, app_url, config in db.all("SELECT id, uuid, app_url, config FROM functions"):
            try:
                cfg = protocol.FunctionConfig.model_validate(loads(config))
                self.functions[fid] = FunctionInfo.build(fuuid, app_url, cfg)
            except (ValidationError, EngineError) as exc:
                log.warning("skipping stored function %s: %s", fid, exc)
        self._index_triggers()
        self.runs.clear()
        rows = db.all(
            "SELECT id, function_id, events, status, created_at, state FROM runs WHERE status NOT IN (?,?,?)",
            FINAL_STATUSES,
        )
        for rid, fid, events, status, created_at, state_text in rows:
            state = loads(state_text) or {}
            run = RunState(rid, fid, loads(events), status, created_at)
            run.pending = set(state.get("pending", []))
            run.force_plan = bool(state.get("force_plan"))
            run.version = int(state.get("version", -1))
            run.correlation_id = state.get("correlation_id")
            run.started = dict(state.get("started", {}))
            run.names = dict(state.get("names", {}))
            for sid, memo in db.all("SELECT id, memo FROM steps WHERE run_id=? ORDER BY position", (rid,)):
                run.memos[sid] = loads(memo)
                run.stack.append(sid)
            self.runs[rid] = run
        with db.tx():
            # Calls that were in flight when the engine stopped go out again with a new generation,
            # so a late checkpoint from the old attempt is fenced off (409).
            db.execute("UPDATE queue SET generation = generation + 1 WHERE kind = ?", (CALL,))
        self._items.clear()
        self._run_items.clear()
        self._heap.clear()
        self._inflight.clear()
        self._parked.clear()
        for qid, run_id, kind, due_at, payload, generation in db.all(
            "SELECT id, run_id, kind, due_at, payload, generation FROM queue"
        ):
            self._schedule(QueueItem(qid, run_id, kind, due_at, loads(payload), generation))
        self._waits.clear()
        self._run_waits.clear()
        self._waits_by_event.clear()
        self._invoke_waits.clear()
        for wid, run_id, kind, event_name, payload in db.all(
            "SELECT id, run_id, kind, event_name, payload FROM waits"
        ):
            self._index_wait(Wait(wid, run_id, kind, event_name, loads(payload)))

    def _index_triggers(self) -> None:
        self._exact_triggers = {}
        self._wild_triggers = []
        for fn in self.functions.values():
            for trigger in fn.config.triggers:
                if isinstance(trigger, protocol.EventTrigger):
                    if "*" in trigger.event:
                        self._wild_triggers.append((_wildcard(trigger.event), fn, trigger.expression))
                    else:
                        self._exact_triggers.setdefault(trigger.event, []).append((fn, trigger.expression))

    def _tx(self) -> Any:
        return _EngineTx(self)

    # ------------------------------------------------------------------ listeners (tests, benchmarks)

    def add_listener(self, listener: RunListener) -> None:
        """Call ``listener(run_id, status, event_id)`` on the loop when a run ends."""
        self._listeners.append(listener)

    async def wait_for_run(self, run_id: str, timeout: float = 10.0) -> str:
        """Wait until the run ends; return its final status."""
        row = self.db.one("SELECT status FROM runs WHERE id=?", (run_id,))
        if row is None:
            raise EngineError(f"run {run_id} not found", 404)
        if row[0] in FINAL_STATUSES:
            return str(row[0])
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._run_waiters.setdefault(run_id, []).append(future)
        return await asyncio.wait_for(future, timeout)

    # ------------------------------------------------------------------ sync

    def check_auth(self, authorization: str | None) -> None:
        """Require ``Authorization: Bearer <signing key, raw or hashed>`` when a key is configured."""
        if not self.signing_key:
            return
        token = (authorization or "").strip()
        if token.lower().startswith("bearer"):
            token = token[6:].strip()
        if token not in self._valid_auth:
            raise EngineError(
                "unauthorized: send Authorization: Bearer <signing key> (the engine was started with"
                " --signing-key)",
                401,
            )

    def register(self, raw: Any, headers: Mapping[str, str]) -> dict[str, Any]:
        """Handle ``POST /fn/register``; ``headers`` keys are lower-case."""
        expected = headers.get("x-inngest-expected-server-kind")
        if expected and expected.lower() != SERVER_KIND:
            raise EngineError(
                f"this is a dev server (eagerstep dev) but the app expected a {expected} server;"
                " set INNGEST_DEV=1 (or point the app at this server) and sync again"
            )
        self.check_auth(headers.get("authorization"))
        try:
            request = protocol.parse_register_request(raw)
        except (ValueError, ValidationError) as exc:
            raise EngineError(f"invalid register payload: {exc}") from exc
        app_url = _strip_query_param(request.url, "deployId")
        infos: list[FunctionInfo] = []
        seen: set[str] = set()
        for config in request.functions:
            if config.id in seen:
                raise EngineError(f"duplicate function id {config.id!r} in the register payload")
            seen.add(config.id)
            for trigger in config.triggers:
                if isinstance(trigger, protocol.EventTrigger) and trigger.expression:
                    try:
                        expressions.check(trigger.expression)
                    except expressions.ExpressionError as exc:
                        raise EngineError(f"function {config.id!r}: {exc}") from exc
                if isinstance(trigger, protocol.CronTrigger):
                    try:
                        next_cron_time(trigger.cron, self.clock.now())
                    except Exception as exc:
                        raise EngineError(
                            f"function {config.id!r}: invalid cron {trigger.cron!r}: {exc}"
                        ) from exc
            fn_uuid = str(uuid.uuid5(_FN_NAMESPACE, config.id))
            infos.append(FunctionInfo.build(fn_uuid, app_url, config))
        checksum = hashlib.sha256(
            dumps(
                {
                    "name": request.appName,
                    "url": app_url,
                    "functions": [i.config.to_wire() for i in infos],
                }
            ).encode()
        ).hexdigest()
        db = self.db
        row = db.one("SELECT checksum FROM apps WHERE url=?", (app_url,))
        modified = row is None or row[0] != checksum
        with self._tx():
            db.execute(
                "INSERT INTO apps(url, name, sdk, framework, checksum, synced_at) VALUES (?,?,?,?,?,?)"
                " ON CONFLICT(url) DO UPDATE SET name=excluded.name, sdk=excluded.sdk,"
                " framework=excluded.framework, checksum=excluded.checksum, synced_at=excluded.synced_at",
                (app_url, request.appName, request.sdk, request.framework, checksum, self.clock.now()),
            )
            for fid in [f.id for f in self.functions.values() if f.app_url == app_url and f.id not in seen]:
                db.execute("DELETE FROM functions WHERE id=?", (fid,))
                del self.functions[fid]
            for info in infos:
                db.execute(
                    "INSERT INTO functions(id, uuid, app_url, config) VALUES (?,?,?,?)"
                    " ON CONFLICT(id) DO UPDATE SET app_url=excluded.app_url, config=excluded.config",
                    (info.id, info.uuid, app_url, dumps(info.config.to_wire())),
                )
                self.functions[info.id] = info
            self._index_triggers()
            self._reconcile_crons()
        log.info("synced app %s (%s): %d functions", request.appName, app_url, len(infos))
        return {
            "ok": True,
            "modified": modified,
            "sync_id": str(uuid.uuid4()),
            "app_id": str(uuid.uuid5(_APP_NAMESPACE, app_url)),
        }

    async def sync_app(self, url: str) -> tuple[int, Any]:
        """Ask the app at ``url`` to sync (``PUT url``); return its status and reply body."""
        if self.http is None:
            raise RuntimeError("the engine is not started")
        body = dumps({"url": url}).encode()
        headers = {"Content-Type": "application/json", protocol.Header.SERVER_KIND: SERVER_KIND}
        if self.signing_key:
            headers[protocol.Header.SIGNATURE] = signing.sign(body, self.signing_key)
        response = await self.http.put(url, content=body, headers=headers, timeout=30.0)
        try:
            reply: Any = response.json()
        except ValueError:
            reply = response.text
        return response.status_code, reply

    async def _sync_until_reachable(self, url: str) -> None:
        delay = 0.2
        warned = False
        while True:
            try:
                status, reply = await self.sync_app(url)
                if status < 300:
                    return
                log.warning("syncing %s failed: %s %s", url, status, reply)
                return
            except httpx.HTTPError as exc:
                if not warned:
                    log.warning("app %s is not reachable yet (%s); retrying until it is", url, exc)
                    warned = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def list_apps(self) -> list[dict[str, Any]]:
        apps = []
        for url, name, sdk, framework, synced_at in self.db.all(
            "SELECT url, name, sdk, framework, synced_at FROM apps ORDER BY name"
        ):
            apps.append(
                {
                    "url": url,
                    "name": name,
                    "sdk": sdk,
                    "framework": framework,
                    "synced_at": _iso(synced_at),
                    "functions": sorted(f.id for f in self.functions.values() if f.app_url == url),
                }
            )
        return apps

    # ------------------------------------------------------------------ events

    def accept_events(self, raw: Any) -> list[str]:
        """Store and route events (``POST /e/{key}``); returns their ids. One transaction."""
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise EngineError("no events in the request body")
        if len(items) > 5000:
            raise EngineError("at most 5000 events per request")
        events = [self._normalise_event(item, index) for index, item in enumerate(items)]
        self.stats["events"] += len(events)
        with self._tx():
            for event in events:
                self._ingest(event)
        return [str(e["id"]) for e in events]

    def _normalise_event(self, raw: Any, index: int = 0) -> dict[str, Any]:
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
            event["id"] = new_id()
        event["id"] = str(event["id"])
        ts = event.get("ts")
        if not isinstance(ts, int) or isinstance(ts, bool) or ts <= 0:
            event["ts"] = int(self.clock.now() * 1000)
        if not isinstance(event.get("user"), dict):
            event["user"] = {}
        return event

    def _ingest(self, event: dict[str, Any], target: FunctionInfo | None = None) -> bool:
        """Store one event and route it: waits and cancellations first, then triggers."""
        db = self.db
        if db.one("SELECT 1 FROM events WHERE id=?", (event["id"],)) is not None:
            return False
        db.execute(
            "INSERT INTO events(id, name, body, received_at) VALUES (?,?,?,?)",
            (event["id"], event["name"], dumps(event), self.clock.now()),
        )
        self._match_waits(event)
        if target is not None:
            self._create_run(target, [event])
            return True
        name = event["name"]
        if name == protocol.EVENT_FUNCTION_INVOKED:
            meta = event["data"].get("_inngest") or {}
            fn = self.functions.get(str(meta.get("fn_id", "")))
            if fn is not None:
                self._create_run(fn, [event])
            return True
        candidates = list(self._exact_triggers.get(name, []))
        candidates += [(fn, expr) for pattern, fn, expr in self._wild_triggers if pattern.match(name)]
        for fn, expression in candidates:
            if expressions.matches(expression, event=event):
                if fn.config.debounce is not None:
                    self._debounce(fn, event)
                    continue
                if fn.config.batchEvents is not None and fn.config.batchEvents.maxSize > 1:
                    self._batch(fn, event)
                    continue
                keys = self._admit(fn, event)
                if keys is not None:
                    self._create_run(fn, [event], keys)
        return True

    def _admit(self, fn: FunctionInfo, event: dict[str, Any]) -> list[tuple[str, str]] | None:
        """Idempotency, rate limit and singleton: None when ``event`` may not start a run of ``fn``,
        else the keys to record for the new run."""
        config, db, now = fn.config, self.db, self.clock.now()
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
                self.runs[rid]
                for (rid,) in db.all(
                    "SELECT run_id FROM run_keys WHERE function_id=? AND kind='singleton' AND key=?",
                    (fn.id, key),
                )
                if rid in self.runs
            ]
            if active and config.singleton.mode == "skip":
                return None
            for run in active:
                self._finish_run(
                    run, CANCELLED, error={"name": "Cancelled", "message": "replaced (singleton)"}
                )
            keys.append(("singleton", key))
        return keys

    def _grouped_item(self, kind: str, fn: FunctionInfo, key: str) -> QueueItem | None:
        for item in self._items.values():
            if item.kind == kind and item.payload["function_id"] == fn.id and item.payload["key"] == key:
                return item
        return None

    def _debounce(self, fn: FunctionInfo, event: dict[str, Any]) -> None:
        """Delay the run until ``period`` passes without another event (or ``timeout`` since the first)."""
        config = fn.config.debounce
        assert config is not None
        now = self.clock.now()
        key = expressions.evaluate_key(config.key, event=event) if config.key else ""
        period = _seconds(config.period, 1.0)
        item = self._grouped_item(DEBOUNCE, fn, key)
        if item is None:
            payload = {"function_id": fn.id, "key": key, "event": event, "first_at": now}
            self._enqueue(DEBOUNCE, None, now + period, payload)
            return
        due = now + period
        if config.timeout:
            due = min(due, item.payload["first_at"] + _seconds(config.timeout, period))
        item.payload["event"] = event
        item.due_at = due
        self.db.execute(
            "UPDATE queue SET due_at=?, payload=? WHERE id=?", (due, dumps(item.payload), item.id)
        )
        self._schedule(item)

    def _batch(self, fn: FunctionInfo, event: dict[str, Any]) -> None:
        """Collect events into one run: at ``maxSize`` events, or ``timeout`` after the first."""
        config = fn.config.batchEvents
        assert config is not None
        if config.if_ and not expressions.matches(config.if_, event=event):
            self._create_run(fn, [event])
            return
        now = self.clock.now()
        key = expressions.evaluate_key(config.key, event=event) if config.key else ""
        item = self._grouped_item(BATCH, fn, key)
        if item is None:
            payload = {"function_id": fn.id, "key": key, "events": [event]}
            item = self._enqueue(BATCH, None, now + _seconds(config.timeout, 1.0), payload)
        else:
            item.payload["events"].append(event)
            self.db.execute("UPDATE queue SET payload=? WHERE id=?", (dumps(item.payload), item.id))
        if len(item.payload["events"]) >= config.maxSize:
            self._delete_item(item)
            self._create_run(fn, item.payload["events"])

    def _emit(self, name: str, data: dict[str, Any], target: FunctionInfo | None = None) -> dict[str, Any]:
        event = {
            "name": name,
            "data": data,
            "id": new_id(),
            "ts": int(self.clock.now() * 1000),
            "user": {},
        }
        self._ingest(event, target)
        return event

    def _match_waits(self, event: dict[str, Any]) -> None:
        name = event["name"]
        for wait in list(self._waits_by_event.get(name, {}).values()):
            run = self.runs.get(wait.run_id)
            if run is None:
                self._drop_wait(wait)
                continue
            if not expressions.matches(wait.payload.get("if"), event=run.events[0], async_event=event):
                continue
            self._drop_wait(wait)
            if wait.kind == "wait":
                self._resolve_step(run, wait.payload["step_id"], event, "WaitForEvent")
            elif wait.kind == "cancel":
                self._finish_run(
                    run,
                    CANCELLED,
                    error={"name": "Cancelled", "message": f"cancelled by event {name} ({event['id']})"},
                )
        if name == protocol.EVENT_FUNCTION_FINISHED:
            correlation = event["data"].get("correlation_id")
            invoke_wait = self._invoke_waits.get(str(correlation)) if correlation else None
            if invoke_wait is not None:
                run = self.runs.get(invoke_wait.run_id)
                self._drop_wait(invoke_wait)
                if run is not None:
                    data = event["data"]
                    memo = (
                        {"error": data["error"]}
                        if data.get("error") is not None
                        else {"data": data.get("result")}
                    )
                    self._resolve_step(run, invoke_wait.payload["step_id"], memo, "InvokeFunction")

    # ------------------------------------------------------------------ runs

    def _create_run(
        self, fn: FunctionInfo, events: list[dict[str, Any]], keys: Iterable[tuple[str, str]] = ()
    ) -> RunState:
        now = self.clock.now()
        run = RunState(new_id(), fn.id, events, RUNNING, now)
        meta = events[0].get("data", {}).get("_inngest")
        if events[0]["name"] == protocol.EVENT_FUNCTION_INVOKED and isinstance(meta, dict):
            run.correlation_id = meta.get("correlation_id")
        self.db.execute(
            "INSERT INTO runs(id, function_id, event_id, events, status, created_at, state)"
            " VALUES (?,?,?,?,?,?,?)",
            (run.id, fn.id, events[0]["id"], dumps(events), RUNNING, now, run.state_json()),
        )
        self.runs[run.id] = run
        for kind, key in keys:
            self.db.execute(
                "INSERT INTO run_keys(run_id, function_id, kind, key, created_at) VALUES (?,?,?,?,?)",
                (run.id, fn.id, kind, key, now),
            )
        if fn.config.timeouts and fn.config.timeouts.finish:
            try:
                finish = protocol.parse_duration(fn.config.timeouts.finish).total_seconds()
                self._enqueue(RUN_TIMEOUT, run.id, now + finish, {})
            except ValueError:
                log.warning("function %s: ignoring invalid timeouts.finish", fn.id)
        self._enqueue(CALL, run.id, self._throttled_start(fn, run, now), {"step_id": "step", "attempt": 0})
        for cancel in fn.config.cancel or []:
            timer_id = None
            wait_id = new_id()
            if cancel.timeout:
                try:
                    due = now + min(
                        protocol.parse_duration(cancel.timeout).total_seconds(), MAX_TIMER_SECONDS
                    )
                except ValueError:
                    due = now + MAX_TIMER_SECONDS
                timer_id = self._enqueue(CANCEL_TIMEOUT, run.id, due, {"wait_id": wait_id}).id
            self._add_wait(
                Wait(wait_id, run.id, "cancel", cancel.event, {"if": cancel.if_, "timer_id": timer_id})
            )
        return run

    def _throttled_start(self, fn: FunctionInfo, run: RunState, now: float) -> float:
        """When the run may start: at most ``limit`` (+ ``burst``) starts per ``period`` per key."""
        config = fn.config.throttle
        if config is None or config.limit <= 0:
            return now
        key = expressions.evaluate_key(config.key, event=run.events[0]) if config.key else ""
        period = _seconds(config.period, 60.0)
        allowed = config.limit + max(0, config.burst or 0)
        starts = [
            row[0]
            for row in self.db.all(
                "SELECT created_at FROM run_keys WHERE function_id=? AND kind='throttle' AND key=?"
                " AND created_at>? ORDER BY created_at",
                (fn.id, key, now - period),
            )
        ]
        start = now if len(starts) < allowed else max(now, starts[len(starts) - allowed] + period)
        self.db.execute(
            "INSERT INTO run_keys(run_id, function_id, kind, key, created_at) VALUES (?,?,?,?,?)",
            (run.id, fn.id, "throttle", key, start),
        )
        return start

    def _finish_run(
        self, run: RunState, status: str, *, output: Any = None, error: dict[str, Any] | None = None
    ) -> None:
        db = self.db
        now = self.clock.now()
        run.status = status
        db.execute(
            "UPDATE runs SET status=?, output=?, error=?, ended_at=?, state=? WHERE id=?",
            (
                status,
                dumps(output) if status == COMPLETED else None,
                dumps(error) if error is not None else None,
                now,
                run.state_json(),
                run.id,
            ),
        )
        for item_id in list(self._run_items.get(run.id, ())):
            self._unschedule(item_id)
        db.execute("DELETE FROM queue WHERE run_id=?", (run.id,))
        for wait_id in list(self._run_waits.get(run.id, ())):
            self._drop_wait(self._waits[wait_id], delete=False)
        db.execute("DELETE FROM waits WHERE run_id=?", (run.id,))
        self.runs.pop(run.id, None)
        data: dict[str, Any] = {
            "function_id": run.function_id,
            "run_id": run.id,
            "event": run.events[0],
            "events": run.events,
        }
        if run.correlation_id:
            data["correlation_id"] = run.correlation_id
        if status == COMPLETED:
            data["result"] = output
        else:
            data["error"] = error or {"name": "Error", "message": status.lower()}
        data["_inngest"] = {"status": status, "run_id": run.id, "function_id": run.function_id}
        if status == FAILED:
            self._emit(protocol.EVENT_FUNCTION_FAILED, dict(data))
        elif status == CANCELLED:
            self._emit(protocol.EVENT_FUNCTION_CANCELLED, dict(data))
        self._emit(protocol.EVENT_FUNCTION_FINISHED, data)
        self.stats["runs_finished"] += 1
        event_id = run.events[0].get("id")
        for listener in self._listeners:
            try:
                listener(run.id, status, event_id)
            except Exception:
                log.exception("run listener failed")
        for future in self._run_waiters.pop(run.id, []):
            if not future.done():
                future.set_result(status)
        if status == FAILED:
            log.info("run %s of %s failed: %s", run.id, run.function_id, (error or {}).get("message"))

    def cancel_run(self, run_id: str) -> str:
        run = self.runs.get(run_id)
        if run is None:
            row = self.db.one("SELECT status FROM runs WHERE id=?", (run_id,))
            if row is None:
                raise EngineError(f"run {run_id} not found", 404)
            return str(row[0])
        with self._tx():
            self._finish_run(run, CANCELLED, error={"name": "Cancelled", "message": "cancelled via the API"})
        return CANCELLED

    def _store_memo(
        self,
        run: RunState,
        step_id: str,
        memo: Any,
        *,
        name: str | None,
        op: str,
        started: float | None = None,
        ended: float | None = None,
    ) -> bool:
        if step_id in run.memos:
            return False
        run.memos[step_id] = memo
        run.stack.append(step_id)
        begun = run.started.pop(step_id, None)
        self.db.execute(
            "INSERT OR IGNORE INTO steps(run_id, id, position, name, op, memo, started_at, ended_at)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (
                run.id,
                step_id,
                len(run.stack) - 1,
                name,
                op,
                dumps(memo),
                started if started is not None else begun,
                ended if ended is not None else self.clock.now(),
            ),
        )
        return True

    def _save_run(self, run: RunState) -> None:
        self.db.execute("UPDATE runs SET state=? WHERE id=?", (run.state_json(), run.id))

    def _discover(self, run: RunState) -> None:
        """Schedule a discovery call once nothing planned or waiting is outstanding."""
        if run.pending:
            return
        run.force_plan = False
        self._enqueue(CALL, run.id, self.clock.now(), {"step_id": "step", "attempt": 0})

    def _resolve_step(self, run: RunState, step_id: str, memo: Any, op: str) -> None:
        """A sleep, wait or invoke finished: store its memo, then continue the run."""
        self._store_memo(run, step_id, memo, name=run.names.pop(step_id, None), op=op)
        run.pending.discard(step_id)
        self._discover(run)
        self._save_run(run)

    # ------------------------------------------------------------------ queue and timers

    def _enqueue(self, kind: str, run_id: str | None, due: float, payload: dict[str, Any]) -> QueueItem:
        item = QueueItem(new_id(), run_id, kind, due, payload)
        self.db.execute(
            "INSERT INTO queue(id, run_id, kind, due_at, payload, generation) VALUES (?,?,?,?,?,?)",
            (item.id, run_id, kind, due, dumps(payload), item.generation),
        )
        self._schedule(item)
        return item

    def _schedule(self, item: QueueItem) -> None:
        self._items[item.id] = item
        if item.run_id:
            self._run_items.setdefault(item.run_id, set()).add(item.id)
        self._seq += 1
        heapq.heappush(self._heap, (item.due_at, self._seq, item.id))
        if self._wake is not None:
            self._wake.set()

    def _delete_item(self, item: QueueItem) -> None:
        self._unschedule(item.id)
        self.db.execute("DELETE FROM queue WHERE id=?", (item.id,))

    def _unschedule(self, item_id: str) -> None:
        """Forget an item in memory (its heap entry is skipped when popped)."""
        item = self._items.pop(item_id, None)
        if item is not None and item.run_id:
            ids = self._run_items.get(item.run_id)
            if ids is not None:
                ids.discard(item_id)
                if not ids:
                    del self._run_items[item.run_id]

    def fire_timers(self, *, run_id: str | None = None, kinds: Iterable[str] | None = None) -> int:
        """Make pending timers due now (sleeps, wait/invoke timeouts, retry backoff by default)."""
        wanted = set(kinds) if kinds is not None else set(FIRE_DEFAULT_KINDS)
        now = self.clock.now()
        due = [
            item
            for item in self._items.values()
            if item.kind in wanted
            and item.due_at > now
            and (run_id is None or item.run_id == run_id)
            and item.id not in self._inflight
        ]
        if not due:
            return 0
        with self._tx():
            for item in due:
                item.due_at = now
                self.db.execute("UPDATE queue SET due_at=? WHERE id=?", (now, item.id))
                self._schedule(item)
        return len(due)

    def pending_timers(self) -> list[dict[str, Any]]:
        return [
            {"id": i.id, "run_id": i.run_id, "kind": i.kind, "due_at": _iso(i.due_at)}
            for i in sorted(self._items.values(), key=lambda i: i.due_at)
            if i.id not in self._inflight
        ]

    async def _dispatch_loop(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = self.clock.now()
            while self._heap and self._heap[0][0] <= now:
                due, _, item_id = heapq.heappop(self._heap)
                item = self._items.get(item_id)
                if item is None or item.due_at != due or item_id in self._inflight:
                    continue
                try:
                    self._run_item(item)
                except Exception:
                    log.exception("processing queue item %s (%s) failed", item.id, item.kind)
            handle = None
            if self._heap:
                timeout = self.clock.wait_timeout(self._heap[0][0])
                if timeout is not None:
                    handle = loop.call_later(timeout, self._wake.set)
            await self._wake.wait()
            if handle is not None:
                handle.cancel()

    def _run_item(self, item: QueueItem) -> None:
        if item.kind == CALL:
            self._start_call(item)
            return
        with self._tx():
            self._delete_item(item)
            run = self.runs.get(item.run_id) if item.run_id else None
            if item.kind == CRON:
                self._fire_cron(item)
            elif item.kind in (DEBOUNCE, BATCH):
                fn = self.functions.get(item.payload["function_id"])
                if fn is not None:
                    events = [item.payload["event"]] if item.kind == DEBOUNCE else item.payload["events"]
                    self._create_run(fn, events)
            elif run is None:
                return
            elif item.kind == SLEEP:
                self._resolve_step(run, item.payload["step_id"], None, "Sleep")
            elif item.kind in (WAIT_TIMEOUT, INVOKE_TIMEOUT):
                wait = self._waits.get(item.payload["wait_id"])
                if wait is None:
                    return
                self._drop_wait(wait)
                if item.kind == WAIT_TIMEOUT:
                    self._resolve_step(run, item.payload["step_id"], None, "WaitForEvent")
                else:
                    memo = {
                        "error": {
                            "name": "InngestInvokeTimeoutError",
                            "message": "Timed out waiting for invoked function to complete",
                        }
                    }
                    self._resolve_step(run, item.payload["step_id"], memo, "InvokeFunction")
            elif item.kind == RUN_TIMEOUT:
                error = {"name": "FunctionTimeout", "message": "the run exceeded timeouts.finish"}
                self._finish_run(run, CANCELLED, error=error)
            elif item.kind == CANCEL_TIMEOUT:
                wait = self._waits.get(item.payload["wait_id"])
                if wait is not None:
                    self._drop_wait(wait)

    # ------------------------------------------------------------------ waits

    def _add_wait(self, wait: Wait) -> None:
        self.db.execute(
            "INSERT INTO waits(id, run_id, kind, event_name, payload, created_at) VALUES (?,?,?,?,?,?)",
            (wait.id, wait.run_id, wait.kind, wait.event_name, dumps(wait.payload), self.clock.now()),
        )
        self._index_wait(wait)

    def _index_wait(self, wait: Wait) -> None:
        self._waits[wait.id] = wait
        self._run_waits.setdefault(wait.run_id, set()).add(wait.id)
        if wait.kind == "invoke":
            self._invoke_waits[str(wait.payload.get("correlation_id"))] = wait
        elif wait.event_name:
            self._waits_by_event.setdefault(wait.event_name, {})[wait.id] = wait

    def _drop_wait(self, wait: Wait, *, delete: bool = True) -> None:
        self._waits.pop(wait.id, None)
        ids = self._run_waits.get(wait.run_id)
        if ids is not None:
            ids.discard(wait.id)
            if not ids:
                del self._run_waits[wait.run_id]
        if wait.kind == "invoke":
            self._invoke_waits.pop(str(wait.payload.get("correlation_id")), None)
        elif wait.event_name:
            bucket = self._waits_by_event.get(wait.event_name)
            if bucket is not None:
                bucket.pop(wait.id, None)
                if not bucket:
                    del self._waits_by_event[wait.event_name]
        if delete:
            self.db.execute("DELETE FROM waits WHERE id=?", (wait.id,))
            timer_id = wait.payload.get("timer_id")
            if timer_id and timer_id in self._items:
                self._delete_item(self._items[timer_id])

    # ------------------------------------------------------------------ cron

    def _reconcile_crons(self) -> None:
        wanted = {(fn.id, expr) for fn in self.functions.values() for expr in fn.crons}
        existing: set[tuple[str, str]] = set()
        for item in [i for i in self._items.values() if i.kind == CRON]:
            key = (item.payload["function_id"], item.payload["cron"])
            if key in wanted and key not in existing:
                existing.add(key)
            else:
                self._delete_item(item)
        now = self.clock.now()
        for fid, expr in sorted(wanted - existing):
            self._enqueue(CRON, None, next_cron_time(expr, now), {"function_id": fid, "cron": expr})

    def _fire_cron(self, item: QueueItem) -> None:
        fid, expr = item.payload["function_id"], item.payload["cron"]
        fn = self.functions.get(fid)
        if fn is None or expr not in fn.crons:
            return
        now = self.clock.now()
        data = {"cron": expr, "scheduledAt": _iso(item.due_at), "fireAt": _iso(now)}
        self._emit(protocol.EVENT_SCHEDULED_TIMER, data, target=fn)
        self._enqueue(CRON, None, next_cron_time(expr, max(now, item.due_at)), dict(item.payload))

    # ------------------------------------------------------------------ the call loop

    def _concurrency_key(self, fn: FunctionInfo, run: RunState) -> tuple[str, str]:
        if not fn.concurrency_key:
            return (fn.id, "")
        return (fn.id, expressions.evaluate_key(fn.concurrency_key, event=run.events[0]))

    def _start_call(self, item: QueueItem) -> None:
        run = self.runs.get(item.run_id or "")
        fn = self.functions.get(run.function_id) if run else None
        slot: tuple[str, str] | None = None
        if run is not None and fn is not None and fn.concurrency_limit:
            slot = self._concurrency_key(fn, run)
            if self._slots.get(slot, 0) >= fn.concurrency_limit:
                self._parked.setdefault(slot, deque()).append(item)
                self._inflight[item.id] = item.generation
                return
            self._slots[slot] = self._slots.get(slot, 0) + 1
        self._inflight[item.id] = item.generation
        self._spawn(self._call(item, slot))

    def _release(self, slot: tuple[str, str] | None) -> None:
        if slot is None:
            return
        self._slots[slot] = max(0, self._slots.get(slot, 0) - 1)
        parked = self._parked.get(slot)
        while parked:
            item = parked.popleft()
            if item.id not in self._items:
                self._inflight.pop(item.id, None)
                continue
            self._slots[slot] += 1
            self._spawn(self._call(item, slot))
            break

    async def _call(self, item: QueueItem, slot: tuple[str, str] | None) -> None:
        try:
            await self._perform_call(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("call %s failed unexpectedly", item.id)
        finally:
            if self._inflight.get(item.id) == item.generation:
                del self._inflight[item.id]
            self._release(slot)

    def _build_call(self, item: QueueItem, run: RunState, fn: FunctionInfo) -> tuple[bytes, dict[str, str]]:
        step_id = item.payload["step_id"]
        attempt = int(item.payload.get("attempt", 0))
        request_id = new_id()
        ctx = {
            "fn_id": fn.uuid,
            "run_id": run.id,
            "env": "",
            "step_id": step_id,
            "attempt": attempt,
            "max_attempts": fn.max_attempts,
            "stack": {"stack": run.stack, "current": len(run.stack)},
            "qi_id": base64.b64encode(f"{item.id}::default".encode()).decode(),
            "request_id": request_id,
            "generation_id": item.generation,
            "job_id": item.id,
            "disable_immediate_execution": run.force_plan,
            "use_api": False,
        }
        body = {
            "event": run.events[0],
            "events": run.events,
            "steps": run.memos,
            "ctx": ctx,
            "version": run.version,
            "use_api": False,
            "defers": {},
        }
        raw = signing.canonical_json(body)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "x-request-id": request_id,
            "x-inngest-generation-id": str(item.generation),
            "x-inngest-job-id": item.id,
            "X-Run-ID": run.id,
            "X-Inngest-Step-ID": step_id,
            "x-inngest-req-version": str(run.version),
        }
        if self.signing_key:
            headers[protocol.Header.SIGNATURE] = signing.sign(raw, self.signing_key)
        return raw, headers

    async def _perform_call(self, item: QueueItem) -> None:
        run = self.runs.get(item.run_id or "")
        if run is None:
            with self._tx():
                self._delete_item(item)
            return
        fn = self.functions.get(run.function_id)
        if fn is None:
            with self._tx():
                self._delete_item(item)
                self._finish_run(
                    run,
                    FAILED,
                    error={
                        "name": "FunctionNotFound",
                        "message": f"function {run.function_id} is not registered any more; sync its app",
                    },
                )
            return
        raw, headers = self._build_call(item, run, fn)
        self.stats["calls"] += 1
        url = fn.call_url(item.payload["step_id"])
        started = self.clock.now()
        assert self.calls is not None
        status = 0
        reply_headers: Mapping[str, str] = {}
        content = b""
        transport_error: str | None = None
        try:
            response = await self.calls.post(url, raw, headers)
            status, reply_headers, content = response.status, response.headers, response.body
        except AppHttpError as exc:
            transport_error = f"could not reach the app at {url}: {exc}"
        if self._inflight.get(item.id) != item.generation or self._items.get(item.id) is not item:
            return  # the run ended or was re-dispatched meanwhile: a stale reply
        run = self.runs.get(run.id)
        if run is None:
            return
        with self._tx():
            self._delete_item(item)
            self._handle_reply(item, run, fn, status, reply_headers, content, transport_error, started)

    def _handle_reply(
        self,
        item: QueueItem,
        run: RunState,
        fn: FunctionInfo,
        status: int,
        headers: Mapping[str, str],
        content: bytes,
        transport_error: str | None,
        started: float,
    ) -> None:
        if transport_error is not None:
            self._function_error(
                item, run, fn, {"name": "AppUnreachable", "message": transport_error}, False, None
            )
            return
        no_retry = (headers.get("x-inngest-no-retry") or "").lower() == "true"
        retry_after = headers.get("retry-after")
        version = headers.get("x-inngest-req-version")
        if version and version.lstrip("-").isdigit():
            run.version = int(version)
        has_sdk = bool(headers.get("x-inngest-sdk"))
        body_value: Any = _NOT_JSON
        if status == 201:
            try:
                envelope = protocol_loads(content.strip())
                status = int(envelope["status"])
                inner = envelope.get("body")
                content = inner.encode() if isinstance(inner, str) else dumps(inner).encode()
                inner_headers = {str(k).lower(): str(v) for k, v in (envelope.get("headers") or {}).items()}
                no_retry = (
                    no_retry
                    or bool(envelope.get("noRetry"))
                    or inner_headers.get("x-inngest-no-retry") == "true"
                )
                retry_after = inner_headers.get("retry-after") or envelope.get("retryAt") or retry_after
            except (ValueError, KeyError, TypeError) as exc:
                self._function_error(
                    item,
                    run,
                    fn,
                    _garbage(status, content, f"a malformed stream envelope ({exc})"),
                    False,
                    None,
                )
                return
        if content.strip():
            try:
                body_value = protocol_loads(content)
            except ValueError:
                body_value = _NOT_JSON
        elif status == 200:
            body_value = None
        if 200 <= status < 300:
            if not has_sdk:
                self._function_error(
                    item,
                    run,
                    fn,
                    _garbage(
                        status, content, "no X-Inngest-SDK header (is this URL an Inngest serve endpoint?)"
                    ),
                    False,
                    None,
                )
                return
            if body_value is _NOT_JSON:
                self._function_error(
                    item, run, fn, _garbage(status, content, "a body that is not JSON"), False, None
                )
                return
            if status == 206:
                ops = body_value if isinstance(body_value, list) else [body_value] if body_value else []
                self._apply_ops(item, run, fn, ops, no_retry, retry_after, started)
            else:
                self._finish_run(run, COMPLETED, output=body_value)
            return
        if isinstance(body_value, dict) and (body_value.get("message") or body_value.get("name")):
            error = dict(body_value)
            error.setdefault("name", "Error")
            error.setdefault("message", f"the app answered {status}")
        elif isinstance(body_value, dict) and body_value.get("error"):
            error = {"name": "Error", "message": str(body_value["error"])}
        else:
            error = _garbage(status, content, "an error")
        self._function_error(item, run, fn, error, no_retry, retry_after)

    def _retry_delay(self, retry_after: str | None) -> float:
        if retry_after:
            value = retry_after.strip()
            seconds: float | None = None
            if len(value) <= 7 and value.isdigit():
                seconds = float(value)
            else:
                try:
                    seconds = protocol.parse_datetime(value).timestamp() - self.clock.now()
                except ValueError:
                    try:
                        seconds = parsedate_to_datetime(value).timestamp() - self.clock.now()
                    except (TypeError, ValueError):
                        seconds = None
            if seconds is not None:
                return min(max(seconds, 1.0), 86400.0)
        return self.retry_interval

    def _function_error(
        self,
        item: QueueItem,
        run: RunState,
        fn: FunctionInfo,
        error: dict[str, Any],
        no_retry: bool,
        retry_after: str | None,
    ) -> None:
        attempt = int(item.payload.get("attempt", 0))
        if not no_retry and attempt + 1 < fn.max_attempts:
            due = self.clock.now() + self._retry_delay(retry_after)
            self._enqueue(CALL, run.id, due, {"step_id": item.payload["step_id"], "attempt": attempt + 1})
            self._save_run(run)
            log.info("run %s: attempt %d failed (%s); retrying", run.id, attempt, error.get("message"))
            return
        self._finish_run(run, FAILED, error=error)

    def _apply_ops(
        self,
        item: QueueItem,
        run: RunState,
        fn: FunctionInfo,
        raw_ops: list[Any],
        no_retry: bool,
        retry_after: str | None,
        started: float,
    ) -> None:
        try:
            ops = [protocol.GeneratorOp.model_validate(op) for op in raw_ops]
        except ValidationError as exc:
            self._function_error(
                item,
                run,
                fn,
                {"name": "InvalidOps", "message": f"the app answered 206 with invalid ops: {exc}"},
                False,
                None,
            )
            return
        now = self.clock.now()
        step_id = item.payload["step_id"]
        attempt = int(item.payload.get("attempt", 0))
        order = {
            "WaitForEvent": 0,
            "StepRun": 1,
            "Step": 1,
            "StepFailed": 1,
            "StepError": 2,
            "RunComplete": 9,
        }
        ops.sort(key=lambda o: order.get(o.op, 5))
        discover = False
        retried = False
        complete: tuple[bool, Any] = (False, None)
        new_pending: list[str] = []
        for op in ops:
            name = op.displayName or op.name
            if op.op in ("StepRun", "Step"):
                timing = op.timing or {}
                begun = ended = None
                if isinstance(timing.get("a"), (int, float)):
                    begun = timing["a"] / 1e9
                    ended = begun + float(timing.get("b") or 0) / 1e9
                self._store_memo(
                    run,
                    op.id,
                    {"data": op.data if op.has_data else None},
                    name=name,
                    op="StepRun",
                    started=begun if begun is not None else started,
                    ended=ended if ended is not None else now,
                )
                discover = True
            elif op.op in ("StepError", "StepFailed"):
                error = dict(op.error or {"name": "Error", "message": "step failed"})
                final = op.op == "StepFailed" or no_retry or bool(error.get("noRetry"))
                if not final and attempt + 1 < fn.max_attempts:
                    due = now + self._retry_delay(retry_after)
                    self._enqueue(CALL, run.id, due, {"step_id": step_id, "attempt": attempt + 1})
                    retried = True
                    continue
                self._store_memo(
                    run, op.id, {"error": error}, name=name, op="StepFailed", started=started, ended=now
                )
                discover = True
            elif op.op == "StepPlanned":
                if op.id in run.memos:
                    discover = True
                    continue
                new_pending.append(op.id)
                run.started[op.id] = now
                run.names[op.id] = name or op.id
                self._enqueue(CALL, run.id, now, {"step_id": op.id, "attempt": 0})
            elif op.op == "Sleep":
                opts = op.opts or {}
                text = str(opts.get("duration") or op.name or "")
                try:
                    target = protocol.parse_sleep_target(text, datetime.fromtimestamp(now, timezone.utc))
                except ValueError:
                    self._finish_run(
                        run,
                        FAILED,
                        error={"name": "InvalidSleep", "message": f"invalid sleep duration {text!r}"},
                    )
                    return
                due = min(target.timestamp(), now + MAX_TIMER_SECONDS)
                new_pending.append(op.id)
                run.started[op.id] = now
                run.names[op.id] = name or op.id
                self._enqueue(SLEEP, run.id, due, {"step_id": op.id})
            elif op.op == "WaitForEvent":
                opts = op.opts or {}
                event_name = opts.get("event") or op.name
                expression = opts.get("if") or None
                if expression:
                    try:
                        expressions.check(expression)
                    except expressions.ExpressionError as exc:
                        self._finish_run(
                            run, FAILED, error={"name": "InvalidExpression", "message": str(exc)}
                        )
                        return
                timeout = str(opts.get("timeout") or "")
                try:
                    seconds = protocol.parse_duration(timeout).total_seconds() if timeout else 0.0
                except ValueError:
                    try:
                        seconds = protocol.parse_datetime(timeout).timestamp() - now
                    except ValueError:
                        self._finish_run(
                            run,
                            FAILED,
                            error={"name": "InvalidTimeout", "message": f"invalid wait timeout {timeout!r}"},
                        )
                        return
                wait_id = new_id()
                timer = self._enqueue(
                    WAIT_TIMEOUT,
                    run.id,
                    now + min(max(seconds, 0.0), MAX_TIMER_SECONDS),
                    {"wait_id": wait_id, "step_id": op.id},
                )
                self._add_wait(
                    Wait(
                        wait_id,
                        run.id,
                        "wait",
                        str(event_name),
                        {"step_id": op.id, "if": expression, "timer_id": timer.id},
                    )
                )
                new_pending.append(op.id)
                run.started[op.id] = now
                run.names[op.id] = name or op.id
            elif op.op == "InvokeFunction":
                new_pending.append(op.id)
                run.started[op.id] = now
                run.names[op.id] = name or op.id
                self._invoke(run, fn, op, now)
            elif op.op == "RunComplete":
                complete = (True, op.data)
            elif op.op == "DiscoveryRequest":
                discover = True
            elif op.op == "None":
                continue
            else:
                self._finish_run(
                    run,
                    FAILED,
                    error={
                        "name": "UnsupportedOp",
                        "message": f"op {op.op} is not supported by eagerstep dev",
                    },
                )
                return
            if run.status != RUNNING:
                return
        if run.status != RUNNING:
            return
        if complete[0]:
            self._finish_run(run, COMPLETED, output=complete[1])
            return
        if step_id != "step" and not retried:
            run.pending.discard(step_id)
            discover = True
        run.pending.update(new_pending)
        if len(new_pending) > 1:
            run.force_plan = True
        if discover and not retried:
            self._discover(run)
        elif not retried and not new_pending and not run.pending:
            # Nothing ran, nothing is planned or waiting: without this the run would hang forever.
            error = {
                "name": "NoProgress",
                "message": "the app answered 206 without any op the run can continue from",
            }
            self._function_error(item, run, fn, error, False, None)
            return
        self._save_run(run)

    def _invoke(self, run: RunState, fn: FunctionInfo, op: protocol.GeneratorOp, now: float) -> None:
        opts = op.opts or {}
        target_id = str(opts.get("function_id") or "")
        payload = opts.get("payload") or {}
        target = self.functions.get(target_id)
        if target is None:
            memo = {
                "error": {
                    "name": "Error",
                    "message": f"cannot invoke {target_id!r}: no such function is registered;"
                    " sync the app serving it",
                }
            }
            self._store_memo(run, op.id, memo, name=op.displayName or op.name, op="InvokeFunction")
            return
        timeout = str(opts.get("timeout") or "")
        try:
            seconds = protocol.parse_duration(timeout).total_seconds() if timeout else MAX_TIMER_SECONDS
        except ValueError:
            seconds = MAX_TIMER_SECONDS
        correlation_id = f"{run.id}.{op.id}"
        wait_id = new_id()
        timer = self._enqueue(
            INVOKE_TIMEOUT,
            run.id,
            now + min(seconds, MAX_TIMER_SECONDS),
            {"wait_id": wait_id, "step_id": op.id},
        )
        self._add_wait(
            Wait(
                wait_id,
                run.id,
                "invoke",
                None,
                {"step_id": op.id, "correlation_id": correlation_id, "timer_id": timer.id},
            )
        )
        data = dict(payload.get("data") or {})
        data["_inngest"] = {
            "fn_id": target_id,
            "correlation_id": correlation_id,
            "source_app_id": fn.app_url,
            "source_fn_id": fn.uuid,
            "source_fn_v": 1,
            "expire": int((now + seconds) * 1000),
            "gid": new_id(),
            "name": protocol.EVENT_FUNCTION_INVOKED,
        }
        event: dict[str, Any] = {
            "name": protocol.EVENT_FUNCTION_INVOKED,
            "data": data,
            "id": new_id(),
            "ts": int(now * 1000),
            "user": payload.get("user") or {},
        }
        if payload.get("v"):
            event["v"] = payload["v"]
        self._ingest(event, target)

    # ------------------------------------------------------------------ checkpoint API

    def checkpoint(self, run_id: str, raw: Any) -> None:
        """``POST /v1/checkpoint/{run_id}/async`` (protocol.md §6.3.1)."""
        self.stats["checkpoints"] += 1
        try:
            request = protocol.CheckpointRequest.model_validate(raw)
        except ValidationError as exc:
            raise EngineError(f"invalid checkpoint body: {exc}") from exc
        for op in request.steps:
            if op.op not in protocol.SYNC_OPCODES:
                raise EngineError(f"cannot checkpoint async steps (got op {op.op})")
        run = self.runs.get(run_id)
        if run is None:
            row = self.db.one("SELECT status FROM runs WHERE id=?", (run_id,))
            if row is None:
                raise EngineError(f"run {run_id} not found")
            return  # the run already ended: nothing to record
        item = self._item_for_qi(request.qi_id)
        if (
            request.generation_id
            and item is not None
            and item.run_id == run_id
            and item.generation != request.generation_id
        ):
            raise EngineError(
                f"stale dispatch: generation {request.generation_id} != current {item.generation}", 409
            )
        now = self.clock.now()
        with self._tx():
            for op in request.steps:
                if op.op in ("StepRun", "Step"):
                    timing = op.timing or {}
                    begun = timing["a"] / 1e9 if isinstance(timing.get("a"), (int, float)) else None
                    ended = begun + float(timing.get("b") or 0) / 1e9 if begun is not None else now
                    self._store_memo(
                        run,
                        op.id,
                        {"data": op.data if op.has_data else None},
                        name=op.displayName or op.name,
                        op="StepRun",
                        started=begun,
                        ended=ended,
                    )
            if item is not None and item.run_id == run_id and item.payload.get("attempt"):
                item.payload["attempt"] = 0
                self.db.execute("UPDATE queue SET payload=? WHERE id=?", (dumps(item.payload), item.id))

    def _item_for_qi(self, qi_id: str | None) -> QueueItem | None:
        if not qi_id:
            return None
        try:
            decoded = base64.b64decode(qi_id + "=" * (-len(qi_id) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return self._items.get(decoded.split("::", 1)[0])

    # ------------------------------------------------------------------ state and inspection APIs

    def run_actions(self, run_id: str) -> dict[str, Any]:
        return inspection.run_actions(self.db, self.runs.get(run_id), run_id)

    def run_batch(self, run_id: str) -> list[Any]:
        return inspection.run_batch(self.db, run_id)

    def get_run(self, run_id: str) -> dict[str, Any]:
        return inspection.get_run(self.db, self.runs.get(run_id), run_id)

    def event_runs(self, event_id: str) -> list[dict[str, Any]]:
        return inspection.event_runs(self.db, event_id)

    def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        return inspection.list_runs(self.db, limit)

    def get_event(self, event_id: str) -> dict[str, Any]:
        return inspection.get_event(self.db, event_id)


class _EngineTx:
    """``with engine._tx():`` one SQLite transaction; on failure, memory is rebuilt from the file."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.cm: Any = None

    def __enter__(self) -> None:
        self.cm = self.engine.db.tx()
        self.cm.__enter__()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        nested = self.engine.db._depth > 1
        self.cm.__exit__(exc_type, exc, tb)
        if exc_type is not None and not nested:
            log.error("a state change failed and was rolled back; reloading state: %r", exc)
            self.engine._load()


class _NotJson:
    pass


_NOT_JSON: Any = _NotJson()


def protocol_loads(content: bytes) -> Any:
    import json

    return json.loads(content)


def _garbage(status: int, content: bytes, what: str) -> dict[str, Any]:
    snippet = content[:200].decode("utf-8", "replace")
    return {"name": "BadResponse", "message": f"the app answered {status} with {what}: {snippet!r}"}


def _strip_query_param(url: str, name: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(pairs), parts.fragment))
