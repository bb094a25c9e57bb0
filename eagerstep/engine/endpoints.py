"""Durable endpoints (sync runs): ``POST /v1/checkpoint``, ``/v1/checkpoint/{run}/steps``, output
polling, and re-entering an endpoint through the app's own URL once its run has gone async.

A durable endpoint is an ordinary view of the app that runs its steps in the request and reports
them here. The run is created by the app (``POST /v1/checkpoint``), not by an event; the engine
only takes over when the view hands the run over (a step error to retry, a sleep, a wait...).
Then the engine calls the endpoint's own URL with the request that started the run (method,
body, query, content type) and ``X-Run-ID``, as the server's httpv2 "sync" driver does.

Runs of durable endpoints are ordinary runs of the engine's store: they show in run listings and on
the dashboard. Their function is made up from the request (``fn`` or ``"METHOD path"``, under the
app's domain) with deterministic ids, as the server does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from ulid import ULID

from eagerstep.core import protocol, safejson, signing
from eagerstep.engine.model import (
    _APP_NAMESPACE,
    CALL,
    COMPLETED,
    FAILED,
    RUN_TIMEOUT,
    RUNNING,
    USER_AGENT,
    EngineError,
    FunctionInfo,
    QueueItem,
    RunState,
    _iso,
    new_id,
)
from eagerstep.engine.ops import Op, parse_ops
from eagerstep.engine.store import FINAL_STATUSES, dumps, loads

if TYPE_CHECKING:
    from eagerstep.engine.engine import Engine

log = logging.getLogger("eagerstep.engine")

HTTP_REQUEST_EVENT = "inngest/http.request"
#: The runtime type marking a made-up endpoint function (the server's driver metadata ``type: sync``).
SYNC_RUNTIME = "sync"
#: How long ``GET .../output`` waits for the run to end (the server: 5 minutes, polling every 2 s).
OUTPUT_WAIT_SECONDS = 300.0
#: A sync run whose request never reports its response (the app died mid-request) fails after this
#: long; the server means to do the same ("API functions SHOULD automatically have a timeout after
#: 60 minutes"). A run that goes async is the orchestrator's from then on and loses the limit.
SYNC_RUN_TIMEOUT_SECONDS = 3600.0
#: Run claims, as the server's ``apiv1auth.CreateRunJWT``.
RUN_CLAIMS_ISSUER = "api.inngest.com"
RUN_CLAIMS_SUBJECT = "run-claim"
RUN_CLAIMS_EXPIRY = 3600
_STEP_OPS = frozenset({"StepRun", "Step"})


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class RunTokens:
    """HS256 JWTs granting read access to one run's output (``{iss, sub, exp, iat, Env, RunID}``)."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def create(self, run_id: str, now: float, subject: str = RUN_CLAIMS_SUBJECT) -> str:
        header = _b64(b'{"alg":"HS256","typ":"JWT"}')
        claims = {
            "iss": RUN_CLAIMS_ISSUER,
            "sub": subject,
            "exp": int(now) + RUN_CLAIMS_EXPIRY,
            "iat": int(now),
            "Env": str(uuid.UUID(int=0)),
            "RunID": run_id,
        }
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self.secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    def verify(self, token: str, now: float) -> str:
        """The run id the token grants; raises EngineError (401) when it is not valid."""
        try:
            header, payload, signature = token.split(".")
            expected = hmac.new(self.secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(signature)):
                raise ValueError("bad signature")
            if safejson.loads(_unb64(header)).get("alg") != "HS256":
                raise ValueError("bad algorithm")
            claims = safejson.loads(_unb64(payload))
            if claims.get("iss") != RUN_CLAIMS_ISSUER or claims.get("sub") != RUN_CLAIMS_SUBJECT:
                raise ValueError("not a run claim")
            if not isinstance(claims.get("exp"), int) or claims["exp"] < now:
                raise ValueError("expired")
            run_id = claims.get("RunID")
            if not isinstance(run_id, str):
                raise ValueError("no run id")
            return run_id
        except (ValueError, TypeError, AttributeError) as exc:
            raise EngineError(f"unable to find run with auth token: {exc}", 401) from exc


