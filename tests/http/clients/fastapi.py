"""FastAPI: router() with the lifespan running, through Starlette's TestClient."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI

with warnings.catch_warnings():  # newer Starlette asks for httpx2; httpx is what every version supports
    warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient")
    from fastapi.testclient import TestClient

from eagerstep.core.comm import Response
from eagerstep.integrations.fastapi import router
from tests.http import functions
from tests.http.clients.base import HttpClient, native_headers


class FastAPIHttpClient(HttpClient):
    framework = "fastapi"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        functions.client.set_settings_source(self.settings.get)
        self.app = FastAPI()
        self.app.include_router(router(functions.client, functions.FUNCTIONS), prefix="/api/inngest")
        self.client = TestClient(self.app, raise_server_exceptions=False)
        self.client.__enter__()

    def send(self, method: str, path_and_query: str, body: bytes, headers: Mapping[str, str]) -> Response:
        native = self.client.request(method, path_and_query, content=body, headers=dict(headers))
        return Response(native.status_code, native_headers(native.headers.items()), native.content)

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        functions.client.set_settings_source(None)
