"""Client.send / send_async against a real event API on loopback."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

import eagerstep
from eagerstep.core import client as client_module
from eagerstep.core import protocol
from eagerstep.core.deferred import deferred
from tests.support.orchestrator import RecordingOrchestrator, unused_url


def make(url: str, **kwargs: Any) -> eagerstep.Client:
    return eagerstep.Client(app_id="shop", event_key="key-1", event_api_base_url=url, **kwargs)


def test_send_one_event(orchestrator: RecordingOrchestrator) -> None:
    client = make(orchestrator.url, env="staging")
    ids = client.send({"name": "shop/order.created", "data": {"id": 1}})
    assert len(ids) == 1
    [call] = orchestrator.calls_to("/e/")
    assert call.path == "/e/key-1"
    assert call.json == [{"name": "shop/order.created", "data": {"id": 1}}]
    assert re.fullmatch(r"\d{13},[A-Za-z0-9+/]{14}==", call.header("x-inngest-event-id-seed") or "")
    assert call.header("x-inngest-sdk") == f"eagerstep-py:v{eagerstep.__version__}"
    assert call.header("user-agent") == f"eagerstep-py:v{eagerstep.__version__}"
    assert call.header("x-inngest-env") == "staging"
    assert orchestrator.events[0]["id"] == ids[0]


def test_send_many_and_wire_events(orchestrator: RecordingOrchestrator) -> None:
    client = make(orchestrator.url)
    ids = client.send([protocol.WireEvent(name="a", data={"x": 1}), {"name": "b", "id": "fixed"}])
    assert ids[1] == "fixed" and len(ids) == 2
    assert orchestrator.calls_to("/e/")[0].json == [
        {"name": "a", "data": {"x": 1}},
        {"name": "b", "id": "fixed", "data": {}},
    ]


async def test_send_async(orchestrator: RecordingOrchestrator) -> None:
    client = make(orchestrator.url)
    ids = await client.send_async({"name": "x"})
    assert len(ids) == 1 and orchestrator.events[0]["name"] == "x"


def test_refused_events_raise(orchestrator: RecordingOrchestrator) -> None:
    client = make(orchestrator.url)
    orchestrator.fail("/e/", status=401, body=b'{"error":"event key not found","status":401}')
    with pytest.raises(
        eagerstep.EventSendError, match="refused 1 event\\(s\\) with HTTP 401: event key not found"
    ) as info:
        client.send({"name": "x"})
    assert info.value.status == 401
    assert "key-1" not in str(info.value)  # the key is not leaked into logs


def test_unreachable_event_api_raises() -> None:
    client = make(unused_url())
    with pytest.raises(eagerstep.EventSendError, match="unreachable"):
        client.send({"name": "x"})


async def test_unreachable_event_api_raises_async() -> None:
    client = make(unused_url())
    with pytest.raises(eagerstep.EventSendError, match="unreachable"):
        await client.send_async({"name": "x"})


def test_bad_events_are_rejected_before_sending() -> None:
    client = make(unused_url())
    with pytest.raises(ValueError, match="name"):
        client.send({"data": {}})
    with pytest.raises(ValueError, match="data"):
        client.send({"name": "x", "data": [1]})
    with pytest.raises(TypeError):
        client.send("shop/order.created")  # type: ignore[call-overload]


def test_cloud_mode_needs_an_event_key() -> None:
    client = eagerstep.Client(app_id="shop")
    with pytest.raises(eagerstep.ConfigurationError, match="EVENT_KEY is not set"):
        client.send({"name": "x"})


def test_dev_mode_uses_the_placeholder_key(orchestrator: RecordingOrchestrator) -> None:
    client = eagerstep.Client(app_id="shop", dev=orchestrator.url)
    client.send({"name": "x"})
    assert orchestrator.calls_to("/e/")[0].path == f"/e/{protocol.DEV_EVENT_KEY}"


def test_deferred_scope_holds_events_until_commit(orchestrator: RecordingOrchestrator) -> None:
    client = make(orchestrator.url)
    other = make(orchestrator.url)
    with deferred(client) as scope:
        assert client.send({"name": "held"}) == []
        assert other.send({"name": "direct"}) != []  # another client's scope does not apply
        assert orchestrator.received("/e/") == 1
    assert scope.wait(5)
    assert orchestrator.wait_received("/e/", 2)
    assert [e["name"] for e in orchestrator.events] == ["direct", "held"]


def test_http_client_is_pooled_per_process() -> None:
    first = client_module.http_client()
    assert client_module.http_client() is first
    client_module._http = (os.getpid() + 1, first)  # as if this process had forked
    assert client_module.http_client() is not first
