"""The event API's server behaviours: seeded event ids (``x-inngest-event-id-seed``), the receipt
log behind ``GET /v1/events``, and partial batches (valid events before an invalid one are kept)."""

from __future__ import annotations

import base64
import time

import pytest

from eagerstep.engine.eventlog import seeded_id
from tests.engine.helpers import EngineClient, wait_for, wsgi_app_server
from tests.engine.test_api import ScriptedApp, api, engine, ok, register

__all__ = ["api", "engine"]  # fixtures

pytestmark = [pytest.mark.engine, pytest.mark.timeout(30)]


def test_seeded_id_matches_the_servers_derivation() -> None:
    entropy = bytes([1, 2, 3, 4, 5, 6, 0xFF, 0xFF, 0xFF, 0xFF])
    seed = f"1700000000000,{base64.b64encode(entropy).decode()}"
    first, second = seeded_id(seed, 1), seeded_id(seed, 2)
    assert first is not None and second is not None and first != second
    assert seeded_id(seed, 1) == first  # deterministic
    # ULID = 48-bit millis + the entropy whose last 4 bytes got the index added (wrapping at 2^32).
    from ulid import ULID

    raw = ULID.from_str(first).bytes
    assert int.from_bytes(raw[:6], "big") == 1700000000000
    assert raw[6:12] == entropy[:6] and raw[12:] == b"\x00\x00\x00\x00"
    for bad in [None, "", "x", "1,2,3", "0,AAAAAAAAAAAAAA==", "12,notbase64!", "12,AAAA"]:
        assert seeded_id(bad, 1) is None


def test_same_seed_same_ids_no_duplicate_runs_and_event_list(api: EngineClient) -> None:
    app = ScriptedApp(lambda body, headers, query: ok({"done": True}, 200))
    seed = f"{int(time.time() * 1000)},{base64.b64encode(b'0123456789').decode()}"
    events = [{"name": "seed/a", "data": {"i": 1}}, {"name": "seed/a", "data": {"i": 2}}]
    with wsgi_app_server(app) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "seed/a"}]})
        first = api.http.post("/e/key", json=events, headers={"x-inngest-event-id-seed": seed}).json()
        retry = api.http.post("/e/key", json=events, headers={"x-inngest-event-id-seed": seed}).json()
        assert first["ids"] == retry["ids"] and len(set(first["ids"])) == 2
        assert first["ids"] == [seeded_id(seed, 1), seeded_id(seed, 2)]
        wait_for(lambda: len(app.calls) == 2)
        time.sleep(0.1)
        assert len(app.calls) == 2  # the retried send started no runs
        listed = api.http.get("/v1/events", params={"name": "seed/a"})
        assert listed.status_code == 200
        internal = [e["internal_id"] for e in listed.json()["data"]]
        assert len(internal) == 4 and set(internal) == set(first["ids"])
        assert api.http.get("/v1/events", params={"name": "nothing/such"}).json()["data"] == []
        assert api.http.get("/v1/events", params={"limit": "x"}).status_code == 400


def test_partial_batch_keeps_the_valid_events_before_the_invalid_one(api: EngineClient) -> None:
    app = ScriptedApp(lambda body, headers, query: ok({"done": True}, 200))
    with wsgi_app_server(app) as origin:
        register(api, origin + "/api", {"slug": "fn", "triggers": [{"event": "part/a"}]})
        batch = [{"name": "part/a"}, {"name": ""}, {"name": "part/a"}]
        response = api.http.post("/e/key", json=batch)
        body = response.json()
        assert response.status_code == 400 and body["status"] == 400
        assert len(body["ids"]) == 1 and "event 1" in body["error"] and "name" in body["error"]
        run = api.wait_run(body["ids"][0])
        assert run["status"] == "Completed"
        time.sleep(0.1)
        assert len(app.calls) == 1  # the event after the invalid one was not taken
        response = api.http.post("/e/key", json=[{"name": ""}])
        assert response.status_code == 400 and response.json()["ids"] == []
