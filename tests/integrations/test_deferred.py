"""core.deferred: the scope Client.send defers into, its commit/discard and background retries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

import eagerstep
from eagerstep.core import deferred
from tests.support.orchestrator import RecordingOrchestrator


@pytest.fixture
def client(orchestrator: RecordingOrchestrator) -> eagerstep.Client:
    return eagerstep.Client(
        app_id="deferred", dev=True, api_base_url=orchestrator.url, event_api_base_url=orchestrator.url
    )


def names(orchestrator: RecordingOrchestrator) -> list[str]:
    return [event["name"] for call in orchestrator.calls_to("/e/") for event in call.json]


def test_send_inside_a_scope_waits_for_commit(
    client: eagerstep.Client, orchestrator: RecordingOrchestrator
) -> None:
    with deferred.deferred(client) as scope:
        assert client.send({"name": "a/one", "data": {}}) == []
        assert client.send([{"name": "a/two", "data": {}}]) == []
        assert [e["name"] for e in scope.pending] == ["a/one", "a/two"]
        assert orchestrator.calls_to("/e/") == []
    assert scope.wait(10)
    assert names(orchestrator) == ["a/one", "a/two"]
    assert deferred.active_scope(client) is None


def test_exception_discards(client: eagerstep.Client, orchestrator: RecordingOrchestrator) -> None:
    with pytest.raises(RuntimeError), deferred.deferred(client) as scope:
        client.send({"name": "a/lost", "data": {}})
        raise RuntimeError("request failed")
    assert scope.state == "discarded" and scope.pending == []
    assert client.send({"name": "a/direct", "data": {}}) != []
    assert names(orchestrator) == ["a/direct"]


def test_scopes_are_per_client(client: eagerstep.Client, orchestrator: RecordingOrchestrator) -> None:
    other = eagerstep.Client(app_id="other", dev=True, event_api_base_url=orchestrator.url)
    scope, token = deferred.open_scope(client)
    try:
        assert deferred.active_scope(client) is scope
        assert deferred.active_scope(other) is None
        assert other.send({"name": "b/now", "data": {}}) != []
    finally:
        scope.discard()
        deferred.close_scope(token)
    assert names(orchestrator) == ["b/now"]


def test_hold_releases_only_what_its_callback_releases(
    client: eagerstep.Client, orchestrator: RecordingOrchestrator
) -> None:
    held: list[Callable[[], None]] = []
    scope, token = deferred.open_scope(client, hold=held.append)
    client.send({"name": "c/committed", "data": {}})
    client.send({"name": "c/rolled-back", "data": {}})
    held[0]()  # the first transaction commits; the second never does
    scope.commit()
    deferred.close_scope(token)
    assert scope.wait(10)
    assert names(orchestrator) == ["c/committed"]


def test_release_after_commit_is_sent_at_once(
    client: eagerstep.Client, orchestrator: RecordingOrchestrator
) -> None:
    held: list[Callable[[], None]] = []
    scope, token = deferred.open_scope(client, hold=held.append)
    client.send({"name": "d/late", "data": {}})
    assert scope.commit() is None  # nothing ready yet
    deferred.close_scope(token)
    held[0]()
    assert scope.wait(10)
    assert names(orchestrator) == ["d/late"]


def test_failed_sends_are_retried_then_logged(
    client: eagerstep.Client, orchestrator: RecordingOrchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    orchestrator.fail("/e/", status=500)
    scope = deferred.DeferredScope(client, attempts=3, backoff=0.01)
    scope.add([{"name": "e/doomed", "data": {}}])
    with caplog.at_level(logging.WARNING, logger="eagerstep"):
        scope.commit()
        assert scope.wait(10) is False
    assert len(orchestrator.calls_to("/e/")) == 3
    assert "dropping 1 deferred event(s) (e/doomed) after 3 attempts" in caplog.text
    ids = {call.json[0]["id"] for call in orchestrator.calls_to("/e/")}
    assert len(ids) == 1  # the same idempotency id on every attempt


def test_events_keep_their_own_id(client: eagerstep.Client, orchestrator: RecordingOrchestrator) -> None:
    with deferred.deferred(client) as scope:
        client.send({"name": "f/mine", "data": {}, "id": "order-7"})
    scope.wait(10)
    assert orchestrator.calls_to("/e/")[0].json[0]["id"] == "order-7"


async def test_scope_is_seen_by_send_async_and_tasks(
    client: eagerstep.Client, orchestrator: RecordingOrchestrator
) -> None:
    with deferred.deferred(client) as scope:
        assert await client.send_async({"name": "g/async", "data": {}}) == []
        await asyncio.create_task(client.send_async({"name": "g/task", "data": {}}))
    await asyncio.get_running_loop().run_in_executor(None, scope.wait, 10)
    assert sorted(names(orchestrator)) == ["g/async", "g/task"]
    deferred.drain(1)
