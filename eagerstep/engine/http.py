"""The engine's HTTP API as a plain ASGI app (served by uvicorn; no framework in the hot path).

A small regex router is all the API needs; skipping a framework keeps a checkpoint call, the
most frequent request, to a few dozen microseconds of Python on top of the HTTP parser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from eagerstep.core import safejson
from eagerstep.engine import eventlog, gql
from eagerstep.engine.dashboard import DashboardRoutes
from eagerstep.engine.engine import Engine
from eagerstep.engine.events import PartialEventsError
from eagerstep.engine.model import SERVER_KIND, EngineError

MAX_BODY_BYTES = 32 * 1024 * 1024

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
#: status, content type, body[, more headers]
Reply = tuple[int, bytes, bytes] | tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]


class Request:
    def __init__(self, scope: Scope, body: bytes, params: dict[str, str]) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        self.body = body
        self.params = params

    def json(self, *, allow_empty: bool = False) -> Any:
        if not self.body.strip():
            if allow_empty:
                return {}
            raise EngineError("the request body is empty; expected JSON")
        try:
            return safejson.loads(self.body)
        except ValueError as exc:
            raise EngineError(f"the request body is not valid JSON: {exc}") from exc


JSON = b"application/json"


def _json(status: int, value: Any) -> Reply:
    return status, JSON, json.dumps(value, separators=(",", ":")).encode()


Handler = Callable[[Request], Awaitable[Reply]]


class EngineApp:
    """ASGI application exposing the Inngest server API of an :class:`Engine`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        routes: list[tuple[str, str, Handler]] = [
            *DashboardRoutes(engine).routes(),
            ("GET", r"/health", self.health),
            ("POST", r"/fn/register", self.register),
            ("POST", r"/e/(?P<key>[^/]*)", self.events),
            ("POST", r"/v1/(?:checkpoint|http/runs)/(?P<run_id>[^/]+)/async", self.checkpoint),
            ("POST", r"/v1/(?:checkpoint|http/runs)", self.sync_run),
            ("POST", r"/v1/(?:checkpoint|http/runs)/(?P<run_id>[^/]+)/steps", self.sync_checkpoint),
            ("GET", r"/v1/(?:checkpoint|http/runs)/(?P<run_id>[^/]+)/output", self.run_output),
            ("GET", r"/v0/runs/(?P<run_id>[^/]+)/actions", self.actions),
            ("GET", r"/v0/runs/(?P<run_id>[^/]+)/batch", self.batch),
            ("GET", r"/v1/events/(?P<event_id>[^/]+)/runs", self.event_runs),
            ("GET", r"/v1/events/(?P<event_id>[^/]+)", self.get_event),
            ("GET", r"/v1/events", self.list_events),
            ("GET", r"/v1/runs", self.list_runs),
            ("GET", r"/v1/runs/(?P<run_id>[^/]+)", self.get_run),
            ("POST", r"/v1/runs/(?P<run_id>[^/]+)/cancel", self.cancel_run),
            ("GET", r"/v1/dev/apps", self.list_apps),
            ("POST", r"/v1/dev/apps", self.sync_app),
            ("GET", r"/v1/dev/timers", self.list_timers),
            ("POST", r"/v1/dev/timers/fire", self.fire_timers),
            ("GET", r"/v1/dev/stats", self.stats),
            ("POST", r"/v0/gql", self.graphql),
        ]
        self.routes = [(method, re.compile(pattern + "$"), handler) for method, pattern, handler in routes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        reply = await self._dispatch(scope, receive)
        status, content_type, body = reply[0], reply[1], reply[2]
        headers = [
            *(reply[3] if len(reply) == 4 else ()),
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"x-inngest-server-kind", SERVER_KIND.encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _dispatch(self, scope: Scope, receive: Receive) -> Reply:
        path: str = scope["path"].rstrip("/") or "/"
        allowed: list[str] = []
        for method, pattern, handler in self.routes:
            match = pattern.match(path)
            if match is None:
                continue
            if method != scope["method"]:
                allowed.append(method)
                continue
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    return _json(413, {"error": f"the request body is over {MAX_BODY_BYTES} bytes"})
                chunks.append(chunk)
                if not message.get("more_body"):
                    break
            request = Request(scope, b"".join(chunks), {k: v for k, v in match.groupdict().items() if v})
            try:
                return await handler(request)
            except EngineError as exc:
                return _json(exc.status, {"error": exc.message, "status": exc.status})
        if allowed:
            return _json(405, {"error": f"method {scope['method']} not allowed; use {', '.join(allowed)}"})
        return _json(404, {"error": f"no such endpoint: {scope['method']} {path}"})

    # ---------------------------------------------------------------- handlers

    async def health(self, request: Request) -> Reply:
        return _json(200, {"status": 200, "message": "OK"})

    async def register(self, request: Request) -> Reply:
        return _json(200, self.engine.register(request.json(), request.headers))

    async def events(self, request: Request) -> Reply:
        if not request.params.get("key"):
            return _json(401, {"error": "an event key is required in the path: POST /e/{key}", "status": 401})
        try:
            ids = self.engine.accept_events(request.json(), request.headers.get("x-inngest-event-id-seed"))
        except EngineError as exc:
            ids = exc.ids if isinstance(exc, PartialEventsError) else []
            return _json(exc.status, {"ids": ids, "status": exc.status, "error": exc.message})
        return _json(200, {"ids": ids, "status": 200})

    async def checkpoint(self, request: Request) -> Reply:
        self.engine.check_auth(request.headers.get("authorization"))
        self.engine.checkpoint(request.params["run_id"], request.json())
        return 200, JSON, b""

    async def sync_run(self, request: Request) -> Reply:
        self.engine.check_auth(request.headers.get("authorization"))
        return _json(200, self.engine.endpoints.create_run(request.json()))

    async def sync_checkpoint(self, request: Request) -> Reply:
        self.engine.check_auth(request.headers.get("authorization"))
        self.engine.endpoints.checkpoint_steps(request.params.get("run_id"), request.json())
        return 200, JSON, b""

    async def run_output(self, request: Request) -> Reply:
        status, headers, body = await self.engine.endpoints.output(
            request.params["run_id"], request.query.get("token")
        )
        content_type = headers.pop("content-type", "application/json").encode("latin-1")
        extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        return status, content_type, body, extra

    async def actions(self, request: Request) -> Reply:
        self.engine.check_auth(request.headers.get("authorization"))
        return _json(200, self.engine.run_actions(request.params["run_id"]))

    async def batch(self, request: Request) -> Reply:
        self.engine.check_auth(request.headers.get("authorization"))
        return _json(200, self.engine.run_batch(request.params["run_id"]))

    async def event_runs(self, request: Request) -> Reply:
        return _json(200, {"data": self.engine.event_runs(request.params["event_id"])})

    async def get_event(self, request: Request) -> Reply:
        return _json(200, {"data": self.engine.get_event(request.params["event_id"])})

    async def list_events(self, request: Request) -> Reply:
        try:
            limit = int(request.query.get("limit") or "100")
        except ValueError as exc:
            raise EngineError("limit must be an integer") from exc
        events = eventlog.list_events(self.engine.db, request.query.get("name"), max(1, min(limit, 1000)))
        return _json(200, {"data": events, "metadata": {"fetched_at": None, "cached_until": None}})

    async def list_runs(self, request: Request) -> Reply:
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError as exc:
            raise EngineError("limit must be an integer") from exc
        return _json(200, {"data": self.engine.list_runs(max(1, min(limit, 1000)))})

    async def get_run(self, request: Request) -> Reply:
        return _json(200, {"data": self.engine.get_run(request.params["run_id"])})

    async def cancel_run(self, request: Request) -> Reply:
        status = self.engine.cancel_run(request.params["run_id"])
        return _json(200, {"data": {"run_id": request.params["run_id"], "status": status}})

    async def list_apps(self, request: Request) -> Reply:
        return _json(200, {"data": self.engine.list_apps()})

    async def sync_app(self, request: Request) -> Reply:
        body = request.json()
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise EngineError('expected {"url": "http://host:port/api/inngest"}')
        try:
            status, reply = await self.engine.sync_app(url)
        except Exception as exc:
            return _json(502, {"error": f"could not reach {url}: {exc}", "status": 502})
        return _json(200 if status < 300 else 502, {"url": url, "app_status": status, "app_reply": reply})

    async def graphql(self, request: Request) -> Reply:
        return _json(*gql.execute(self.engine, request.json()))

    async def stats(self, request: Request) -> Reply:
        return _json(200, {"data": self.engine.stats})

    async def list_timers(self, request: Request) -> Reply:
        return _json(200, {"data": self.engine.pending_timers()})

    async def fire_timers(self, request: Request) -> Reply:
        body = request.json(allow_empty=True)
        if not isinstance(body, dict):
            raise EngineError('expected a JSON object such as {"run_id": "..."} or {}')
        kinds = body.get("kinds")
        if kinds is not None and not (isinstance(kinds, list) and all(isinstance(k, str) for k in kinds)):
            raise EngineError('"kinds" must be a list of strings')
        fired = self.engine.fire_timers(run_id=body.get("run_id"), kinds=kinds)
        return _json(200, {"fired": fired})
