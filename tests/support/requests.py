"""Build call requests exactly as an Inngest server sends them."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from ulid import ULID

from eagerstep.core.comm import Request
from eagerstep.core.signing import canonical_json, sign

DEFAULT_SERVE_URL = "http://127.0.0.1:8000/api/inngest"
_DEFAULT = object()


def function_uuid(fn_id: str) -> str:
    """A stable internal function UUID for a composite function id (servers send one as ctx.fn_id)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"eagerstep-test:{fn_id}"))


def queue_item_id(job_id: str, shard: str = "default") -> str:
    """``qi_id`` as the server makes it: base64 of ``jobID::shardID`` (opaque to SDKs)."""
    return base64.b64encode(f"{job_id}::{shard}".encode()).decode()


def wire_event(
    name: str = "test/event", data: Mapping[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """An event as delivered in call requests (``user`` always present, ``id`` and ``ts`` set)."""
    event: dict[str, Any] = {
        "name": name,
        "data": dict(data or {}),
        "id": str(ULID()),
        "ts": 1_700_000_000_000,
        "user": {},
    }
    event.update(extra)
    return event


def call_request(
    fn_id: str,
    *,
    event: Mapping[str, Any] | None = None,
    events: Sequence[Mapping[str, Any]] | None = None,
    steps: Mapping[str, Any] | None = None,
    stack: Sequence[str] | None = None,
    step_id: str = "step",
    run_id: str | None = None,
    attempt: int = 0,
    max_attempts: int = 5,
    internal_fn_id: Any = _DEFAULT,
    qi_id: Any = _DEFAULT,
    request_id: str | None = None,
    generation_id: int = 1,
    job_id: str | None = None,
    env: str = "",
    disable_immediate_execution: bool = False,
    use_api: bool = False,
    version: int = -1,
    defers: Mapping[str, Any] | None = None,
    signing_key: str | None = None,
    signature_time: int | None = None,
    url: str = DEFAULT_SERVE_URL,
    extra_query: Mapping[str, str] | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> Request:
    """A POST call request for ``fn_id`` (the composite id), as a server builds it.

    ``internal_fn_id``: the ``ctx.fn_id`` UUID (default: a stable one for ``fn_id``; ``None``
    omits it, which turns checkpointing off, as with servers that do not send it). ``qi_id``
    likewise (default derived from ``job_id``). ``steps`` are memos in wire shape; ``stack``
    defaults to their keys in order. With ``signing_key`` the request carries a signature over the
    exact (canonical JSON) body.
    """
    run = run_id or str(ULID())
    request = request_id or str(ULID())
    job = job_id or f"job-{run[-10:].lower()}"
    memos = dict(steps or {})
    stack_ids = list(stack if stack is not None else memos.keys())
    first = dict(event) if event is not None else (dict(events[0]) if events else wire_event())
    first.setdefault("user", {})
    all_events = [dict(e) for e in events] if events is not None else [first]
    for e in all_events:
        e.setdefault("user", {})
    ctx: dict[str, Any] = {
        "attempt": attempt,
        "disable_immediate_execution": disable_immediate_execution,
        "env": env,
        "generation_id": generation_id,
        "job_id": job,
        "max_attempts": max_attempts,
        "request_id": request,
        "run_id": run,
        "stack": {"current": len(stack_ids), "stack": stack_ids},
        "step_id": step_id,
        "use_api": use_api,
    }
    fn_uuid = function_uuid(fn_id) if internal_fn_id is _DEFAULT else internal_fn_id
    if fn_uuid is not None:
        ctx["fn_id"] = fn_uuid
    qi = queue_item_id(job) if qi_id is _DEFAULT else qi_id
    if qi is not None:
        ctx["qi_id"] = qi
    body_obj: dict[str, Any] = {
        "ctx": ctx,
        "defers": dict(defers or {}),
        "event": first,
        "events": [] if use_api else all_events,
        "steps": {} if use_api else memos,
        "use_api": use_api,
        "version": version,
    }
    body = canonical_json(body_obj)
    query = {"fnId": fn_id, "stepId": step_id, **(extra_query or {})}
    headers = {
        "content-type": "application/json",
        "content-length": str(len(body)),
        "user-agent": "Inngest",
        "x-inngest-generation-id": str(generation_id),
        "x-inngest-job-id": job,
        "x-inngest-req-version": str(version),
        "x-inngest-step-id": step_id,
        "x-request-id": request,
        "x-run-id": run,
    }
    if signing_key:
        headers["x-inngest-signature"] = sign(body, signing_key, signature_time)
    headers.update(extra_headers or {})
    full_url = f"{url}?{urlencode(query)}"
    return Request(method="POST", url=full_url, headers=headers, query=query, body=body)


def request_from_wire(
    sample: Mapping[str, Any], *, origin: str = "http://127.0.0.1:3002", signing_key: str | None = None
) -> Request:
    """A :class:`Request` from a recorded server->SDK exchange (``wire-samples/*.jsonl`` line)."""
    from urllib.parse import parse_qsl, urlsplit

    raw_url = str(sample["url"])
    full_url = raw_url if raw_url.startswith("http") else origin + raw_url
    body_raw = sample.get("body_raw")
    body = body_raw.encode() if isinstance(body_raw, str) else canonical_json(sample["body"])
    headers = dict(sample.get("headers") or {})
    if signing_key:
        headers["x-inngest-signature"] = sign(body, signing_key)
    query = dict(parse_qsl(urlsplit(full_url).query))
    return Request(method=str(sample["method"]), url=full_url, headers=headers, query=query, body=body)
