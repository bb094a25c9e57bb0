"""The ``AIGateway`` op (``step.ai.infer``): the engine makes the model request and records the reply.

As the Inngest server does (``handleGeneratorAIGateway``, ``aigateway.Request``): a ``POST`` of
``opts.body`` to ``opts.url`` with ``content-type: application/json``, the key per ``opts.format``
(``anthropic``: ``x-api-key``; ``gemini``: ``?key=``; ``bedrock``: ``Authorization`` as is;
otherwise ``Authorization: Bearer``), then ``opts.headers``. A 2xx reply body becomes the step's
output (``{"data": <reply>}``). A failure (no reply, or a status over 299) retries the call that
returned the op while attempts remain, as the server retries its queue item; after the last
attempt the step fails with ``AIGatewayError`` and the SDK raises it in the function.

The request runs as a task off the reply's transaction. A watchdog call (the same call again,
due after the request could have timed out) is queued with it and deleted when the request ends:
if the engine stops meanwhile, the watchdog re-calls the app at restart, which asks again.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from eagerstep.engine.model import CALL, RUNNING, FunctionInfo, QueueItem, RunState

if TYPE_CHECKING:
    from eagerstep.engine.engine import Engine

log = logging.getLogger("eagerstep.engine")

OP = "AIGateway"


def _canonical(name: str) -> str:
    """A header name as Go's net/http sends it (``x-api-key`` -> ``X-Api-Key``): some servers,
    and tests written against the Inngest server, look headers up case-sensitively."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def build_request(opts: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    """(url, headers, body) of the model request an AIGateway op's ``opts`` describe."""
    url = opts.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"opts.url must be an http(s) URL, got {url!r}")
    auth_key = str(opts.get("auth_key") or "")
    fmt = opts.get("format") or ""
    headers = {"content-type": "application/json"}
    if fmt == "gemini":
        parts = urlsplit(url)
        query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), ("key", auth_key)])
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    elif fmt == "bedrock":
        headers["authorization"] = auth_key
    elif fmt == "anthropic":
        headers["x-api-key"] = auth_key
    else:
        headers["authorization"] = f"Bearer {auth_key}"
    extra = opts.get("headers") or {}
    if not isinstance(extra, dict):
        raise ValueError("opts.headers must be an object of strings")
    headers.update({str(k).lower(): str(v) for k, v in extra.items()})
    headers = {_canonical(k): v for k, v in headers.items()}
    body = opts.get("body")
    raw = body.encode() if isinstance(body, str) else json.dumps(body, separators=(",", ":")).encode()
    return url, headers, raw


def start(engine: Engine, item: QueueItem, run: RunState, fn: FunctionInfo, op_id: str, opts: Any) -> None:
    """Queue the watchdog and start the model request for op ``op_id`` (inside the reply's
    transaction; the caller marks the step pending)."""
    step_id = item.payload["step_id"]
    attempt = int(item.payload.get("attempt", 0))
    watchdog = engine.queue.enqueue(
        CALL,
        run.id,
        engine.clock.now() + engine.call_timeout + 60.0,
        {"step_id": step_id, "attempt": attempt},
    )
    engine.spawn(_request(engine, run.id, fn, op_id, opts, step_id, attempt, watchdog.id))


async def _request(
    engine: Engine,
    run_id: str,
    fn: FunctionInfo,
    op_id: str,
    opts: Any,
    step_id: str,
    attempt: int,
    watchdog_id: str,
) -> None:
    error: str | None = None
    status = 0
    content = b""
    try:
        url, headers, body = build_request(opts if isinstance(opts, dict) else {})
        assert engine.http is not None
        response = await engine.http.post(url, content=body, headers=headers)
        status, content = response.status_code, response.content
        if status > 299:
            error = f"unsuccessful status code: {status}"
    except (ValueError, httpx.HTTPError) as exc:
        error = str(exc) or type(exc).__name__
    _finish(engine, run_id, fn, op_id, step_id, attempt, watchdog_id, status, content, error)


def _finish(
    engine: Engine,
    run_id: str,
    fn: FunctionInfo,
    op_id: str,
    step_id: str,
    attempt: int,
    watchdog_id: str,
    status: int,
    content: bytes,
    error: str | None,
) -> None:
    run = engine.runs.get(run_id)
    queue = engine.queue
    watchdog = queue.items.get(watchdog_id)
    if run is None or run.status != RUNNING or watchdog is None or op_id in run.memos:
        return  # the run ended, or the watchdog already re-called the app
    lifecycle = engine.lifecycle
    with engine.transaction():
        queue.delete_item(watchdog)
        if error is not None and attempt + 1 < fn.max_attempts:
            log.info("run %s: AI request failed (%s); retrying", run_id, error)
            run.pending.discard(op_id)
            run.started.pop(op_id, None)
            run.names.pop(op_id, None)
            due = engine.clock.now() + engine.caller.retry_delay(None)
            queue.enqueue(CALL, run.id, due, {"step_id": step_id, "attempt": attempt + 1})
            lifecycle.save_run(run)
            return
        memo: dict[str, Any]
        if error is None:
            memo = {"data": _json_or_text(content)}
        else:
            text = content.decode("utf-8", "replace") if content else '{"error":"Error making AI request"}'
            user_error: dict[str, Any] = {
                "name": "AIGatewayError",
                "message": f"Error making AI request: {error}",
                "stack": text,
            }
            data = _json_or_text(text.encode())
            if not isinstance(data, str):
                user_error["data"] = data
            memo = {"error": user_error}
        lifecycle.store_memo(run, op_id, memo, name=run.names.pop(op_id, None), op=OP)
        run.pending.discard(op_id)
        lifecycle.discover(run)
        lifecycle.save_run(run)


def _json_or_text(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace")
