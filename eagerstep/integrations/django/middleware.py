"""``EagerStepMiddleware``: ``request.eagerstep`` (the client) and, with ``DEFER_EVENTS``, deferred sends.

With ``EAGERSTEP["DEFER_EVENTS"] = True``, events sent while a request is handled go out only if the
response is a success (status < 400) and, for events sent inside ``transaction.atomic()``, only once
that transaction commits: a rolled-back block sends nothing. With ``OUTBOX_SWEEP_INTERVAL`` (and
``OUTBOX``) it starts the outbox sweeper when the server loads the middleware.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.db import connections
from django.http import HttpRequest, HttpResponseBase

from eagerstep.core import deferred
from eagerstep.integrations.django.conf import eagerstep_settings, get_client


def _on_commit(using: str) -> deferred.Hold:
    def hold(release: Callable[[], None]) -> None:
        connection = connections[using]
        # Outside atomic(): release at once (without touching the connection, which is async-unsafe).
        if connection.in_atomic_block:
            connection.on_commit(release)
        else:
            release()

    return hold


class EagerStepMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if eagerstep_settings.OUTBOX and eagerstep_settings.OUTBOX_SWEEP_INTERVAL:
            from eagerstep.integrations.django import sweeper

            sweeper.start_sweeper(get_client())  # in the serving process, once it loads middleware
        if self.is_async:
            markcoroutinefunction(self)

    def _open(self, request: HttpRequest) -> tuple[deferred.DeferredScope, Any] | None:
        client = get_client()
        request.eagerstep = client  # type: ignore[attr-defined]
        if not eagerstep_settings.DEFER_EVENTS:
            return None
        return deferred.open_scope(client, hold=_on_commit(eagerstep_settings.DEFER_DATABASE))

    @staticmethod
    def _close(opened: tuple[deferred.DeferredScope, Any] | None, response: HttpResponseBase | None) -> None:
        if opened is None:
            return
        scope, token = opened
        if response is not None and response.status_code < 400:
            scope.commit()
        else:
            scope.discard()
        deferred.close_scope(token)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        opened = self._open(request)
        response = None
        try:
            response = self.get_response(request)
            return response
        finally:
            self._close(opened, response)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        opened = self._open(request)
        response = None
        try:
            response = await self.get_response(request)
            return response  # type: ignore[no-any-return]
        finally:
            self._close(opened, response)