def _steps_of(raw: Mapping[str, Any]) -> tuple[list[Any], list[Op]]:
    """A sync checkpoint's ``steps``, as sent and parsed; EngineError (400) when they are not ops."""
    steps = raw.get("steps") or []
    if not isinstance(steps, list):
        raise EngineError('"steps" must be a list of ops')
    try:
        return steps, parse_ops(steps)
    except ValidationError as exc:
        raise EngineError(f"invalid ops in steps: {exc}") from exc


def _event_data(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise EngineError('"event" must be an object {"name": "inngest/http.request", "data": {...}}')
    data = raw.get("data")
    if not isinstance(data, dict):
        raise EngineError('"event.data" must be an object with domain, method and path')
    out: dict[str, str] = {}
    for key in ("domain", "method", "path", "fn", "ip", "content_type", "query_params", "body"):
        value = data.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            # the server decodes ``body`` as bytes; SDKs send the raw body as a string
            value = dumps(value)
        out[key] = value
    domain = urlsplit(out["domain"])
    if domain.scheme not in ("http", "https") or not domain.netloc:
        raise EngineError(f'"event.data.domain" must be an origin like "https://host", not {out["domain"]!r}')
    if not out["method"]:
        raise EngineError('"event.data.method" is required')
    return out


def fn_slug(data: Mapping[str, str]) -> str:
    return data.get("fn") or f"{data['method'].upper()} {data.get('path') or '/'}"


def app_uuid(domain: str) -> str:
    return str(uuid.uuid5(_APP_NAMESPACE, domain))


def fn_uuid(app_id: str, slug: str) -> str:
    return str(uuid.uuid5(uuid.UUID(app_id), slug))


def is_endpoint(fn: FunctionInfo) -> bool:
    step = fn.config.steps.get("step")
    return step is not None and step.runtime.type == SYNC_RUNTIME


class EndpointAPI:
    """The sync-run half of the checkpoint API, and the engine's calls into durable endpoints."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        key = engine.signing_key
        # Tokens outlive nothing but the signing key: with one, they survive restarts.
        secret = hashlib.sha256(b"eagerstep-run-claims:" + key.encode()).digest() if key else None
        self.tokens = RunTokens(secret or secrets.token_bytes(32))
        self.output_wait = OUTPUT_WAIT_SECONDS
        self.sync_timeout = SYNC_RUN_TIMEOUT_SECONDS

    # ------------------------------------------------------------------ POST /v1/checkpoint

    def create_run(self, raw: Any) -> dict[str, Any]:
        engine = self.engine
        if not isinstance(raw, dict):
            raise EngineError("the body must be a JSON object with run_id, event and steps")
        run_id = raw.get("run_id")
        try:
            run_id = str(ULID.from_str(str(run_id)))
        except ValueError as exc:
            raise EngineError(f'"run_id" must be a ULID, not {run_id!r}') from exc
        event_raw = raw.get("event")
        data = _event_data(event_raw)
        steps, ops = _steps_of(raw)
        retries = raw.get("retries")
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            retries = protocol.DEFAULT_RETRIES
        if engine.db.one("SELECT 1 FROM runs WHERE id=?", (run_id,)) is not None:
            raise EngineError("run already exists", 409)
        now = engine.clock.now()
        assert isinstance(event_raw, dict)
        event = {
            "name": str(event_raw.get("name") or HTTP_REQUEST_EVENT),
            "data": data,
            "id": str(event_raw.get("id") or new_id()),
            "ts": event_raw.get("ts") if isinstance(event_raw.get("ts"), int) else int(now * 1000),
            "user": {},
        }
        app_id = app_uuid(data["domain"])
        slug = fn_slug(data)
        fn_id = fn_uuid(app_id, slug)
        with engine.transaction():
            fn = self._upsert_function(data, slug, fn_id, min(retries, protocol.MAX_RETRIES))
            # Stored and routed like any event, as the server publishes it (waits and triggers on
            # inngest/http.request see it).
            engine.intake.ingest(event)
            run = RunState(run_id, fn.id, [event], RUNNING, now)
            engine.db.execute(
                "INSERT INTO runs(id, function_id, event_id, events, status, created_at, started_at, state)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (run.id, fn.id, event["id"], dumps([event]), RUNNING, now, now, run.state_json()),
            )
            engine.runs[run.id] = run
            engine.queue.enqueue(RUN_TIMEOUT, run.id, now + self.sync_timeout, {"sync": True})
            engine.stats["events"] += 1
            engine.stats["sync_runs"] = engine.stats.get("sync_runs", 0) + 1
            if ops:
                self._apply(run, fn, ops, steps, now)
        reply: dict[str, Any] = {"fn_id": fn_id, "app_id": app_id, "run_id": run_id}
        if ops:  # as the server: a token only once the run has steps
            reply["token"] = self.tokens.create(run_id, time.time())
        # JS v4 requires a non-empty realtime token; the engine has no realtime API to honour it.
        reply["realtime_token"] = self.tokens.create(run_id, time.time(), subject="realtime")
        return {"data": reply, "metadata": {"fetched_at": _iso(now)}}

    def _upsert_function(
        self, data: Mapping[str, str], slug: str, fn_uuid_: str, retries: int
    ) -> FunctionInfo:
        engine = self.engine
        domain = data["domain"]
        function_id = f"{slug} ({domain})"
        config = protocol.FunctionConfig(
            id=function_id,
            name=slug,
            steps={
                "step": protocol.StepConfig(
                    id="step",
                    name=slug,
                    runtime=protocol.Runtime(type=SYNC_RUNTIME, url=domain + (data.get("path") or "/")),
                    retries=protocol.RetryConfig(attempts=retries),
                )
            },
        )
        existing = engine.functions.get(function_id)
        if existing is not None and existing.config == config:
            return existing
        info = FunctionInfo.build(fn_uuid_, domain, config)
        now = engine.clock.now()
        engine.db.execute(
            "INSERT INTO apps(url, name, sdk, framework, checksum, synced_at) VALUES (?,?,?,?,?,?)"
            " ON CONFLICT(url) DO UPDATE SET synced_at=excluded.synced_at",
            (domain, domain, None, "durable-endpoint", "", now),
        )
        engine.db.execute(
            "INSERT INTO functions(id, uuid, app_url, config) VALUES (?,?,?,?)"
            " ON CONFLICT(id) DO UPDATE SET app_url=excluded.app_url, config=excluded.config",
            (function_id, fn_uuid_, domain, dumps(config.to_wire())),
        )
        engine.functions[function_id] = info
        return info

    # ------------------------------------------------------------------ POST /v1/checkpoint/{run}/steps

    def checkpoint_steps(self, path_run_id: str | None, raw: Any) -> None:
        engine = self.engine
        engine.stats["checkpoints"] += 1
        if not isinstance(raw, dict):
            raise EngineError("the body must be a JSON object with run_id and steps")
        steps, ops = _steps_of(raw)
        # The server reads the run id from the body; the path is the fallback.
        run_id = str(raw.get("run_id") or path_run_id or "")
        run = engine.runs.get(run_id)
        if run is None:
            row = engine.db.one("SELECT status FROM runs WHERE id=?", (run_id,))
            if row is None:
                raise EngineError(f"run {run_id} not found", 404)
            log.info("sync checkpoint for run %s, which already ended (%s): ignored", run_id, row[0])
            return
        fn = engine.functions.get(run.function_id)
        if fn is None:
            raise EngineError(f"the function of run {run_id} is not known any more", 404)
        with engine.transaction():
            self._apply(run, fn, ops, steps, engine.clock.now())

    def _apply(self, run: RunState, fn: FunctionInfo, ops: list[Op], raw_ops: list[Any], now: float) -> None:
        """``CheckpointSyncSteps``: store StepRuns, finalise on RunComplete, any other op turns
        the run async and is handled as in a reply."""
        engine = self.engine
        complete = next((op for op in ops if op.op == "RunComplete"), None)
        if complete is not None:
            # The server skips storing the outputs of a completing batch; the engine keeps them
            # for the run's step timeline (the run ends here, so nothing replays them).
            for op in ops:
                self._store_step(run, op, now)
            self.finalise(run, complete.data)
            return
        handing_over = [op for op in ops if op.op not in _STEP_OPS]
        # As the server (``CheckpointSyncSteps``): more than one op (DeferAdd/DeferAbort aside) is
        # parallel mode, coalesced StepRuns included; re-entries then plan (X-Inngest-Force-Step-Plan)
        # until the engine's next discovery (after a sleep, a wait, a step) resets it.
        if sum(op.op not in protocol.LAZY_OPCODES for op in ops) > 1:
            run.force_plan = True
        if not handing_over:
            for op in ops:
                self._store_step(run, op, now)
            engine.lifecycle.save_run(run)
            return
        # Going async (the server's HandleGenerator): a retry is enqueued for a step error, a
        # discovery for a failed step, a timer for a sleep, a wait for an event...
        self._drop_sync_timeout(run)
        item = QueueItem("sync-checkpoint", run.id, CALL, now, {"step_id": "step", "attempt": 0})
        log.info("durable endpoint run %s goes async (%s)", run.id, ", ".join(op.op for op in handing_over))
        engine.ops.apply(item, run, fn, raw_ops, False, None, now)

    def _drop_sync_timeout(self, run: RunState) -> None:
        queue = self.engine.queue
        for item_id in list(queue.run_items.get(run.id, ())):
            item = queue.items.get(item_id)
            if item is not None and item.kind == RUN_TIMEOUT and item.payload.get("sync"):
                queue.delete_item(item)

    def _store_step(self, run: RunState, op: Op, now: float) -> None:
        if op.op not in _STEP_OPS:
            return
        self.engine.lifecycle.store_step_op(run, op, now)

    def finalise(self, run: RunState, data: Any) -> None:
        """RunComplete of a sync run: ``data`` is an APIResult ``{status, headers, body}``; a
        status outside 2xx fails the run (its output stays readable through the output API)."""
        result = data if isinstance(data, dict) else {}
        status = result.get("status")
        if not isinstance(status, int) or isinstance(status, bool):
            status = 200 if data is not None else 0
        headers = result.get("headers") if isinstance(result.get("headers"), dict) else {}
        body = result.get("body", "")
        api_result = {
            "status": status,
            "headers": {str(k): str(v) for k, v in (headers or {}).items()},
            "body": body if isinstance(body, str) else dumps(body),
        }
        if 200 <= status <= 299:
            self.engine.lifecycle.finish_run(run, COMPLETED, output=api_result)
        else:
            error = {
                "name": "HTTPError",
                "message": f"invalid status code: {status}",
                "response": api_result,
            }
            self.engine.lifecycle.finish_run(run, FAILED, error=error)

    # ------------------------------------------------------------------ GET .../output?token=

    async def output(self, run_id: str, token: str | None) -> tuple[int, dict[str, str], bytes]:
        engine = self.engine
        granted = self.tokens.verify(token or "", time.time())
        if granted != run_id:
            raise EngineError("unable to find run with auth token: the token is for another run", 401)
        row = engine.db.one("SELECT status FROM runs WHERE id=?", (run_id,))
        if row is None:
            raise EngineError(f"run {run_id} not found", 404)
        if row[0] not in FINAL_STATUSES:
            try:
                await engine.wait_for_run(run_id, self.output_wait)
            except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                body = b'{"status":"running","message":"run did not end within the wait"}'
                return 200, {"content-type": "application/json"}, body
        status, output, error = engine.db.one(  # type: ignore[misc]
            "SELECT status, output, error FROM runs WHERE id=?", (run_id,)
        )
        result = loads(output) if status == COMPLETED else (loads(error) or {}).get("response")
        if isinstance(result, dict) and isinstance(result.get("status"), int) and result["status"] > 0:
            headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
            headers.setdefault("content-type", "application/json")
            headers.pop("content-length", None)
            return int(result["status"]), headers, str(result.get("body", "")).encode()
        payload = {"status": status.lower(), "output": loads(output), "error": loads(error)}
        return 200, {"content-type": "application/json"}, dumps(payload).encode()

    # ------------------------------------------------------------------ re-entry (httpv2 "sync")

    def build_call(
        self, item: QueueItem, run: RunState, fn: FunctionInfo
    ) -> tuple[str, str, bytes, dict[str, str]]:
        """(method, url, body, headers) of a call into a durable endpoint."""
        data = run.events[0].get("data") or {}
        method = str(data.get("method") or "POST").upper()
        url = str(data.get("domain") or fn.app_url) + str(data.get("path") or "/")
        query = str(data.get("query_params") or "")
        if query:
            url += ("&" if "?" in url else "?") + query
        body_text = data.get("body") or ""
        body = body_text.encode() if isinstance(body_text, str) else dumps(body_text).encode()
        step_id = str(item.payload.get("step_id") or "step")
        headers = {
            "Content-Type": str(data.get("content_type") or "application/json"),
            "User-Agent": USER_AGENT,
            "X-Run-ID": run.id,
            "x-request-id": new_id(),
            "x-inngest-generation-id": str(item.generation),
            "x-inngest-job-id": item.id,
            "x-inngest-req-version": str(max(run.version, 0) if run.version >= 0 else 2),
        }
        if run.force_plan:
            headers["X-Inngest-Force-Step-Plan"] = "true"
        if step_id != "step":
            headers[protocol.Header.STEP_ID] = step_id
        # Always present, empty without a key, as the server's ``Sign``: the TS SDK recognises a
        # re-entry by the header being there.
        key = self.engine.signing_key
        headers[protocol.Header.SIGNATURE] = signing.sign(body, key) if key else ""
        return method, url, body, headers

    def handle_reply(
        self,
        item: QueueItem,
        run: RunState,
        fn: FunctionInfo,
        status: int,
        headers: Mapping[str, str],
        content: bytes,
        started: float,
    ) -> None:
        """An endpoint's answer to a re-entry call: a JSON array of ops (``parseOpcodes``)."""
        engine = self.engine
        no_retry = (headers.get("x-inngest-no-retry") or "").lower() == "true"
        retry_after = headers.get("retry-after")
        if not headers.get("x-inngest-sdk"):
            message = f"the endpoint answered {status} without X-Inngest-SDK: {content[:200]!r}"
            engine.caller.function_error(
                item, run, fn, {"name": "BadResponse", "message": message}, False, None
            )
            return
        trimmed = content.strip()
        value: Any = None
        try:
            value = safejson.loads(trimmed) if trimmed else None
        except ValueError:
            value = None
        if isinstance(value, dict) and value.get("op") == "RunComplete":
            value = [value]  # JS HEAD writes a single RunComplete object on completion
        if not isinstance(value, list):
            error: dict[str, Any] = {
                "name": "NonGeneratorError",
                "message": f"the endpoint answered {status} without ops: {content[:200]!r}",
            }
            if isinstance(value, dict) and (value.get("message") or value.get("name")):
                error = {"name": str(value.get("name") or "Error"), "message": str(value.get("message"))}
            # NonGeneratorError is retryable only above 299
            engine.caller.function_error(item, run, fn, error, no_retry or status <= 299, retry_after)
            return
        complete = next((op for op in value if isinstance(op, dict) and op.get("op") == "RunComplete"), None)
        if complete is not None:
            self.finalise(run, complete.get("data"))
            return
        engine.ops.apply(item, run, fn, value or [{"op": "None", "id": ""}], no_retry, retry_after, started)
