"""The serve views: ``serve`` (sync, for WSGI) and ``serve_async`` (for ASGI)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from eagerstep.core.messages import Request, Response
from eagerstep.integrations._common import read_limited
from eagerstep.integrations.django.conf import eagerstep_settings
from eagerstep.integrations.django.handler import get_handler


class _EveryDatabase(frozenset[str]):
    """``_non_atomic_requests`` for every alias: a run must never sit inside one request transaction."""

    def __contains__(self, alias: object) -> bool:
        return True


def _exempt(view: Any) -> Any:
    # Attributes rather than decorators: Django 4.2's decorators wrap async views in sync functions.
    view.csrf_exempt = True
    view.login_required = False  # LoginRequiredMiddleware (Django 5.1+)
    view._non_atomic_requests = _EveryDatabase()
    return view


def to_request(request: HttpRequest) -> Request:
    # request.read() instead of request.body: .body refuses anything over DATA_UPLOAD_MAX_MEMORY_SIZE
    # (2.5 MB by default), while call requests go up to ~4 MB; MAX_BODY_BYTES is our own limit.
    body = read_limited(request.read, int(eagerstep_settings.MAX_BODY_BYTES))
    return Request(
        method=request.method or "GET",
        url=request.build_absolute_uri(),
        headers=dict(request.headers),
        query={key: request.GET[key] for key in request.GET},
        body=body,
    )


def to_response(response: Response) -> HttpResponse:
    native = HttpResponse(response.body, status=response.status)
    for key, value in response.headers.items():
        native[key] = value
    return native


@_exempt
def serve(request: HttpRequest) -> HttpResponse:
    return to_response(get_handler().handle(to_request(request)))


@_exempt
async def serve_async(request: HttpRequest) -> HttpResponse:
    return to_response(await get_handler().handle_async(to_request(request)))
