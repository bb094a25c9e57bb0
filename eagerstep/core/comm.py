"""Neutral HTTP request/response types and the serve entry points ``handle``/``handle_async``.

Adapters turn their framework's request into a :class:`Request` (re-exported here from
:mod:`eagerstep.core.messages`), call :meth:`CommHandler.handle`
(sync servers) or ``await`` :meth:`CommHandler.handle_async` (async servers), and copy the
:class:`Response` back. GET is introspection, PUT is a sync (app registration), POST runs a
function (or answers a ``probe=trust``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from pydantic import ValidationError

from eagerstep._version import __version__
from eagerstep.core import checkpoint, execution, middleware, protocol, safejson, signing, transport
from eagerstep.core.messages import Request, Response

if TYPE_CHECKING:
    from eagerstep.core.client import Client
    from eagerstep.core.config import Settings
    from eagerstep.core.function import Function

logger = logging.getLogger("eagerstep")

__all__ = ["CommHandler", "Request", "Response", "error_response"]

T = TypeVar("T")


# --------------------------------------------------------------------------------------------


class _Reply(Exception):
    """Ends request handling early with ``response`` (bad input, auth failure...)."""

    def __init__(self, response: Response) -> None:
        self.response = response


def error_response(status: int, code: str, error: str, /, **extra: Any) -> Response:
    """The uniform error reply: ``{"error": error, "code": code, ...}``."""
    body = {"error": error, "code": code, **extra}
    return Response(status, {"content-type": "application/json"}, protocol.dumps(body).encode())


def _json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        status, {"content-type": "application/json", **(headers or {})}, protocol.dumps(body).encode()
    )


def _unauthorized(detail: str) -> Response:
    return error_response(401, "unauthorized", detail, message="Unauthorized")


CAPABILITIES = {"trust_probe": "v1", "in_band_sync": "v1"}
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024 + 64 * 1024


def _default_pool_size() -> int:
    configured = os.environ.get("INNGEST_THREAD_POOL_MAX_WORKERS")
    if configured and configured.isdigit() and int(configured) > 0:
        return int(configured)
    return min(32, (os.cpu_count() or 1) + 4)


@dataclass
class _Prepared:
    """A call request ready to run, with the signing key it was verified with."""

    state: execution.RunState
    key: str | None
    target: checkpoint.CheckpointTarget | None


class CommHandler:
    """Serves one app's functions over the Inngest protocol, for any web framework."""

    def __init__(
        self,
        client: Client,
        functions: Sequence[Function[Any]],
        *,
        framework: str,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_threads: int | None = None,
    ) -> None:
        self.client = client
        self.framework = framework
        self.max_body_bytes = max_body_bytes
        self.functions: list[Function[Any]] = []
        for fn in functions:
            if fn.client is not client:
                raise ValueError(f"function {fn.id!r} belongs to another Client than the one served")
            self.functions.extend(fn.all_functions())
        self._by_id: dict[str, Function[Any]] = {}
        for fn in self.functions:
            if fn.fully_qualified_id in self._by_id:
                raise ValueError(f"two functions have the id {fn.id!r}")
            self._by_id[fn.fully_qualified_id] = fn
            self._by_id.setdefault(fn.id, fn)
        self._sender_pid = 0  # the process whose checkpoint sender this handler has started
        self._max_threads = max_threads or _default_pool_size()
        self._pool: tuple[int, ThreadPoolExecutor] | None = None
        self._pool_lock = threading.Lock()

        self._headers = {
            protocol.Header.SDK: f"{protocol.SDK_NAME}:v{__version__}",
            protocol.Header.REQ_VERSION: str(protocol.REQUEST_VERSION),
            protocol.Header.FRAMEWORK: framework,
            protocol.Header.SDK_HANDLED: "true",
        }

    # -- public entry points -----------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one request (for WSGI and other sync servers)."""
        key: str | None = None
        if self._sender_pid != os.getpid():
            self._start_sender()
        try:
            self._precheck(request)
            settings = self.client.settings
            if request.method == "GET":
                response, key = self._introspect(request, settings)
            elif request.method == "PUT":
                response, key = self._put(request, settings)
            else:
                prepared = self._prepare_post(request, settings)
                key = prepared.key
                response = self._execute(prepared)
        except _Reply as reply:
            response = reply.response
        except Exception as exc:
            response = self._internal_error(exc)
        return self._finalise(response, key)

    async def handle_async(self, request: Request) -> Response:
        """Answer one request (for ASGI servers); ``def`` functions run in a bounded thread pool."""
        key: str | None = None
        if self._sender_pid != os.getpid():
            self._start_sender()
        try:
            self._precheck(request)
            settings = self.client.settings
            if request.method == "GET":
                response, key = self._introspect(request, settings)
            elif request.method == "PUT":
                loop = asyncio.get_running_loop()
                response, key = await self._in_pool(loop, self._put, request, settings)
            else:
                prepared = self._prepare_post(request, settings)
                key = prepared.key
                response = await self._execute_async(prepared)
        except _Reply as reply:
            response = reply.response
        except Exception as exc:
            response = self._internal_error(exc)
        return self._finalise(response, key)

    def register(
        self, serve_url: str, *, server_kind: str | None = None, deploy_id: str | None = None
    ) -> Response:
        """Out-of-band sync: ``POST {api}/fn/register`` with every function served at ``serve_url``."""
        try:
            return self._finalise(
                self._register(self.client.settings, serve_url, server_kind, deploy_id), None
            )
        except _Reply as reply:
            return self._finalise(reply.response, None)
        except Exception as exc:
            return self._finalise(self._internal_error(exc), None)

    def close(self) -> None:
        """Shut the thread pool down (adapters call it at exit)."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool[1].shutdown(wait=False)
                self._pool = None

    # -- plumbing ----------------------------------------------------------------------------

    def _start_sender(self) -> None:
        """On this process's first request: start the checkpoint sender now (created lazily, never
        at import or construction), rather than inside the first checkpointed step."""
        self._sender_pid = os.getpid()
        try:
            if any(fn.checkpointing is not None for fn in self.functions):
                transport.prestart()
        except Exception:  # settings or threads unavailable: the request reports it, or the first
            pass  # checkpointed step starts the sender, as it would anyway

    def _precheck(self, request: Request) -> None:
        if request.method not in ("GET", "PUT", "POST"):
            response = error_response(
                405, "method_not_allowed", f"method {request.method} is not allowed; use GET, PUT or POST"
            )
            response.headers["Allow"] = "GET, POST, PUT"
            raise _Reply(response)
        if len(request.body) > self.max_body_bytes:
            raise _Reply(
                error_response(
                    413,
                    "body_too_large",
                    f"the request body is larger than {self.max_body_bytes} bytes",
                )
            )

    def _finalise(self, response: Response, key: str | None) -> Response:
        for name, value in self._headers.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("content-type", "application/json")
        if key:
            response.headers[protocol.Header.SIGNATURE] = signing.sign(response.body, key)
        return response

    def _internal_error(self, exc: Exception) -> Response:
        from eagerstep.core.errors import ConfigurationError

        if isinstance(exc, ConfigurationError):
            logger.error("eagerstep is misconfigured: %s", exc)
            return error_response(500, "configuration_error", str(exc))
        logger.exception("eagerstep could not handle the request")
        return error_response(500, "internal_error", f"{type(exc).__name__}: {exc}")

    def _executor(self) -> ThreadPoolExecutor:
        pid = os.getpid()
        pool = self._pool
        if pool is not None and pool[0] == pid:
            return pool[1]
        with self._pool_lock:
            if self._pool is None or self._pool[0] != pid:
                self._pool = (
                    pid,
                    ThreadPoolExecutor(max_workers=self._max_threads, thread_name_prefix="eagerstep-fn"),
                )
            return self._pool[1]

    async def _in_pool(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., T], *args: Any) -> T:
        ctx = contextvars.copy_context()
        work = functools.partial(fn, *args)
        return await loop.run_in_executor(self._executor(), lambda: ctx.run(self.around_thread_work, work))

    def around_thread_work(self, work: Callable[[], T]) -> T:
        """Runs one unit of work on one of eagerstep's threads: a ``def`` function's request in this
        handler's pool (async servers), a branch of an eager parallel group. An adapter overrides it
        to set up and release what its framework keeps per thread (Django: database connections)."""
        return work()

    def _verify(self, request: Request, settings: Settings, *, required: bool) -> str | None:
        """The signing key the request's signature matches; None if unsigned (or dev mode).

        In cloud mode with ``required``, a missing or bad signature raises a 401 reply.
        """
        header = request.header(protocol.Header.SIGNATURE)
        keys = [settings.signing_key, settings.signing_key_fallback]
        if settings.dev:
            if not header or not settings.signing_key:
                return None
            try:
                return signing.verify(header, request.body, keys)
            except signing.SignatureError:
                return None
        settings.require_signing_key()
        if not header and not required:
            return None
        try:
            return signing.verify(header, request.body, keys)
        except signing.SignatureError as exc:
            if required:
                raise _Reply(_unauthorized(str(exc))) from exc
            return None

    # -- GET ---------------------------------------------------------------------------------

    def _serve_url(self, request: Request, settings: Settings) -> tuple[str, str]:
        """(origin, path) where the orchestrator reaches this endpoint, with overrides applied."""
        parts = urlsplit(request.url)
        origin = settings.serve_origin or urlunsplit((parts.scheme or "http", parts.netloc, "", "", ""))
        path = settings.serve_path or parts.path or "/"
        return origin.rstrip("/"), path

    def _introspect(self, request: Request, settings: Settings) -> tuple[Response, str | None]:
        header = request.header(protocol.Header.SIGNATURE)
        key: str | None = None
        auth: bool | None = None
        if header and settings.signing_key:
            try:
                key = signing.verify(header, request.body, settings.signing_keys())
                auth = True
            except signing.SignatureError:
                auth = False
        elif header:
            auth = False
        has_event_key = bool(settings.event_key) and settings.event_key != protocol.DEV_EVENT_KEY
        body: dict[str, Any] = {
            "schema_version": protocol.INTROSPECTION_SCHEMA_VERSION,
            "authentication_succeeded": auth,
            "function_count": len(self.functions),
            "has_event_key": has_event_key,
            "has_signing_key": settings.signing_key is not None,
            "has_signing_key_fallback": settings.signing_key_fallback is not None,
            "mode": settings.mode,
        }
        if auth:
            origin, path = self._serve_url(request, settings)
            body.update(
                {
                    "api_origin": settings.api_base_url,
                    "app_id": settings.app_id,
                    "capabilities": CAPABILITIES,
                    "env": settings.env,
                    "event_api_origin": settings.event_api_base_url,
                    "event_key_hash": signing.hash_event_key(settings.event_key)
                    if has_event_key and settings.event_key
                    else None,
                    "framework": self.framework,
                    "sdk_language": protocol.SDK_LANGUAGE,
                    "sdk_version": __version__,
                    "serve_origin": origin,
                    "serve_path": path,
                    "signing_key_hash": _hashed(settings.signing_key),
                    "signing_key_fallback_hash": _hashed(settings.signing_key_fallback),
                }
            )
        return _json_response(200, body), key

    # -- PUT ---------------------------------------------------------------------------------

    def _put(self, request: Request, settings: Settings) -> tuple[Response, str | None]:
        in_band = (request.header(protocol.Header.SYNC_KIND) or "").lower() == "in_band"
        if in_band and not settings.dev:
            key = self._verify(request, settings, required=True)
            return self._in_band(request, settings), key
        origin, path = self._serve_url(request, settings)
        deploy_id = request.query.get("deployId")
        if deploy_id in ("", "undefined"):
            deploy_id = None
        server_kind = request.header(protocol.Header.SERVER_KIND)
        return self._register(settings, origin + path, server_kind, deploy_id), None

    def _in_band(self, request: Request, settings: Settings) -> Response:
        url = None
        try:
            parsed = safejson.loads(request.body) if request.body else {}
            if isinstance(parsed, dict) and isinstance(parsed.get("url"), str):
                url = parsed["url"]
        except ValueError:
            pass
        origin, path = self._serve_url(request, settings)
        url = url or origin + path
        inspection = self._introspect(request, settings)[0].json()
        body = {
            "app_id": settings.app_id,
            "appVersion": None,
            "env": settings.env,
            "framework": self.framework,
            "functions": [fn.to_config(url).to_wire() for fn in self.functions],
            "inspection": inspection,
            "platform": None,
            "sdk_author": "eagerstep",
            "sdk_language": protocol.SDK_LANGUAGE,
            "sdk_version": __version__,
            "url": url,
        }
        return _json_response(200, body, {protocol.Header.SYNC_KIND: "in_band"})

    def _register_payload(self, settings: Settings, serve_url: str) -> dict[str, Any]:
        return {
            "url": serve_url,
            "deployType": "ping",
            "framework": self.framework,
            "appName": settings.app_id,
            "functions": [fn.to_config(serve_url).to_wire() for fn in self.functions],
            "sdk": f"{protocol.SDK_NAME}:v{__version__}",
            "v": protocol.REGISTER_PROTOCOL_VERSION,
            "capabilities": CAPABILITIES,
        }

    def _register(
        self, settings: Settings, serve_url: str, server_kind: str | None, deploy_id: str | None
    ) -> Response:
        from eagerstep.core.client import http_client

        if not settings.dev:
            settings.require_signing_key()
        parts = urlsplit(serve_url)
        serve_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        url = f"{settings.api_base_url}/fn/register"
        if deploy_id:
            url += "?" + urlencode({"deployId": deploy_id})
        body = protocol.dumps(self._register_payload(settings, serve_url)).encode()
        headers = {
            "Content-Type": "application/json",
            protocol.Header.FRAMEWORK: self.framework,
        }
        if settings.env:
            headers[protocol.Header.ENV] = settings.env
        if server_kind:
            headers[protocol.Header.EXPECTED_SERVER_KIND] = server_kind
        keys: list[str | None] = [k for k in (settings.signing_key, settings.signing_key_fallback) if k]
        reply: httpx.Response | None = None
        for key in keys or [None]:
            attempt_headers = dict(headers)
            if key:
                attempt_headers[protocol.Header.AUTHORIZATION] = f"Bearer {signing.hash_signing_key(key)}"
            try:
                reply = http_client().post(url, content=body, headers=attempt_headers)
            except httpx.HTTPError as exc:
                return error_response(
                    500,
                    "sync_failed",
                    f"could not reach the orchestrator at {settings.api_base_url} to sync: {exc}; check "
                    "API_BASE_URL / INNGEST_API_BASE_URL (or INNGEST_DEV for a local dev server)",
                )
            if reply.status_code not in (401, 403):
                break
        assert reply is not None
        return self._register_reply(reply)

    @staticmethod
    def _register_reply(reply: httpx.Response) -> Response:
        sync_kind = {protocol.Header.SYNC_KIND: "out_of_band"}
        try:
            parsed = reply.json()
        except ValueError:
            parsed = None
        if 200 <= reply.status_code < 300:
            modified = bool(parsed.get("modified")) if isinstance(parsed, dict) else False
            return _json_response(200, {"message": "Successfully synced.", "modified": modified}, sync_kind)
        detail = parsed.get("error") if isinstance(parsed, dict) else None
        detail = detail or reply.text[:300] or reply.reason_phrase
        response = error_response(
            500,
            "sync_failed",
            f"the orchestrator refused the sync with HTTP {reply.status_code}: {detail}",
            status=reply.status_code,
        )
        response.headers.update(sync_kind)
        return response

    # -- POST --------------------------------------------------------------------------------

    def _prepare_post(self, request: Request, settings: Settings) -> _Prepared:
        started = time.monotonic()
        key = self._verify(request, settings, required=True)
        probe = request.query.get("probe")
        if probe is not None:
            if probe == "trust":
                raise _Reply(self._finalise(_json_response(200, {}), key))
            raise _Reply(
                self._finalise(error_response(400, "unknown_probe", f"unknown probe {probe!r}"), key)
            )
        fn_id = request.query.get("fnId")
        if not fn_id:
            raise _Reply(
                self._finalise(error_response(400, "bad_request", "the fnId query parameter is missing"), key)
            )
        function = self._by_id.get(fn_id)
        if function is None:
            raise _Reply(
                self._finalise(
                    error_response(
                        500,
                        "function_not_found",
                        f"function {fn_id!r} is not served here (this app serves "
                        f"{sorted(f.fully_qualified_id for f in self.functions)}); it may appear after the "
                        "next sync",
                    ),
                    key,
                )
            )
        try:
            raw = safejson.loads(request.body)
        except ValueError as exc:
            raise _Reply(
                self._finalise(error_response(400, "bad_request", f"the body is not valid JSON: {exc}"), key)
            ) from exc
        try:
            call = protocol.CallRequest.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise _Reply(
                self._finalise(
                    error_response(
                        400, "bad_request", f"the body is not a call request: {where}: {first['msg']}"
                    ),
                    key,
                )
            ) from exc
        step_id = request.query.get("stepId") or request.header(protocol.Header.STEP_ID) or "step"
        target = None if step_id == "step" else step_id
        config = function.checkpointing
        checkpointed = (
            config is not None
            and target is None
            and bool(call.ctx.fn_id)
            and not call.ctx.disable_immediate_execution
        )
        state = middleware.new_run_state(
            function,
            call,
            request.headers,
            target_step=target,
            checkpointing=config if checkpointed else None,
            started=started,
        )
        if type(self).around_thread_work is not CommHandler.around_thread_work:
            state.around_thread = self.around_thread_work
        return _Prepared(
            state, key, self._checkpoint_target(request, call, settings) if checkpointed else None
        )

    def _checkpoint_target(
        self, request: Request, call: protocol.CallRequest, settings: Settings
    ) -> checkpoint.CheckpointTarget:
        ctx = call.ctx
        generation = request.header(protocol.Header.GENERATION_ID)
        generation_id = ctx.generation_id
        if generation is not None and generation.lstrip("-").isdigit():
            generation_id = int(generation)
        return checkpoint.CheckpointTarget(
            api_base_url=settings.api_base_url,
            run_id=ctx.run_id,
            fn_id=ctx.fn_id or "",
            qi_id=ctx.qi_id,
            request_id=request.header(protocol.Header.REQUEST_ID) or ctx.request_id,
            generation_id=generation_id,
            request_started_at_ms=int(time.time() * 1000),
            signing_key=settings.signing_key,
            signing_key_fallback=settings.signing_key_fallback,
            sdk_header=self._headers[protocol.Header.SDK],
        )

    def _execute(self, prepared: _Prepared) -> Response:
        """Run a call request on this thread (``def``) or on a private event loop (``async def``)."""
        state, target, config = prepared.state, prepared.target, prepared.state.checkpointing
        if state.function.is_async:
            # a private loop that ends with this request: its checkpoints go through the process's
            # sender thread (RunCheckpointer.sync) rather than a sender task set up on the loop
            return _run_coroutine(lambda: self._execute_async(prepared, private_loop=True))
        settings = self.client.settings
        if target is not None and config is not None:
            state.make_checkpointer = lambda: checkpoint.RunCheckpointer.sync(target, config)
        failure = self._load_state_sync(state, settings)
        if failure is not None:
            return failure
        try:
            outcome = execution.run_sync(state)
        except BaseException:
            if state.checkpointer is not None:
                state.checkpointer.close()
            raise
        return execution.finish(state, outcome)

    async def _execute_async(self, prepared: _Prepared, *, private_loop: bool = False) -> Response:
        state, target, config = prepared.state, prepared.target, prepared.state.checkpointing
        settings = self.client.settings
        loop = asyncio.get_running_loop()
        if target is not None and config is not None:
            if private_loop:
                state.make_checkpointer = lambda: checkpoint.RunCheckpointer.sync(target, config)
            else:
                state.make_checkpointer = lambda: checkpoint.RunCheckpointer.for_loop(target, config, loop)
        failure = await self._load_state_async(state, settings)
        if failure is not None:
            return failure
        try:
            if state.function.is_async:
                outcome = await execution.run_async(state)
            else:
                outcome = await self._in_pool(loop, execution.run_sync, state)
        except BaseException:  # cancelled (client gone, shutdown): stop the checkpointer's timers
            if state.checkpointer is not None:
                state.checkpointer.close()
            raise
        return await execution.finish_async(state, outcome)

    # -- use_api: state too large to inline --------------------------------------------------

    @staticmethod
    def _apply_state(state: execution.RunState, actions: Any, batch: Any) -> Response | None:
        if not isinstance(actions, dict) or not isinstance(batch, list):
            return error_response(
                500, "use_api_failed", "the orchestrator's run state API answered with an unexpected shape"
            )
        state.memos = actions
        state.replaying = bool(actions)
        if batch:
            state.call.events = [e for e in batch if isinstance(e, dict)]
        return None

    def _load_state_sync(self, state: execution.RunState, settings: Settings) -> Response | None:
        if not (state.call.use_api or state.call.ctx.use_api):
            return None
        try:
            actions, batch = load_run_state(settings, state.run_id)
        except RunStateError as exc:
            return error_response(500, "use_api_failed", f"could not load the run's state: {exc}")
        return self._apply_state(state, actions, batch)

    async def _load_state_async(self, state: execution.RunState, settings: Settings) -> Response | None:
        if not (state.call.use_api or state.call.ctx.use_api):
            return None
        try:
            actions, batch = await load_run_state_async(settings, state.run_id)
        except RunStateError as exc:
            return error_response(500, "use_api_failed", f"could not load the run's state: {exc}")
        return self._apply_state(state, actions, batch)


# -- the orchestrator's run state API (GET /v0/runs/{id}/actions and /batch) ------------------------


class RunStateError(Exception):
    """The orchestrator's run state API could not be read (unreachable, an error status, not JSON)."""


