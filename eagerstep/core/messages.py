"""The framework-neutral HTTP request and response: what adapters hand the core and get back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def _lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


@dataclass
class Request:
    """A framework-neutral HTTP request. Header lookups are case-insensitive.

    ``url`` is the full URL the client used (``scheme://host[:port]/path?query``); ``query`` the
    parsed query string (single values).
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        self._headers = _lower_keys(self.headers)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self._headers.get(name.lower(), default)


@dataclass
class Response:
    """A framework-neutral HTTP response; adapters copy it verbatim into their native type."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str, default: str | None = None) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return default

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None
