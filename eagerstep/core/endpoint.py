"""Durable endpoints: run an ordinary web view as a durable run, its steps checkpointed in the request.

Framework adapters wrap a view with :class:`DurableEndpoint`. On an ordinary request the endpoint
mints a run id, builds the ``inngest/http.request`` event, and runs the view with ``ctx.step`` in
checkpointing mode (the same replay and step code as functions, ``core.execution``): each finished
step is reported off the user's thread (``POST /v1/checkpoint`` creates the run, later steps go to
``/v1/checkpoint/{run}/steps``), and the view's real response is checkpointed as ``RunComplete``
(``{status, headers, body}``) before it is returned.

When the run cannot finish in the request (a step error to retry, a sleep, a wait for an event, an
invoke, a parallel group, ``max_runtime``), the endpoint checkpoints the op, which turns the run
async, and answers the caller with a 302 to the output URL (or ``{run_id, token}`` JSON, or an SSE
stream when the client accepts ``text/event-stream``). The orchestrator then calls the same URL
again with the original method, body and query plus a signed ``X-Run-ID`` (re-entry): the
endpoint loads the run's state, replays the recorded steps, runs the next one, and answers with a
JSON array of ops. A non-retriable error answers the caller at once (4xx/5xx) and ends the run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import logging
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast
from urllib.parse import urlencode, urlsplit

import httpx

from eagerstep.core import execution, protocol, signing
from eagerstep.core.checkpoint import Checkpointing
from eagerstep.core.comm import (
    Request,
    Response,
    RunStateError,
    error_response,
    load_run_state,
    load_run_state_async,
)
from eagerstep.core.config import parse_checkpointing
from eagerstep.core.transport import Connections

if TYPE_CHECKING:
    from eagerstep.core.checkpoint import RunCheckpointer
    from eagerstep.core.client import Client
    from eagerstep.core.config import Settings
    from eagerstep.core.function import Function
    from eagerstep.core.steps import AsyncContext, Context

logger = logging.getLogger("eagerstep")

HTTP_REQUEST_EVENT = "inngest/http.request"
AsyncResponse = Literal["redirect", "token"]


class APIResult(TypedDict):
    """A view's response as a run's output: what ``RunComplete`` carries and the output URL serves."""

    status: int
    headers: dict[str, str]
    body: str


@dataclass
class EndpointResult:
    """How an endpoint request ends: the view's own response (``native``), or a core response."""

    response: Response | None = None
    native: Any = None
    has_native: bool = False


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid() -> str:
    """A ULID (48-bit millisecond time + 80 random bits, Crockford base32)."""
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def http_request_event(request: Request, fn: str) -> dict[str, Any]:
    """The ``inngest/http.request`` event of ``request`` (as the TS SDK's ``createHttpEvent``)."""
    parts = urlsplit(request.url)
    forwarded = request.header("x-forwarded-for") or request.header("x-real-ip") or ""
    return {
        "name": HTTP_REQUEST_EVENT,
        "data": {
            "domain": f"{parts.scheme or 'http'}://{parts.netloc}",
            "method": request.method,
            "path": parts.path or "/",
            "fn": fn,
            "ip": forwarded.split(",")[0].strip(),
            "content_type": request.header("content-type") or "",
            "query_params": parts.query,
            "body": request.body.decode("utf-8", "replace"),
        },
        "id": new_ulid(),
        "ts": int(time.time() * 1000),
    }


# --------------------------------------------------------------------------------------------
# Checkpoint transport for sync runs


