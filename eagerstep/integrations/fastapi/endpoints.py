"""Durable endpoints for FastAPI: ``@durable_endpoint(client)`` under ``@app.post(...)`` (or a router's).

The path operation keeps its parameters, FastAPI still parses and validates them, and it takes one
more, ``ctx`` (left out of the signature FastAPI sees). Its return value goes through the route's
``response_model`` and ``status_code`` as usual; the resulting response is what the run records.
``def`` path operations run in FastAPI's thread pool, ``async def`` ones on the loop.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response as StarletteResponse

from eagerstep.core.checkpoint import Checkpointing
from eagerstep.core.client import Client
from eagerstep.core.comm import Request as CommRequest
from eagerstep.core.comm import Response as CommResponse
from eagerstep.core.endpoint import APIResult, AsyncResponse, DurableEndpoint

FRAMEWORK = "fastapi"
_REQUEST = "eagerstep_request"


def _to_result(response: StarletteResponse) -> APIResult:
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in response.raw_headers}
    headers.pop("content-length", None)
    return {"status": response.status_code, "headers": headers, "body": bytes(response.body).decode()}


def _native(request: Request, value: Any, sub: StarletteResponse | None) -> StarletteResponse:
    """The response FastAPI would make of ``value`` (its response_model and status_code applied,
    and what the view set on its ``response: Response`` parameter, ``sub``)."""
    if isinstance(value, StarletteResponse):
        return value
    route = request.scope.get("route")
    status = 200
    if isinstance(route, APIRoute):
        status = route.status_code or 200
        if route.response_model is not None:
            adapter: TypeAdapter[Any] = TypeAdapter(route.response_model)
            value = adapter.dump_python(
                adapter.validate_python(value, from_attributes=True),
                mode="json",
                by_alias=route.response_model_by_alias,
                exclude_unset=route.response_model_exclude_unset,
                exclude_none=route.response_model_exclude_none,
            )
    response = JSONResponse(jsonable_encoder(value), status_code=status)
    if sub is not None:
        if sub.status_code:
            response.status_code = sub.status_code
        for name, header in sub.raw_headers:
            if name not in (b"content-length", b"content-type"):
                response.raw_headers.append((name, header))
    return response


def _resolved(view: Callable[..., Any], param: inspect.Parameter) -> inspect.Parameter:
    """``param`` with a string annotation evaluated where the view was written (FastAPI would
    evaluate it in this module, the wrapper's)."""
    if not isinstance(param.annotation, str):
        return param
    try:
        hint = typing.get_type_hints(view).get(param.name, param.annotation)
    except Exception:
        return param
    return param.replace(annotation=hint)


def _error(exc: HTTPException) -> StarletteResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _response(response: CommResponse) -> StarletteResponse:
    return StarletteResponse(response.body, status_code=response.status, headers=response.headers)


def durable_endpoint(
    client: Client,
    *,
    id: str | None = None,
    retries: int | None = None,
    async_response: AsyncResponse = "redirect",
    redirect_url: str | None = None,
    checkpointing: bool | Checkpointing | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make a path operation durable; its function id is ``id`` (default: the function's name)."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        endpoint = DurableEndpoint(
            client,
            id=id or view.__name__,
            retries=retries,
            async_response=async_response,
            redirect_url=redirect_url,
            checkpointing=checkpointing,
            framework=FRAMEWORK,
        )
        signature = inspect.signature(view)
        if "ctx" not in signature.parameters:
            raise TypeError(f"{view.__name__} needs a ctx parameter to be a durable endpoint")
        params = [_resolved(view, p) for name, p in signature.parameters.items() if name != "ctx"]
        # FastAPI fills one Request parameter only: the view's own if it has one, else ours.
        own = next((p.name for p in params if p.annotation is Request), None)
        sub = next((p.name for p in params if p.annotation in (StarletteResponse, Response)), None)
        if own is None:
            params.append(inspect.Parameter(_REQUEST, inspect.Parameter.KEYWORD_ONLY, annotation=Request))
        is_async = inspect.iscoroutinefunction(view)

        @functools.wraps(view)
        async def wrapper(**kwargs: Any) -> Any:
            request: Request = kwargs[own] if own is not None else kwargs.pop(_REQUEST)
            comm = CommRequest(
                method=request.method,
                url=str(request.url),
                headers=dict(request.headers),
                query=dict(request.query_params),
                body=await request.body(),
            )
            if is_async:

                async def run_async_view(ctx: Any) -> StarletteResponse:
                    try:
                        return _native(request, await view(**kwargs, ctx=ctx), kwargs.get(sub or ""))
                    except HTTPException as exc:
                        return _error(exc)

                result = await endpoint.run_async(comm, run_async_view, _to_result)
            else:

                def run_view(ctx: Any) -> StarletteResponse:
                    try:
                        return _native(request, view(**kwargs, ctx=ctx), kwargs.get(sub or ""))
                    except HTTPException as exc:
                        return _error(exc)

                result = await run_in_threadpool(endpoint.run, comm, run_view, _to_result)
            if result.has_native:
                return result.native
            assert result.response is not None
            return _response(result.response)

        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.durable_endpoint = endpoint  # type: ignore[attr-defined]
        return wrapper

    return decorate
