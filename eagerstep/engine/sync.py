"""App sync: ``POST /fn/register``, asking an app to sync (``PUT``), and the stored functions."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from pydantic import ValidationError

from eagerstep.core import protocol, signing
from eagerstep.engine import expressions
from eagerstep.engine.model import (
    _APP_NAMESPACE,
    _FN_NAMESPACE,
    SERVER_KIND,
    EngineError,
    FunctionInfo,
    _iso,
    next_cron_time,
)
from eagerstep.engine.store import dumps, loads

if TYPE_CHECKING:
    from eagerstep.engine.engine import Engine

log = logging.getLogger("eagerstep.engine")

#: Syncing an app at start (``eagerstep dev -u URL``): the first retry after 0.2 s, doubling up to
#: 30 s, 20 attempts in all (about 7 minutes), then the dashboard's Resync button.
SYNC_FIRST_DELAY = 0.2
SYNC_MAX_DELAY = 30.0
SYNC_MAX_ATTEMPTS = 20


def _strip_query_param(url: str, name: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(pairs), parts.fragment))


def _sync_state(sync: dict[str, Any] | None) -> dict[str, Any]:
    sync = sync or {}
    return {
        "last_sync_attempt_at": sync.get("attempted_at"),
        "last_sync_error": sync.get("error"),
        "sync_failures": sync.get("failures", 0),
        "next_sync_retry_at": sync.get("next_retry_at"),
    }


class AppRegistry:
    """Synced apps and their functions (``engine.functions``), in memory and in SQLite."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self) -> None:
        functions = self.engine.functions
        functions.clear()
        for fid, fuuid, app_url, config in self.engine.db.all(
            "SELECT id, uuid, app_url, config FROM functions"
        ):
            try:
                cfg = protocol.FunctionConfig.model_validate(loads(config))
                functions[fid] = FunctionInfo.build(fuuid, app_url, cfg)
            except (ValidationError, EngineError) as exc:
                log.warning("skipping stored function %s: %s", fid, exc)

    def register(self, raw: Any, headers: Mapping[str, str]) -> dict[str, Any]:
        """Handle ``POST /fn/register``; ``headers`` keys are lower-case."""
        engine = self.engine
        expected = headers.get("x-inngest-expected-server-kind")
        if expected and expected.lower() != SERVER_KIND:
            raise EngineError(
                f"this is a dev server (eagerstep dev) but the app expected a {expected} server;"
                " set INNGEST_DEV=1 (or point the app at this server) and sync again"
            )
        engine.check_auth(headers.get("authorization"))
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
                        next_cron_time(trigger.cron, engine.clock.now())
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
        db, functions = engine.db, engine.functions
        row = db.one("SELECT checksum FROM apps WHERE url=?", (app_url,))
        modified = row is None or row[0] != checksum
        with engine.transaction():
            db.execute(
                "INSERT INTO apps(url, name, sdk, framework, checksum, synced_at) VALUES (?,?,?,?,?,?)"
                " ON CONFLICT(url) DO UPDATE SET name=excluded.name, sdk=excluded.sdk,"
                " framework=excluded.framework, checksum=excluded.checksum, synced_at=excluded.synced_at",
                (app_url, request.appName, request.sdk, request.framework, checksum, engine.clock.now()),
            )
            for fid in [f.id for f in functions.values() if f.app_url == app_url and f.id not in seen]:
                db.execute("DELETE FROM functions WHERE id=?", (fid,))
                del functions[fid]
            for info in infos:
                db.execute(
                    "INSERT INTO functions(id, uuid, app_url, config) VALUES (?,?,?,?)"
                    " ON CONFLICT(id) DO UPDATE SET app_url=excluded.app_url, config=excluded.config",
                    (info.id, info.uuid, app_url, dumps(info.config.to_wire())),
                )
                functions[info.id] = info
            engine.intake.index_triggers()
            engine.queue.reconcile_crons()
        engine.history.sync_attempted(app_url, None)
        log.info(
            "synced app %s (%s): %d function%s",
            request.appName,
            app_url,
            len(infos),
            "" if len(infos) == 1 else "s",
        )
        return {
            "ok": True,
            "modified": modified,
            "sync_id": str(uuid.uuid4()),
            "app_id": str(uuid.uuid5(_APP_NAMESPACE, app_url)),
        }

    async def sync_app(self, url: str, *, next_retry_in: float | None = None) -> tuple[int, Any]:
        """Ask the app at ``url`` to sync (``PUT url``); return its status and reply body. The
        outcome is recorded (the dashboard's apps page shows it); a transport error is re-raised."""
        engine = self.engine
        if engine.http is None:
            raise RuntimeError("the engine is not started")
        body = dumps({"url": url}).encode()
        headers = {"Content-Type": "application/json", protocol.Header.SERVER_KIND: SERVER_KIND}
        if engine.signing_key:
            headers[protocol.Header.SIGNATURE] = signing.sign(body, engine.signing_key)
        try:
            response = await engine.http.put(url, content=body, headers=headers, timeout=30.0)
        except httpx.HTTPError as exc:
            engine.history.sync_attempted(url, f"could not reach the app: {exc!r}", next_retry_in)
            raise
        try:
            reply: Any = response.json()
        except ValueError:
            reply = response.text
        if response.status_code < 300:
            engine.history.sync_attempted(url, None)
        else:
            text = reply if isinstance(reply, str) else dumps(reply)
            engine.history.sync_attempted(
                url, f"the app answered {response.status_code}: {text[:500]}", next_retry_in
            )
        return response.status_code, reply

    async def sync_until_reachable(
        self,
        url: str,
        *,
        first_delay: float = SYNC_FIRST_DELAY,
        max_delay: float = SYNC_MAX_DELAY,
        max_attempts: int = SYNC_MAX_ATTEMPTS,
    ) -> bool:
        """Sync the app at ``url``, retrying with exponential backoff (``max_attempts`` in all) while
        it is unreachable or answers an error; True once synced. Each new error is logged, and every
        attempt is recorded for the dashboard; giving up is logged as an error."""
        delay = first_delay
        last_error = ""
        for attempt in range(1, max_attempts + 1):
            retry_in = delay if attempt < max_attempts else None
            try:
                status, reply = await self.sync_app(url, next_retry_in=retry_in)
                if status < 300:
                    if attempt > 1:
                        log.info("synced %s after %d attempts", url, attempt)
                    return True
                error = f"the app answered {status}: {reply}"
            except httpx.HTTPError as exc:
                error = f"the app is not reachable ({exc!r})"
            if retry_in is None:
                break
            if error != last_error:
                log.warning(
                    "syncing %s failed (attempt %d of %d): %s; retrying in %.1fs",
                    url,
                    attempt,
                    max_attempts,
                    error,
                    retry_in,
                )
                last_error = error
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
        log.error(
            "syncing %s failed %d times; giving up: %s. Fix the app, then press Resync on the"
            " dashboard's apps page or run `eagerstep sync %s`",
            url,
            max_attempts,
            error,
            url,
        )
        return False

    def list_apps(self) -> list[dict[str, Any]]:
        functions = self.engine.functions
        syncs = self.engine.history.syncs()
        apps = []
        for url, name, sdk, framework, synced_at in self.engine.db.all(
            "SELECT url, name, sdk, framework, synced_at FROM apps ORDER BY name"
        ):
            apps.append(
                {
                    "url": url,
                    "name": name,
                    "sdk": sdk,
                    "framework": framework,
                    "synced_at": _iso(synced_at),
                    "functions": sorted(f.id for f in functions.values() if f.app_url == url),
                    **_sync_state(syncs.get(url)),
                }
            )
        return apps