class _SyncRunTransport:
    """The two calls of a sync run: create (``POST /v1/checkpoint``) then append (``/steps``)."""

    def __init__(
        self, settings: Settings, run_id: str, event: dict[str, Any], retries: int, config: Checkpointing
    ) -> None:
        self.config = config  # attempts (5 by default, as the TS SDK), backoff, per-attempt timeout
        self.base = settings.api_base_url.rstrip("/")
        self.run_id = run_id
        self.event = event
        self.retries = retries
        self.keys = [k for k in (settings.signing_key, settings.signing_key_fallback) if k]
        self.created: dict[str, Any] | None = None

    def call(self, ops: list[dict[str, Any]]) -> tuple[str, bytes]:
        ts = int(time.time() * 1000)
        if self.created is None:
            body = {
                "run_id": self.run_id,
                "event": self.event,
                "steps": ops,
                "ts": ts,
                "request_version": protocol.REQUEST_VERSION,
                "retries": self.retries,
            }
            return f"{self.base}/v1/checkpoint", protocol.dumps(body).encode()
        body = {
            "fn_id": self.created.get("fn_id"),
            "app_id": self.created.get("app_id"),
            "run_id": self.run_id,
            "steps": ops,
            "ts": ts,
        }
        return f"{self.base}/v1/checkpoint/{self.run_id}/steps", protocol.dumps(body).encode()

    def header_sets(self) -> list[dict[str, str]]:
        base = {"content-type": "application/json"}
        return [
            {**base, protocol.Header.AUTHORIZATION: f"Bearer {signing.hash_signing_key(k)}"}
            for k in self.keys
        ] or [base]

    def accept(self, response: httpx.Response | _Posted) -> None:
        if response.status_code >= 300:
            raise _CheckpointFailed(f"HTTP {response.status_code}: {response.text[:200]}")
        if self.created is None:
            try:
                data = response.json()["data"]
                assert isinstance(data, dict)
            except (ValueError, KeyError, TypeError, AssertionError) as exc:
                raise _CheckpointFailed(
                    f"unexpected reply to POST /v1/checkpoint: {response.text[:200]}"
                ) from exc
            self.created = data

    def post(self, ops: list[dict[str, Any]]) -> None:
        url, body = self.call(ops)
        detail = ""
        timeout = self.config.request_timeout.total_seconds()
        for attempt in range(1, self.config.max_attempts + 1):
            for headers in self.header_sets():
                try:
                    response = _post(url, body, headers, timeout)
                except _CheckpointFailed as exc:
                    detail = str(exc)
                    break
                if response.status_code in (401, 403):
                    detail = f"HTTP {response.status_code}"
                    continue
                if response.status_code >= 500 or response.status_code == 429:
                    detail = f"HTTP {response.status_code}: {response.text[:200]}"
                    break  # worth another attempt
                self.accept(response)  # 2xx; any other 4xx (409: the run exists) fails at once
                return
            if attempt < self.config.max_attempts:
                time.sleep(self.config.backoff(attempt))
        raise _CheckpointFailed(f"{url}: {detail}")

    async def post_async(self, ops: list[dict[str, Any]]) -> None:
        # On a sender thread with http.client: cheaper for the loop than an httpx.AsyncClient call.
        await asyncio.get_running_loop().run_in_executor(_sender_pool(), self.post, ops)


class _CheckpointFailed(Exception):
    pass


class _Posted:
    """The bits of a reply the transport reads (``httpx.Response`` has the same)."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status_code = status
        self.content = body

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return _loads(self.content)


_local = threading.local()


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> _Posted:
    """POST on this thread's keep-alive connections (the checkpoint senders' ``http.client`` pool:
    a fraction of an ``httpx`` call's CPU, which the sender threads would take from the views)."""
    connections: Connections | None = getattr(_local, "connections", None)
    if connections is None:
        connections = _local.connections = Connections()
    try:
        status, content = connections.post(url, body, {**_base_headers(), **headers}, timeout)
    except (OSError, http.client.HTTPException) as exc:
        raise _CheckpointFailed(repr(exc)) from exc
    return _Posted(status, content)


def _base_headers() -> dict[str, str]:
    from eagerstep.core.client import base_headers

    return base_headers()


_pool_lock = threading.Lock()
_pool: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None


