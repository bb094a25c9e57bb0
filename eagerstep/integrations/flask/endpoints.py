"""Durable endpoints for Flask: ``@durable_endpoint(client)`` under ``@app.route`` (or a blueprint's).

The view takes a ``ctx`` keyword argument (``ctx.step.run(...)``) besides its URL parameters and
returns anything Flask accepts as a response.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Response as FlaskResponse
from flask import current_app
from flask import request as flask_request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

from eagerstep.core.checkpoint import Checkpointing
from eagerstep.core.client import Client
from eagerstep.core.comm import Request as CommRequest
from eagerstep.core.endpoint import APIResult, AsyncResponse, DurableEndpoint
from eagerstep.core.steps import Context

FRAMEWORK = "flask"


def _to_result(response: WerkzeugResponse) -> APIResult:
    return {
        "status": response.status_code,
        "headers": {k.lower(): v for k, v in response.headers.items() if k.lower() != "content-length"},
        "body": response.get_data(as_text=True),
    }


def durable_endpoint(
    client: Client,
    *,
    id: str | None = None,
    retries: int | None = None,
    async_response: AsyncResponse = "redirect",
    redirect_url: str | None = None,
    checkpointing: bool | Checkpointing | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make a Flask view durable; its function id is ``id`` (default: the view's name)."""

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

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            def run_view(ctx: Context) -> WerkzeugResponse:
                try:
                    returned = view(*args, ctx=ctx, **kwargs)
                except HTTPException as exc:  # abort(404) and friends are answers, not failures
                    return exc.get_response()
                return current_app.make_response(returned)

            request = CommRequest(
                method=flask_request.method,
                url=flask_request.url,
                headers=dict(flask_request.headers),
                query=flask_request.args.to_dict(),
                body=flask_request.get_data(cache=True),
            )
            result = endpoint.run(request, run_view, _to_result)
            if result.has_native:
                return result.native
            assert result.response is not None
            response = result.response
            return FlaskResponse(response.body, status=response.status, headers=response.headers)

        wrapper.durable_endpoint = endpoint  # type: ignore[attr-defined]
        return wrapper

    return decorate
