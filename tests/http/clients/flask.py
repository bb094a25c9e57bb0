"""Flask: the EagerStep extension (settings from app.config) through Flask's test client."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from eagerstep.core.comm import Response
from eagerstep.integrations.flask import EagerStep
from tests.http import functions
from tests.http.clients.base import HttpClient, native_headers


class FlaskHttpClient(HttpClient):
    framework = "flask"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.app = Flask(__name__)
        self.app.config.update({f"EAGERSTEP_{key}": value for key, value in self.settings.items()})
        EagerStep(self.app, client=functions.client, functions=functions.FUNCTIONS)
        self.client = self.app.test_client()

    def send(self, method: str, path_and_query: str, body: bytes, headers: Mapping[str, str]) -> Response:
        native = self.client.open(path_and_query, method=method, data=body, headers=dict(headers))
        return Response(native.status_code, native_headers(native.headers.items()), native.get_data())
