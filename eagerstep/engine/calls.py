"""The call loop: sending call requests to apps and turning their replies into run progress."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from eagerstep.core import protocol, signing
from eagerstep.engine.appclient import AppHttpError
from eagerstep.engine.endpoints import is_endpoint
from eagerstep.engine.flow import Slot
from eagerstep.engine.model import (
    CALL,
    COMPLETED,
    FAILED,
    USER_AGENT,
    FunctionInfo,
    QueueItem,
    RunState,
    new_id,
)
from eagerstep.engine.store import dumps

if TYPE_CHECKING:
    from eagerstep.engine.engine import Engine

#: The error eagerstep answers a call with when the checkpoint API said 409 (a stale dispatch).
STALE_DISPATCH = "StaleDispatchError"

log = logging.getLogger("eagerstep.engine")


class _NotJson:
    pass


_NOT_JSON: Any = _NotJson()


def _garbage(status: int, content: bytes, what: str) -> dict[str, Any]:
    snippet = content[:200].decode("utf-8", "replace")
    return {"name": "BadResponse", "message": f"the app answered {status} with {what}: {snippet!r}"}


class CallLoop:
    """One call request per due CALL item (within its concurrency slot), and the handling of the reply."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def start_call(self, item: QueueItem) -> None:
        admitted, slot = self.engine.flow.take_slot(item)
        self.engine.queue.inflight[item.id] = item.generation
        if admitted:
            self.engine.spawn(self._call(item, slot))

    async def _call(self, item: QueueItem, slot: Slot | None) -> None:
        engine = self.engine
        try:
            await self._perform_call(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("call %s failed unexpectedly", item.id)
            self._recover(item, exc)
        finally:
            inflight = engine.queue.inflight
            if inflight.get(item.id) == item.generation:
                del inflight[item.id]
            parked = engine.flow.release(slot)
            if parked is not None:
                engine.spawn(self._call(parked, slot))

    def _recover(self, item: QueueItem, exc: Exception) -> None:
        """After an unexpected failure of a call: count it as a failed attempt (retried after a
        delay, or failing the run), so the item never stays queued with nothing to dispatch it.

        The dispatcher popped the item from the timer heap when it started the call; without this,
        the run would wait forever (until the engine restarts)."""
        engine = self.engine
        queue = engine.queue
        if queue.items.get(item.id) is not item:
            return  # the run ended, or a rolled-back state change reloaded and re-queued the item
        run = engine.runs.get(item.run_id or "")
        fn = engine.functions.get(run.function_id) if run is not None else None
        try:
            with engine.transaction():
                if run is None or fn is None:
                    queue.retry_later(item)  # the next dispatch sorts out the missing run or function
                    return
                queue.delete_item(item)
                error = {"name": "EngineError", "message": f"the engine could not call the app: {exc!r}"}
                self.function_error(item, run, fn, error, False, None)
        except Exception:
            # rolled back: memory was reloaded from the file, which re-queued the item
            log.exception("recovering call %s failed", item.id)

    def build_call(self, item: QueueItem, run: RunState, fn: FunctionInfo) -> tuple[bytes, dict[str, str]]:
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
        if len(raw) > self.engine.max_inline_state:
            # Too large to inline (driver.go MarshalV1): the first event stays, the SDK loads the
            # steps and events from /v0/runs/{id}/actions and /batch.
            body["events"], body["steps"] = [], {}
            body["use_api"] = ctx["use_api"] = True
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
        signing_key = self.engine.signing_key
        if signing_key:
            headers[protocol.Header.SIGNATURE] = signing.sign(raw, signing_key)
        return raw, headers

    async def _perform_call(self, item: QueueItem) -> None:
        engine = self.engine
        run = engine.runs.get(item.run_id or "")
        if run is None:
            with engine.transaction():
                engine.queue.delete_item(item)
            return
        fn = engine.functions.get(run.function_id)
        if fn is None:
            with engine.transaction():
                engine.queue.delete_item(item)
                engine.lifecycle.finish_run(
                    run,
                    FAILED,
                    error={
                        "name": "FunctionNotFound",
                        "message": f"function {run.function_id} is not registered any more; sync its app",
                    },
                )
            return
        endpoint = is_endpoint(fn)
        if endpoint:  # a durable endpoint: its own URL, method and body (httpv2 "sync")
            method, url, raw, headers = engine.endpoints.build_call(item, run, fn)
        else:
            method, url = "POST", fn.call_url(item.payload["step_id"])
            raw, headers = self.build_call(item, run, fn)
        engine.stats["calls"] += 1
        started = engine.clock.now()
        assert engine.calls is not None
        status = 0
        reply_headers: Mapping[str, str] = {}
        content = b""
        transport_error: str | None = None
        try:
            response = await engine.calls.request(method, url, raw, headers)
            status, reply_headers, content = response.status, response.headers, response.body
        except AppHttpError as exc:
            transport_error = f"could not reach the app at {url}: {exc}"
        queue = engine.queue
        if queue.inflight.get(item.id) != item.generation or queue.items.get(item.id) is not item:
            return  # the run ended or was re-dispatched meanwhile: a stale reply
        run = engine.runs.get(run.id)
        if run is None:
            return
        with engine.transaction():
            queue.delete_item(item)
            if endpoint and transport_error is None:
                engine.endpoints.handle_reply(item, run, fn, status, reply_headers, content, started)
                return
            self.handle_reply(item, run, fn, status, reply_headers, content, transport_error, started)

    def handle_reply(
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
        run.call_error = transport_error
        if transport_error is not None:
            self.function_error(
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
                envelope = json.loads(content.strip())
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
                self.function_error(
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
                body_value = json.loads(content)
            except ValueError:
                body_value = _NOT_JSON
        elif status == 200:
            body_value = None
        if 200 <= status < 300:
            if not has_sdk:
                self.function_error(
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
                self.function_error(
                    item, run, fn, _garbage(status, content, "a body that is not JSON"), False, None
                )
                return
            if status == 206:
                ops = body_value if isinstance(body_value, list) else [body_value] if body_value else []
                self.engine.ops.apply(item, run, fn, ops, no_retry, retry_after, started)
            else:
                self.engine.lifecycle.finish_run(run, COMPLETED, output=body_value)
            return
        if isinstance(body_value, dict) and (body_value.get("message") or body_value.get("name")):
            error = dict(body_value)
            error.setdefault("name", "Error")
            error.setdefault("message", f"the app answered {status}")
        elif isinstance(body_value, dict) and body_value.get("error"):
            error = {"name": "Error", "message": str(body_value["error"])}
        else:
            error = _garbage(status, content, "an error")
        run.call_error = f"invalid status code: {status}"
        if no_retry and error.get("name") == STALE_DISPATCH:
            # This call is the run's current dispatch (replies to stale ones never get here), so the
            # 409 that stopped it did not come from this engine but from something in between (a
            # proxy, a load balancer): the run is not stale, and is dispatched again, as a retry.
            log.warning("run %s: the app stopped on a 409 this engine did not send; retrying", run.id)
            no_retry = False
        self.function_error(item, run, fn, error, no_retry, retry_after)

    def retry_delay(self, retry_after: str | None) -> float:
        clock = self.engine.clock
        if retry_after:
            value = retry_after.strip()
            seconds: float | None = None
            if len(value) <= 7 and value.isdigit():
                seconds = float(value)
            else:
                try:
                    seconds = protocol.parse_datetime(value).timestamp() - clock.now()
                except ValueError:
                    try:
                        seconds = parsedate_to_datetime(value).timestamp() - clock.now()
                    except (TypeError, ValueError):
                        seconds = None
            if seconds is not None:
                return min(max(seconds, 1.0), 86400.0)
        return self.engine.retry_interval

    def function_error(
        self,
        item: QueueItem,
        run: RunState,
        fn: FunctionInfo,
        error: dict[str, Any],
        no_retry: bool,
        retry_after: str | None,
    ) -> None:
        """The call failed as a whole: retry the same request after a delay, or fail the run."""
        engine = self.engine
        attempt = int(item.payload.get("attempt", 0))
        step_id = item.payload["step_id"]
        delay = self.retry_delay(retry_after) if not no_retry and attempt + 1 < fn.max_attempts else None
        name = run.names.get(step_id)
        error = engine.history.attempt_failed(
            run, step_id, name, attempt, error, started=None, max_attempts=fn.max_attempts, retry_in=delay
        )
        if delay is not None:
            due = engine.clock.now() + delay
            engine.queue.enqueue(CALL, run.id, due, {"step_id": step_id, "attempt": attempt + 1})
            engine.lifecycle.save_run(run)
            return
        engine.lifecycle.finish_run(run, FAILED, error=error)
