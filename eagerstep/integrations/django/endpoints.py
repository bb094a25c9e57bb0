"""Durable endpoints for Django: ``@durable_endpoint()`` on function views (``def`` or ``async def``),
``DurableEndpointMixin`` for class-based views.

The view takes a ``ctx`` keyword argument (``ctx.step.run(...)``) and returns an ``HttpResponse``.
The client is ``EAGERSTEP["CLIENT"]`` unless one is given. The orchestrator's re-entry requests
carry no CSRF token; they are signed instead, so CSRF is checked here, for ordinary requests only.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseBase,
    HttpResponseForbidden,
    HttpResponseNotFound,
)

from eagerstep.core import protocol
from eagerstep.core.checkpoint import Checkpointing
from eagerstep.core.client import Client
from eagerstep.core.comm import Request as CommRequest
from eagerstep.core.comm import Response as CommResponse
from eagerstep.core.endpoint import APIResult, AsyncResponse, DurableEndpoint

FRAMEWORK = "django"
_CSRF = "django.middleware.csrf.CsrfViewMiddleware"


def _to_result(response: HttpResponseBase) -> APIResult:
    headers = {k.lower(): v for k, v in response.items() if k.lower() != "content-length"}
    body = "" if getattr(response, "streaming", False) else response.content.decode("utf-8", "replace")  # type: ignore[attr-defined]
    return {"status": response.status_code, "headers": headers, "body": body}


def _to_native(response: CommResponse) -> HttpResponse:
    native = HttpResponse(response.body, status=response.status)
    for key, value in response.headers.items():
        native[key] = value
    return native


def _as_response(exc: Exception) -> HttpResponseBase | None:
    """Django's control-flow exceptions are answers, not failures of the run."""
    if isinstance(exc, Http404):
        return HttpResponseNotFound(str(exc))
    if isinstance(exc, PermissionDenied):
        return HttpResponseForbidden(str(exc))
    if isinstance(exc, (BadRequest, SuspiciousOperation)):
        return HttpResponseBadRequest(str(exc))
    return None


def _comm_request(request: HttpRequest) -> CommRequest:
    return CommRequest(
        method=request.method or "GET",
        url=request.build_absolute_uri(),
        headers=dict(request.headers),
        query={key: request.GET[key] for key in request.GET},
        body=request.body,
    )


def _csrf_refusal(request: HttpRequest, view: Callable[..., Any]) -> HttpResponseBase | None:
    """Run the CSRF check Django would have run (when its middleware is on) on a first request."""
    if request.headers.get(protocol.Header.RUN_ID) or _CSRF not in getattr(settings, "MIDDLEWARE", ()):
        return None
    from django.middleware.csrf import CsrfViewMiddleware

    refusal: HttpResponseBase | None = CsrfViewMiddleware(lambda r: HttpResponse()).process_view(
        request, view, (), {}
    )
    return refusal


class _Lazy:
    """The view's DurableEndpoint, made on first use (the Django client is configured by then)."""

    def __init__(self, client: Client | None, view: Callable[..., Any], options: dict[str, Any]) -> None:
        self.client, self.view, self.options = client, view, options
        self.endpoint: DurableEndpoint | None = None

    def get(self) -> DurableEndpoint:
        if self.endpoint is None:
            from eagerstep.integrations.django import get_client

            options = {"id": self.view.__name__, **self.options}
            self.endpoint = DurableEndpoint(self.client or get_client(), framework=FRAMEWORK, **options)
        return self.endpoint


def durable_endpoint(
    client: Client | None = None,
    *,
    id: str | None = None,
    retries: int | None = None,
    async_response: AsyncResponse = "redirect",
    redirect_url: str | None = None,
    checkpointing: bool | Checkpointing | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make a function view durable; its function id is ``id`` (default: the view's name)."""
    options: dict[str, Any] = {
        "retries": retries,
        "async_response": async_response,
        "redirect_url": redirect_url,
        "checkpointing": checkpointing,
    }
    if id:
        options["id"] = id

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        lazy = _Lazy(client, view, options)

        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
                refusal = _csrf_refusal(request, view)
                if refusal is not None:
                    return refusal

                async def run_view(ctx: Any) -> HttpResponseBase:
                    try:
                        response: HttpResponseBase = await view(request, *args, ctx=ctx, **kwargs)
                    except Exception as exc:
                        answer = _as_response(exc)
                        if answer is None:
                            raise
                        return answer
                    return response

                result = await lazy.get().run_async(_comm_request(request), run_view, _to_result)
                return result.native if result.has_native else _to_native(result.response)  # type: ignore[arg-type]

            wrapper: Callable[..., Any] = async_wrapper
        else:

            @functools.wraps(view)
            def sync_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
                refusal = _csrf_refusal(request, view)
                if refusal is not None:
                    return refusal

                def run_view(ctx: Any) -> HttpResponseBase:
                    try:
                        response: HttpResponseBase = view(request, *args, ctx=ctx, **kwargs)
                    except Exception as exc:
                        answer = _as_response(exc)
                        if answer is None:
                            raise
                        return answer
                    return response

                result = lazy.get().run(_comm_request(request), run_view, _to_result)
                return result.native if result.has_native else _to_native(result.response)  # type: ignore[arg-type]

            wrapper = sync_wrapper
        wrapper.csrf_exempt = True  # type: ignore[attr-defined]  # checked above, for first requests
        return wrapper

    return decorate


class DurableEndpointMixin:
    """For class-based views: ``class Checkout(DurableEndpointMixin, View)``; handlers take ``ctx``.

    Options go in ``durable_endpoint_options`` (``{"id": ..., "retries": ...}``).
    """

    durable_endpoint_options: dict[str, Any] = {}

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., Any]:
        view: Callable[..., Any] = super().as_view(**initkwargs)  # type: ignore[misc]
        options = {"id": cls.__name__, **cls.durable_endpoint_options}

        def dispatch(request: HttpRequest, *args: Any, ctx: Any, **kwargs: Any) -> Any:
            return view(request, *args, ctx=ctx, **kwargs)

        if getattr(cls, "view_is_async", False):

            async def async_dispatch(request: HttpRequest, *args: Any, ctx: Any, **kwargs: Any) -> Any:
                return await view(request, *args, ctx=ctx, **kwargs)

            async_dispatch.__name__ = cls.__name__
            return durable_endpoint(**options)(async_dispatch)
        dispatch.__name__ = cls.__name__
        return durable_endpoint(**options)(dispatch)