def _run_state_requests(settings: Settings, run_id: str) -> tuple[list[str], list[dict[str, str]]]:
    """The two URLs (memoised steps, then the triggering events) and the credentials to try in turn."""
    base = f"{settings.api_base_url.rstrip('/')}/v0/runs/{run_id}"
    keys = [k for k in (settings.signing_key, settings.signing_key_fallback) if k]
    auth = [{protocol.Header.AUTHORIZATION: f"Bearer {signing.hash_signing_key(k)}"} for k in keys]
    return [f"{base}/actions", f"{base}/batch"], auth or [{}]


def load_run_state(settings: Settings, run_id: str) -> tuple[Any, Any]:
    """``(actions, batch)`` of a run, as the orchestrator stores them (shapes unchecked)."""
    from eagerstep.core.client import http_client

    urls, auth = _run_state_requests(settings, run_id)
    loaded: list[Any] = []
    for url in urls:
        response: httpx.Response | None = None
        for headers in auth:  # the current key, then the fallback key
            try:
                response = http_client().get(url, headers=headers)
            except httpx.HTTPError as exc:
                raise RunStateError(repr(exc)) from exc
            if response.status_code not in (401, 403):
                break
        assert response is not None
        loaded.append(_decode_api(response))
    return loaded[0], loaded[1]


