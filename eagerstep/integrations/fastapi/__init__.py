"""eagerstep for FastAPI: ``app.include_router(router(client, functions), prefix="/api/inngest")``."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import fastapi.routing
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response as FastAPIResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eagerstep.core import deferred, transport
from eagerstep.core.client import Client
from eagerstep.core.comm import CommHandler
from eagerstep.core.function import Function
from eagerstep.core.messages import Request as CommRequest
from eagerstep.integrations._common import DEFAULT_MAX_BODY_BYTES, SHUTDOWN_TIMEOUT

FRAMEWORK = "fast_api"
_STATE_KEY = "eagerstep_client"
_clients: dict[int, Client] = {}  # clients of the routers made in this process, for get_client()

_MERGES_LIFESPANS = hasattr(fastapi.routing, "_merge_lifespan_context")
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]  # the core answers 405 for all but GET/POST/PUT


async def shutdown() -> None:
    """Flush pending checkpoints and deferred events (bounded); run at the app's shutdown."""
    await transport.shutdown_async(SHUTDOWN_TIMEOUT)
    await asyncio.get_running_loop().run_in_executor(None, deferred.drain, SHUTDOWN_TIMEOUT)


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
    """``FastAPI(lifespan=lifespan)`` where routers' lifespans are not merged (FastAPI before 0.112)."""
    try:
        yield {_STATE_KEY: next(iter(_clients.values()))} if len(_clients) == 1 else {}
    finally:
        await shutdown()


def router(
    client: Client, functions: Sequence[Function[Any]], *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> APIRouter:
    """An APIRouter serving ``functions``; include it with ``prefix="/api/inngest"``.

    Its lifespan flushes the checkpoint sender at shutdown (merged into the app's on FastAPI 0.112+;
    on older versions pass ``lifespan=eagerstep.integrations.fastapi.lifespan`` to ``FastAPI``).
    """
    handler = CommHandler(client, list(functions), framework=FRAMEWORK, max_body_bytes=max_body_bytes)
    _clients[id(client)] = client

    @asynccontextmanager
    async def router_lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        try:
            yield {_STATE_KEY: client}
        finally:
            await shutdown()

    if _MERGES_LIFESPANS:
        api_router = APIRouter(lifespan=router_lifespan)
    else:  # FastAPI < 0.112 ignores an included router's lifespan but keeps its shutdown handlers
        with warnings.catch_warnings():  # Starlette deprecates these, but the old versions have nothing else
            warnings.simplefilter("ignore", DeprecationWarning)
            api_router = APIRouter(on_shutdown=[shutdown])

    @api_router.api_route("", methods=METHODS, include_in_schema=False)
    async def serve(request: Request) -> FastAPIResponse:
        body = bytearray()
        async for chunk in request.stream():  # stop reading past the limit: the core answers 413
            body += chunk
            if len(body) > max_body_bytes:
                break
        response = await handler.handle_async(
            CommRequest(
                method=request.method,
                url=str(request.url),
                headers=dict(request.headers),
                query=dict(request.query_params),
                body=bytes(body),
            )
        )
        return FastAPIResponse(response.body, status_code=response.status, headers=response.headers)

    return api_router


def get_client(request: Request) -> Client:
    """``client: Client = Depends(get_client)``: the middleware's client, the router's, or the only one."""
    found = request.scope.get("state", {}).get(_STATE_KEY)
    if isinstance(found, Client):
        return found
    if len(_clients) == 1:
        return next(iter(_clients.values()))
    raise RuntimeError(
        "eagerstep cannot tell which client to use; add "
        "app.add_middleware(eagerstep.integrations.fastapi.EagerStepMiddleware, client=client)"
    )


ClientDep = Annotated[Client, Depends(get_client)]
"""``def route(client: ClientDep)``: the same as ``client: Client = Depends(get_client)``."""


class EagerStepMiddleware:
    """Request-scoped client for ``get_client``; with ``defer_events=True``, events sent during a request
    go out only after a successful response (status < 400) and are dropped otherwise."""

    def __init__(self, app: ASGIApp, *, client: Client, defer_events: bool = False) -> None:
        self.app = app
        self.client = client
        self.defer_events = defer_events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})[_STATE_KEY] = self.client
        if not self.defer_events:
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        scope_, token = deferred.open_scope(self.client)
        try:
            await self.app(scope, receive, send_and_record)
        except BaseException:
            scope_.discard()
            raise
        else:
            scope_.commit() if status < 400 else scope_.discard()
        finally:
            deferred.close_scope(token)


__all__ = ["ClientDep", "EagerStepMiddleware", "get_client", "lifespan", "router", "shutdown"]
