"""Core test fixtures: a clean INNGEST_* environment and small client/handler factories."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

SIGNING_KEY = "signkey-test-12345678abcdef0012345678abcdef00"
FALLBACK_KEY = "signkey-test-99999999abcdef0099999999abcdef00"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No INNGEST_* variable leaks in from the machine running the tests."""
    for name in list(os.environ):
        if name.startswith("INNGEST_"):
            monkeypatch.delenv(name)
    yield