def _sender_pool() -> concurrent.futures.ThreadPoolExecutor:
    """Threads that send sync-run checkpoints off the user's thread (re-created after a fork)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), concurrent.futures.ThreadPoolExecutor(8, "eagerstep-endpoint"))
        return _pool[1]


class SyncRunCheckpointer:
    """Buffers a sync run's ops and sends them in order, one call in flight at a time (ops that
    finish meanwhile join the next call). Offers the interface ``execution.RunState`` uses."""

    stale = False  # sync runs have no dispatch to go stale

    def __init__(self, transport: _SyncRunTransport, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.transport = transport
        self.loop = loop
        self.pending: list[dict[str, Any]] = []
        self.sending: list[dict[str, Any]] = []
        self.error: str | None = None
        self.calls = 0
        self._lock = threading.Condition()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event() if loop is not None else None
        #: a send starts once this many ops are unsent (``Checkpointing.buffered_steps``), or on flush
        self.buffered = transport.config.buffered_steps
        self._flushing = False

    #: Never "failed" to the step code (``RunState.prepare_run`` would stop the view): a view runs to
    #: its end without the orchestrator; only a hand-over needs it (see ``DurableEndpoint._lost``).
    failed = False

    @property
    def created(self) -> dict[str, Any] | None:
        return self.transport.created

    # -- thread flavour ------------------------------------------------------------------------

    def _due(self) -> bool:
        return bool(self.pending) and (self._flushing or len(self.pending) >= self.buffered)

    def push(self, op: dict[str, Any]) -> None:
        with self._lock:
            self.pending.append(op)
            if not self._start_locked():
                return
        _sender_pool().submit(self._send_loop)

    def _start_locked(self) -> bool:
        if self.sending or self.error is not None or not self._due():
            return False
        self.sending, self.pending = self.pending, []
        return True

    def _send_loop(self) -> None:
        while True:
            with self._lock:
                batch = self.sending
            try:
                self.calls += 1
                self.transport.post(batch)
            except Exception as exc:
                with self._lock:
                    self.error = str(exc)
                    self.pending = [*self.sending, *self.pending]
                    self.sending = []
                    self._lock.notify_all()
                logger.error("durable endpoint run %s: checkpoint failed: %s", self.transport.run_id, exc)
                return
            with self._lock:
                self.sending = []
                if not self._start_locked():
                    self._lock.notify_all()
                    return

    def flush(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """Wait until every pushed op is sent; returns those that could not be (none on success)."""
        deadline = time.monotonic() + (timeout if timeout is not None else 60.0)
        with self._lock:
            self._flushing = True
            if self._start_locked():
                _sender_pool().submit(self._send_loop)
            while (self.sending or self.pending) and self.error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.error = "timed out waiting for the checkpoint API"
                    break
                self._lock.wait(remaining)
            return [*self.sending, *self.pending]

    settle = flush

    def close(self) -> None:
        pass

    # -- asyncio flavour -----------------------------------------------------------------------

    async def push_async(self, op: dict[str, Any]) -> None:
        self.pending.append(op)
        if self._start_task():
            await asyncio.sleep(0)  # let the sender start its request before the view goes on

    def _start_task(self) -> bool:
        if self._task is not None or self.error is not None or not self._due():
            return False
        assert self._idle is not None
        self._idle.clear()
        self._task = asyncio.get_running_loop().create_task(self._send_loop_async())
        return True

    async def _send_loop_async(self) -> None:
        assert self._idle is not None
        try:
            while self._due():
                self.sending, self.pending = self.pending, []
                self.calls += 1
                try:
                    await self.transport.post_async(self.sending)
                except Exception as exc:
                    self.error = str(exc)
                    self.pending = [*self.sending, *self.pending]
                    self.sending = []
                    logger.error("durable endpoint run %s: checkpoint failed: %s", self.transport.run_id, exc)
                    return
            self.sending = []
        finally:
            self._task = None
            self._idle.set()

    async def flush_async(self, timeout: float | None = None) -> list[dict[str, Any]]:
        self._flushing = True
        self._start_task()
        if self._task is not None:
            assert self._idle is not None
            try:
                await asyncio.wait_for(self._idle.wait(), timeout if timeout is not None else 60.0)
            except asyncio.TimeoutError:
                self.error = "timed out waiting for the checkpoint API"
        return [*self.sending, *self.pending] if self.error is not None else []

    settle_async = flush_async


# --------------------------------------------------------------------------------------------
# The endpoint


@dataclass
class _Endpoint:
    """What ``execution.RunState`` needs of a function (a durable endpoint is not registered)."""

    client: Client
    handler: Callable[..., Any]
    id: str
    retries: int
    is_async: bool

    @property
    def fully_qualified_id(self) -> str:
        return self.id

    def max_attempts(self) -> int:
        return self.retries + 1


@dataclass
class _Plan:
    """What the first request does once the view stopped: the ops to checkpoint, then the answer
    ("native": the view's response; "async": hand over; "error": ``result`` now; "lost")."""

    ops: list[dict[str, Any]] = field(default_factory=list)
    answer: str = "native"
    result: APIResult | None = None


def _find_final_error(ops: list[dict[str, Any]]) -> dict[str, Any] | None:
    for op in ops:
        if op.get("op") == "StepFailed":
            return op
    return None


class DurableEndpoint:
    """A view made durable. Adapters call :meth:`run` (``def`` views) or :meth:`run_async`.

    ``view(ctx)`` runs the user's view with the step context and returns its native response;
    ``to_result(native)`` turns that response into an :class:`APIResult`.
    """

    def __init__(
        self,
        client: Client,
        *,
        id: str | None = None,
        retries: int | None = None,
        async_response: AsyncResponse = "redirect",
        redirect_url: str | None = None,
        checkpointing: bool | Checkpointing | None = None,
        framework: str = "python",
    ) -> None:
        if async_response not in ("redirect", "token"):
            raise ValueError(f'async_response must be "redirect" or "token", not {async_response!r}')
        self.client = client
        self.id = id or ""
        self.retries = protocol.DEFAULT_RETRIES if retries is None else retries
        self.async_response = async_response
        self.redirect_url = redirect_url
        self._checkpointing = None if checkpointing is None else parse_checkpointing(checkpointing)
        self.headers = {
            protocol.Header.SDK: f"{protocol.SDK_NAME}:v{_version()}",
            protocol.Header.REQ_VERSION: str(protocol.REQUEST_VERSION),
            protocol.Header.FRAMEWORK: framework,
        }

    def checkpointing(self) -> Checkpointing:
        return self._checkpointing or self.client.settings.checkpointing or Checkpointing()

    # -- entry points --------------------------------------------------------------------------

    def run(
        self, request: Request, view: Callable[[Context], Any], to_result: Callable[[Any], APIResult]
    ) -> EndpointResult:
        if request.header(protocol.Header.RUN_ID):
            return EndpointResult(self._reenter_sync(request, view, to_result))
        box: list[Any] = []

        def handler(ctx: Context) -> APIResult:
            native = view(ctx)
            box.append(native)
            return to_result(native)

        state, cp = self._first_state(request, handler, is_async=False, loop=None)
        outcome = execution.run_sync(state)
        plan = self._after_first(outcome, box)
        if plan.ops:
            for op in plan.ops:
                cp.push(op)
            if cp.flush(self.checkpointing().longest_flush()):
                return self._lost(state, cp, box)
        return self._answer(state, cp, plan, box, request)

    async def run_async(
        self,
        request: Request,
        view: Callable[[AsyncContext], Awaitable[Any]],
        to_result: Callable[[Any], APIResult],
    ) -> EndpointResult:
        if request.header(protocol.Header.RUN_ID):
            return EndpointResult(await self._reenter_async(request, view, to_result))
        box: list[Any] = []

        async def handler(ctx: AsyncContext) -> APIResult:
            native = await view(ctx)
            box.append(native)
            return to_result(native)

        state, cp = self._first_state(request, handler, is_async=True, loop=asyncio.get_running_loop())
        outcome = await execution.run_async(state)
        plan = self._after_first(outcome, box)
        if plan.ops:
            for op in plan.ops:
                await cp.push_async(op)
            if await cp.flush_async(self.checkpointing().longest_flush()):
                return self._lost(state, cp, box)
        return self._answer(state, cp, plan, box, request)

    # -- the first request ---------------------------------------------------------------------

    def _function(self, handler: Callable[..., Any], is_async: bool) -> Function[Any]:
        return cast("Function[Any]", _Endpoint(self.client, handler, self.id, self.retries, is_async))

    def _first_state(
        self,
        request: Request,
        handler: Callable[..., Any],
        *,
        is_async: bool,
        loop: asyncio.AbstractEventLoop | None,
    ) -> tuple[execution.RunState, SyncRunCheckpointer]:
        settings = self.client.settings
        if not settings.dev:
            settings.require_signing_key()
        run_id = new_ulid()
        event = http_request_event(request, self.id)
        call = protocol.CallRequest(
            event=event, events=[event], steps={}, ctx=protocol.CallContext(run_id=run_id, fn_id=self.id)
        )
        config = self.checkpointing()
        cp = SyncRunCheckpointer(_SyncRunTransport(settings, run_id, event, self.retries, config), loop)
        state = execution.RunState(
            self._function(handler, is_async),
            call,
            target_step=None,
            checkpointing=config,
            make_checkpointer=lambda: cast("RunCheckpointer", cp),
        )
        return state, cp

    @staticmethod
    def _after_first(outcome: execution.Outcome, box: list[Any]) -> _Plan:
        if box and outcome.status in (200, 206) and (outcome.ops is None or _is_complete(outcome.ops)):
            result = _loads(outcome.body) if outcome.ops is None else outcome.ops[-1]["data"]
            return _Plan([protocol.run_complete_op(result)])
        if outcome.ops is not None:
            if not outcome.ops:
                return _Plan(answer="lost")  # the checkpoint API is failing
            failed = _find_final_error(outcome.ops)
            if failed is None:
                return _Plan(outcome.ops, "async")
            # a step failed for good: answer the caller now, and end the run with that answer
            error = failed.get("error") or {}
            status = 400 if error.get("name") == "NonRetriableError" else 500
            result = _error_result(status, error)
            return _Plan([protocol.run_complete_op(result)], "error", result)
        error = _loads(outcome.body) if outcome.body else {}
        if outcome.headers.get(protocol.Header.NO_RETRY) == "true":
            result = _error_result(outcome.status, error if isinstance(error, dict) else {})
            return _Plan([protocol.run_complete_op(result)], "error", result)
        # a retriable error of the view itself: the orchestrator retries the run (as the TS SDK)
        return _Plan([{"op": "StepError", "id": protocol.RUN_COMPLETE_ID, "error": error}], "async")

    def _lost(self, state: execution.RunState, cp: SyncRunCheckpointer, box: list[Any]) -> EndpointResult:
        if box:
            # the view answered; only the run's record is incomplete: serve the answer anyway
            logger.error("durable endpoint run %s: the response could not be checkpointed", state.run_id)
            return EndpointResult(native=box[-1], has_native=True)
        response = error_response(
            503,
            "checkpoint_failed",
            f"the run could not be handed to the orchestrator: {cp.error}",
            run_id=state.run_id,
        )
        return EndpointResult(response)

    def _answer(
        self,
        state: execution.RunState,
        cp: SyncRunCheckpointer,
        plan: _Plan,
        box: list[Any],
        request: Request,
    ) -> EndpointResult:
        if plan.answer == "native":
            return EndpointResult(native=box[-1], has_native=True)
        if plan.answer == "lost":
            return self._lost(state, cp, [])
        if plan.result is not None:
            result = plan.result
            headers = {**result["headers"], **self.headers}
            return EndpointResult(Response(result["status"], headers, result["body"].encode()))
        token = str((cp.created or {}).get("token") or "")
        if not token:
            return self._lost(state, cp, [])
        settings = self.client.settings
        output_url = f"{settings.api_base_url.rstrip('/')}/v1/http/runs/{state.run_id}/output?token={token}"
        if self.redirect_url:
            sep = "&" if "?" in self.redirect_url else "?"
            url = f"{self.redirect_url}{sep}{urlencode({'runId': state.run_id, 'token': token})}"
        else:
            url = output_url
        accept = request.header("accept") or ""
        if "text/event-stream" in accept:
            body = _sse("inngest.metadata", {"runId": state.run_id}) + _sse(
                "inngest.redirect_info", {"runId": state.run_id, "url": url}
            )
            headers = {"content-type": "text/event-stream", "cache-control": "no-cache"}
            return EndpointResult(Response(200, headers, body.encode()))
        if self.async_response == "token":
            body = protocol.dumps({"run_id": state.run_id, "token": token})
            return EndpointResult(Response(200, {"content-type": "application/json"}, body.encode()))
        return EndpointResult(Response(302, {"location": url, "content-type": "text/plain"}, b""))

    # -- re-entry ------------------------------------------------------------------------------

    def _verify(self, request: Request) -> Response | None:
        settings = self.client.settings
        keys = [settings.signing_key, settings.signing_key_fallback]
        if settings.dev and not settings.signing_key:
            return None  # dev mode without a key: nothing to verify against
        if not settings.dev:
            settings.require_signing_key()
        header = request.header(protocol.Header.SIGNATURE)
        try:
            signing.verify(header, request.body, keys)
        except signing.SignatureError as exc:
            return error_response(
                401, "unauthorized", f"X-Run-ID re-entry refused: {exc}", message="Unauthorized"
            )
        return None

    def _reentry_state(
        self, request: Request, handler: Callable[..., Any], is_async: bool, actions: Any, batch: Any
    ) -> execution.RunState | Response:
        if not isinstance(actions, dict) or not isinstance(batch, list) or not batch:
            return error_response(
                500, "use_api_failed", "the run's state API answered with an unexpected shape"
            )
        events = [e for e in batch if isinstance(e, dict)]
        run_id = request.header(protocol.Header.RUN_ID) or ""
        call = protocol.CallRequest(
            event=events[0], events=events, steps=actions, ctx=protocol.CallContext(run_id=run_id)
        )
        step = request.header(protocol.Header.STEP_ID)
        state = execution.RunState(
            self._function(handler, is_async),
            call,
            target_step=step if step and step != "step" else None,
            checkpointing=None,
        )
        if (request.header(protocol.Header.FORCE_STEP_PLAN) or "").lower() == "true":
            state.disable_immediate = True
        return state

    def _reenter_sync(
        self, request: Request, view: Callable[[Context], Any], to_result: Callable[[Any], APIResult]
    ) -> Response:
        refused = self._verify(request)
        if refused is not None:
            return self._finalise(refused)
        try:
            run_id = request.header(protocol.Header.RUN_ID) or ""
            actions, batch = load_run_state(self.client.settings, run_id)
        except RunStateError as exc:
            return self._finalise(
                error_response(500, "use_api_failed", f"could not load the run's state: {exc}")
            )
        state = self._reentry_state(request, lambda ctx: to_result(view(ctx)), False, actions, batch)
        if isinstance(state, Response):
            return self._finalise(state)
        return self._ops_reply(execution.run_sync(state))

    async def _reenter_async(
        self,
        request: Request,
        view: Callable[[AsyncContext], Awaitable[Any]],
        to_result: Callable[[Any], APIResult],
    ) -> Response:
        refused = self._verify(request)
        if refused is not None:
            return self._finalise(refused)
        try:
            actions, batch = await load_run_state_async(
                self.client.settings, request.header(protocol.Header.RUN_ID) or ""
            )
        except RunStateError as exc:
            return self._finalise(
                error_response(500, "use_api_failed", f"could not load the run's state: {exc}")
            )

        async def handler(ctx: AsyncContext) -> APIResult:
            return to_result(await view(ctx))

        state = self._reentry_state(request, handler, True, actions, batch)
        if isinstance(state, Response):
            return self._finalise(state)
        return self._ops_reply(await execution.run_async(state))

    def _ops_reply(self, outcome: execution.Outcome) -> Response:
        """httpv2 wants a JSON array of ops; errors stay errors (the orchestrator retries them)."""
        if outcome.ops is not None:
            body = protocol.dumps(outcome.ops).encode()
            return self._finalise(
                Response(206, {"content-type": "application/json", **outcome.headers}, body)
            )
        if outcome.status == 200:
            ops = [protocol.run_complete_op(_loads(outcome.body))]
            return self._finalise(
                Response(200, {"content-type": "application/json"}, protocol.dumps(ops).encode())
            )
        if outcome.headers.get(protocol.Header.NO_RETRY) == "true":
            # a final error: the run ends with it as the response the waiting caller gets
            error = _loads(outcome.body) if outcome.body else {}
            result = _error_result(outcome.status, error if isinstance(error, dict) else {})
            ops = [protocol.run_complete_op(result)]
            return self._finalise(
                Response(200, {"content-type": "application/json"}, protocol.dumps(ops).encode())
            )
        headers = {"content-type": "application/json", **outcome.headers}
        return self._finalise(Response(outcome.status, headers, outcome.body))

    def _finalise(self, response: Response) -> Response:
        for name, value in self.headers.items():
            response.headers.setdefault(name, value)
        return response


# --------------------------------------------------------------------------------------------


def _version() -> str:
    from eagerstep._version import __version__

    return __version__


def _loads(raw: bytes | str) -> Any:
    import json

    return json.loads(raw)


def _is_complete(ops: list[dict[str, Any]]) -> bool:
    return bool(ops) and ops[-1].get("op") == "RunComplete"


def _error_result(status: int, error: dict[str, Any]) -> APIResult:
    body = {k: v for k, v in error.items() if k != "stack"}
    return {"status": status, "headers": {"content-type": "application/json"}, "body": protocol.dumps(body)}


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {protocol.dumps(data)}\n\n"
