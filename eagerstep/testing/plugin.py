"""The pytest plugin: ``pytest_plugins = ["eagerstep.testing.plugin"]`` in your ``conftest.py``.

It adds one fixture, ``eagerstep_harness``: a factory that starts a :class:`Harness` for an app and
closes it when the test ends::

    def test_signup(eagerstep_harness):
        h = eagerstep_harness(wsgi(app), client)
        assert h.run("app/user.signed_up", {"email": "ada@example.com"}).completed
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from eagerstep.testing.harness import Harness
from eagerstep.testing.targets import Target

if TYPE_CHECKING:
    from eagerstep.core.client import Client

HarnessFactory = Callable[..., Harness]


@pytest.fixture
def eagerstep_harness() -> Iterator[HarnessFactory]:
    """``eagerstep_harness(target, client, **options)``: a started :class:`Harness`, closed after the test."""
    started: list[Harness] = []

    def start(target: Target, client: Client, **options: Any) -> Harness:
        harness = Harness(target, client, **options).start()
        started.append(harness)
        return harness

    try:
        yield start
    finally:
        for harness in reversed(started):
            harness.close()