async def load_run_state_async(settings: Settings, run_id: str) -> tuple[Any, Any]:
    """:func:`load_run_state` on the event loop."""
    from eagerstep.core.client import async_http_client

    urls, auth = _run_state_requests(settings, run_id)
    loaded: list[Any] = []
    for url in urls:
        response: httpx.Response | None = None
        for headers in auth:
            try:
                response = await async_http_client().get(url, headers=headers)
            except httpx.HTTPError as exc:
                raise RunStateError(repr(exc)) from exc
            if response.status_code not in (401, 403):
                break
        assert response is not None
        loaded.append(_decode_api(response))
    return loaded[0], loaded[1]


def _decode_api(response: httpx.Response) -> Any:
    if response.status_code >= 300:
        raise RunStateError(f"GET {response.request.url} answered HTTP {response.status_code}")
    try:
        payload = response.json()
    except ValueError as exc:
        raise RunStateError(f"GET {response.request.url} answered with invalid JSON") from exc
    if isinstance(payload, dict) and set(payload) <= {"data", "metadata"} and "data" in payload:
        return payload["data"]  # the Inngest server wraps its answer
    return payload


def _hashed(key: str | None) -> str | None:
    if not key:
        return None
    try:
        return signing.hash_signing_key(key)
    except ValueError:
        return None


def _run_coroutine(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code: here, or in a helper thread if a loop runs here."""

    async def main() -> T:
        return await factory()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    box: list[Any] = []
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            box.append((True, ctx.run(asyncio.run, main())))
        except BaseException as exc:
            box.append((False, exc))

    thread = threading.Thread(target=target, name="eagerstep-async-fn", daemon=True)
    thread.start()
    thread.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]
