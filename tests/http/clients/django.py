"""Django's sync view (urls.py) through django.test.Client."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import django
from django.conf import settings as django_settings
from django.test import Client
from django.test.utils import override_settings

from eagerstep.core.comm import Response
from tests.http.clients.base import HttpClient, native_headers


def setup_django() -> None:
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.integrations.django_project.settings")
    if not django_settings.configured or not django.apps.apps.ready:
        django.setup()


class DjangoHttpClient(HttpClient):
    framework = "django"
    path = "/api/inngest"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        setup_django()
        self._override = override_settings(EAGERSTEP={**django_settings.EAGERSTEP, **self.settings})
        self._override.enable()
        self.client = Client(raise_request_exception=False)

    def send(self, method: str, path_and_query: str, body: bytes, headers: Mapping[str, str]) -> Response:
        extra = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        content_type = headers.get("content-type", headers.get("Content-Type", "application/json"))
        native = self.client.generic(method, path_and_query, body, content_type=content_type, headers=extra)
        return Response(native.status_code, native_headers(native.items()), native.content)

    def close(self) -> None:
        self._override.disable()
