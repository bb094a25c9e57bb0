"""End-to-end encryption through the embedded engine: a Flask app with the encryption middleware
(its key from the app's settings) runs a function with steps, a sleep and a sent event; the run
completes with the code seeing plain values, and the engine's SQLite file holds no plaintext."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("nacl")
pytest.importorskip("flask")

import flask

import eagerstep
from eagerstep.engine import EngineServer
from eagerstep.extras.encryption import EncryptionMiddleware, decrypt, encrypt, is_encrypted
from eagerstep.integrations.flask import EagerStep
from tests.engine.helpers import EngineClient, wait_for, wsgi_app_server

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]

KEY = "correct horse battery staple"
CARD = "4111111111111111"
PIN = "PIN-80431"


def test_the_engine_never_sees_plaintext(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    seen: list[Any] = []
    with EngineServer(db, retry_interval=0.01) as engine:
        client = eagerstep.Client(app_id="vault", dev=engine.url)
        client.middleware.append(EncryptionMiddleware(client=client))  # the key: from the settings

        @client.function(id="open", trigger=eagerstep.Event("vault/open"))
        def open_vault(ctx: eagerstep.Context) -> dict[str, Any]:
            card = ctx.event.data["encrypted"]["card"]
            seen.append(ctx.event.data)
            masked = ctx.step.run("mask", lambda: {"card": card, "masked": "*" * 12 + card[-4:]})
            ctx.step.sleep("cool-off", "1h")
            pin = ctx.step.run("pin", lambda: f"{PIN}:{masked['card']}")
            ctx.step.send_event("notify", {"name": "vault/opened", "data": {"encrypted": {"pin": pin}}})
            return {"card": masked["card"], "pin": pin}

        app = flask.Flask(__name__)
        app.config.update(EAGERSTEP_ENCRYPTION_KEY=KEY)
        EagerStep(app, client=client, functions=[open_vault])
        api = EngineClient(engine.url)
        try:
            with wsgi_app_server(app) as origin:
                assert api.sync(origin + "/api/inngest")["app_status"] == 200
                with app.app_context():  # the client sends through its middleware: "encrypted" sealed
                    [event_id] = client.send(
                        {"name": "vault/open", "data": {"encrypted": {"card": CARD}, "user": 7}}
                    )
                api.wait_step(event_id, lambda s: s.get("name") == "cool-off")
                wait_for(lambda: api.fire_timers() or api.runs_of(event_id)[0]["status"] != "Running")
                run = api.wait_run(event_id)
        finally:
            api.close()
        assert run["status"] == "Completed", run
        # the result is sealed; inside, what the code computed from the decrypted event and steps
        assert is_encrypted(run["output"])
        assert decrypt(run["output"], [KEY]) == {"card": CARD, "pin": f"{PIN}:{CARD}"}
        assert seen[0] == {"encrypted": {"card": CARD}, "user": 7}
        # a step output as the engine keeps it: sealed
        steps = {s["name"]: s for s in run["steps"] if isinstance(s, dict) and "name" in s}
        assert "mask" in steps and CARD not in json.dumps(steps["mask"])
        # nothing of the secrets in the database files, however the engine lays its rows out
        files = [p for p in tmp_path.iterdir() if p.name.startswith("engine.db")]
        blob = b"".join(p.read_bytes() for p in files)
        assert blob and b"vault/opened" in blob  # the sent event is in there, by name...
        for secret in (CARD, PIN):
            assert secret.encode() not in blob, secret  # ...but no plaintext
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("engine.db"))
    assert CARD.encode() not in blob and PIN.encode() not in blob
    assert encrypt({"card": CARD}, KEY)["data"].encode() not in blob  # a fresh nonce every time
