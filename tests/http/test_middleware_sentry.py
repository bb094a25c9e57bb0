"""The Sentry extra through every framework, with a transport that records what the SDK sends: one
event per final failure (not per retry), tagged with the run and the step."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("sentry_sdk")

import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from eagerstep.core.function import Function
from eagerstep.extras.sentry import SentryMiddleware
from tests.http import functions
from tests.http.clients.base import HttpClient
from tests.support.driver import drive
from tests.support.orchestrator import RecordingOrchestrator


class RecordingTransport(Transport):
    """Keeps the envelopes instead of sending them."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [
            item.payload.json
            for envelope in self.envelopes
            for item in envelope.items
            if item.type == "event" and item.payload.json is not None
        ]


@pytest.fixture
def transport() -> Iterator[RecordingTransport]:
    transport = RecordingTransport()
    # the default integrations stay on (logging among them: eagerstep logs every failed attempt,
    # which must not turn into more events); framework integrations are not enabled
    sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", transport=transport, auto_enabling_integrations=False)
    middleware = SentryMiddleware()
    attached: list[Function[Any]] = [functions.mw_fails, functions.mw_flow, functions.fails]
    for fn in attached:
        fn.middleware.append(middleware)
    yield transport
    for fn in attached:
        fn.middleware.remove(middleware)
    sentry_sdk.get_client().close()
    sentry_sdk.init(dsn=None)


def _tags(event: dict[str, Any]) -> dict[str, Any]:
    tags = event.get("tags") or {}
    return dict(tags) if isinstance(tags, dict) else {k: v for k, v in tags}


def test_a_step_failing_for_good_is_one_event_with_its_step(
    http_client: HttpClient, orchestrator: RecordingOrchestrator, transport: RecordingTransport
) -> None:
    result = drive(
        http_client.handle, functions.mw_fails.fully_qualified_id, orchestrator=orchestrator, max_attempts=3
    )
    assert result.status == "failed"
    sentry_sdk.flush(timeout=5)
    events = transport.events
    assert len(events) == 1, [e.get("exception") for e in events]
    tags = _tags(events[0])
    assert tags["eagerstep.run_id"] == result.run_id
    assert tags["eagerstep.step_id"] == "doomed"
    assert tags["eagerstep.function_id"] == functions.mw_fails.fully_qualified_id
    assert tags["eagerstep.attempt"] == 2
    exception = events[0]["exception"]["values"][-1]
    assert exception["type"] == "ValueError" and exception["value"] == "doomed fails on attempt 2"
    # the two earlier attempts are breadcrumbs on it
    crumbs = [c["message"] for c in events[0]["breadcrumbs"]["values"] if c.get("category") == "eagerstep"]
    assert len(crumbs) >= 2 and "attempt 1 of 3; the orchestrator retries" in crumbs[0]


def test_a_function_failing_for_good_is_one_event_and_a_retried_step_none(
    http_client: HttpClient, orchestrator: RecordingOrchestrator, transport: RecordingTransport
) -> None:
    ok = drive(http_client.handle, functions.mw_flow.fully_qualified_id, orchestrator=orchestrator)
    assert ok.completed  # its step "b" failed once and was retried: no event
    failed = drive(
        http_client.handle, functions.fails.fully_qualified_id, orchestrator=orchestrator, max_attempts=2
    )
    assert failed.status == "failed"
    sentry_sdk.flush(timeout=5)
    events = transport.events
    assert len(events) == 1
    tags = _tags(events[0])
    assert tags["eagerstep.run_id"] == failed.run_id and "eagerstep.step_id" not in tags
    assert events[0]["exception"]["values"][-1]["value"] == "boom"
