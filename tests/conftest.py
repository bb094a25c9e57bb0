"""Shared fixtures: a recording orchestrator on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.orchestrator import RecordingOrchestrator


@pytest.fixture
def orchestrator() -> Iterator[RecordingOrchestrator]:
    """A running :class:`RecordingOrchestrator`; ``orchestrator.url`` is its API base URL."""
    with RecordingOrchestrator() as orch:
        yield orch
