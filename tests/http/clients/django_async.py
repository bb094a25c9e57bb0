"""Django's async view (async_urls.py) through django.test.AsyncClient on one long-lived loop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.test import AsyncClient

from eagerstep.core.comm import Response
from tests.http.clients.base import LoopThread, native_headers
from tests.http.clients.django import DjangoHttpClient


class DjangoAsyncHttpClient(DjangoHttpClient):
    path = "/api/inngest-async"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.async_client = AsyncClient(raise_request_exception=False)
        self.loop = LoopThread()

    def send(self, method: str, path_and_query: str, body: bytes, headers: Mapping[str, str]) -> Response:
        extra = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        content_type = headers.get("content-type", headers.get("Content-Type", "application/json"))
        native = self.loop.run(
            self.async_client.generic(method, path_and_query, body, content_type=content_type, headers=extra)
        )
        return Response(native.status_code, native_headers(native.items()), native.content)

    def close(self) -> None:
        self.loop.close()
        super().close()
