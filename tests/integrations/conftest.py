"""Let deferred sends finish before a test's orchestrator stops (a late retry would reach the next one)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eagerstep.core import deferred
from tests.support.orchestrator import RecordingOrchestrator


@pytest.fixture(autouse=True)
def drain_deferred_sends(orchestrator: RecordingOrchestrator) -> Iterator[None]:
    yield
    deferred.drain(10)
